"""Valley's error type and runtime names, importable without torch (the command line needs them at start)."""

RUNTIMES = ("auto", "gpu", "cpu")


class CheckpointError(Exception):
    """A folder that is not a usable Valley checkpoint, with what is wrong."""
