"""The ``ctrfs`` command line: thin, it parses, calls the library and renders."""

from ctrfs.cli.main import main

__all__ = ["main"]
