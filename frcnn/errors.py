"""The project's one error type for bad input from outside.

Loaders, parsers and the settings validator raise :class:`FrcnnError` with a one-line message that a
user can act on. The CLI turns it into exit status 2 and one line on stderr; the app into ``st.error``.
"""


class FrcnnError(ValueError):
    """A user mistake (bad file, bad value, unknown name): the message is one line, no traceback needed."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CPU allocator ("can't allocate memory") or CUDA's
    ``torch.OutOfMemoryError`` (RuntimeErrors both). The work budget should keep these from happening; when one
    does (a server under an address-space cap, a GPU shared with others), callers say so in one line."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


OUT_OF_MEMORY = ("out of memory: lower the input size, the anchors or the top-N settings (the work budget is "
                 "FRCNN_TRACE_BUDGET_MB)")
