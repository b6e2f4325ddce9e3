"""The version, kept where ``ctrfs --version`` can read it without importing anything else."""

__version__ = "0.1.0"


def version_line() -> str:
    """What ``ctrfs --version`` prints (the CLI's main() and the installed script alike)."""
    return f"ctrfs, version {__version__}\n"
