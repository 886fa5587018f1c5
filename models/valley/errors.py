"""Valley's error type and runtime names, importable without torch (the command line needs them at start)."""

from greenroom.errors import UserError

RUNTIMES = ("auto", "gpu", "cpu")


class CheckpointError(UserError):
    """A folder that is not a usable Valley checkpoint, with what is wrong."""


class ClipThreadTooLong(UserError):
    """The questions about one clip no longer fit the language model's context."""

    def __init__(self, n_ctx: int) -> None:
        super().__init__(
            f"Our talk about this clip no longer fits my {n_ctx}-token memory; send the clip again to start afresh."
        )
