"""The one exception the rules raise to refuse a request, with the HTTP status it deserves."""

RETRY_AFTER_SECONDS = 5  # what a refusal for now (the store unavailable, no turn free) asks a caller to wait


class Rejected(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
