"""``ctrfs browse``: a terminal UI over a container's files and layers.

:mod:`ctrfs.browse.model` holds every fact the UI shows, as data, and imports nothing of
Textual (tests and benchmarks use it directly); :mod:`ctrfs.browse.app` is the Textual app,
imported only by the ``browse`` command.
"""
