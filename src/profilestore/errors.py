"""The one exception the rules raise to refuse a request, with the HTTP status it deserves."""


class Rejected(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
