"""One exception type: its message is the one line the user sees."""


class KhaosError(Exception):
    """A failure the user can act on; str(e) is a complete one-line explanation."""
