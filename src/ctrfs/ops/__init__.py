"""Read operations on a :class:`ctrfs.rootfs.Root`: ls, stat, cat, find, grep, tail, du, cp,
export. Library code: nothing here prints; results are dataclasses and iterators, skipped
entries go to an ``on_warning`` callback. Everything is written against the Root interface
only, so it works the same on a running container and on an offline (stopped) one.
"""
