"""Valley's error type and runtime names, importable without torch (the command line needs them at start)."""

from greenroom.errors import UserError

RUNTIMES = ("auto", "gpu", "cpu")


class CheckpointError(UserError):
    """A folder that is not a usable Valley checkpoint, with what is wrong."""
