"""One exception type: its message is the one line the user sees."""


class KhaosError(Exception):
    """A failure the user can act on; str(e) is a complete one-line explanation (a line break that
    came in with user input, e.g. a file name, is shown as ``\\n``)."""

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")
