"""Domain errors: messages a marketer or an API client can act on."""


class ApplicationError(Exception):
    """Base of every error the admin and API turn into a clear message, never a 500."""

    def __init__(self, message: str, *, extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
