"""The optional C core of ctrfs (src/ctrfs/_native.c: the hot loops of ``ctrfs export`` and ``cp``).

Everything else is in pyproject.toml. ``optional=True``: where no C compiler or Python headers are
found, the install goes on without it and ctrfs uses its pure-Python code (the reference, which
the tests also run with ``CTRFS_NATIVE=0``).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ctrfs._native", ["src/ctrfs/_native.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])])
