"""The project's one error type for bad input from outside.

Loaders, parsers and the settings validator raise :class:`FrcnnError` with a one-line message that a
user can act on. The CLI turns it into exit status 2 and one line on stderr; the app into ``st.error``.
"""


class FrcnnError(ValueError):
    """A user mistake (bad file, bad value, unknown name): the message is one line, no traceback needed."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line
