"""The errors the rules raise to refuse a request, named for what is wrong, not for HTTP.

Each error's message names the problem (the line, the field, the limit) and, where there is
one, the fix. web/errors.py is the one place that turns them into answers: the status, the
headers and the path's format (Target's XML on Target's paths, JSON elsewhere).
"""

from __future__ import annotations


class Refused(Exception):
    """The request cannot be done as asked; nothing of it was kept."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(Refused):
    """The request, or what it sends, is malformed or breaks a rule."""


class Unauthenticated(Refused):
    """The request needs a token (or the admin key) and has none, or one that is not valid."""


class Forbidden(Refused):
    """The request's token is valid but may not do this: another client's, revoked, expired;
    or the caller may not reach this API from where it is."""


class NotFound(Refused):
    """What the request names does not exist."""


class ProfileNotFound(NotFound):
    """No live profile has this id; the message is Target's."""

    LABELS = {"tntId": "mboxPC", "thirdPartyId": "third party id", "marketingCloudVisitorId": "marketingCloudVisitorId"}

    def __init__(self, client: str, id_kind: str, visitor_id: str, why: str = ""):
        super().__init__(f"No profile found for client {client} with {self.LABELS[id_kind]}={visitor_id}{why}")


class InWrongState(Refused):
    """What the request names exists, but is not in a state that allows this."""


class IdempotencyKeyReused(Refused):
    """The request's Idempotency-Key made a batch of another body within the window."""


class NoLongerStored(Refused):
    """What the request asks for was kept once and is gone."""


class TooLarge(Refused):
    """The request, or what it would make, passes a size limit."""


class UnsupportedMediaType(Refused):
    """The request's body is of a type this path does not take."""


class RateLimited(Refused):
    """The client is over a quota or a call rate; it may try again after retry_after seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Busy(Refused):
    """The service cannot take this request right now; the caller should try again soon."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ProfileTooLarge(BadRequest):
    """A write would take the profile past the size cap (Target drops the oldest attributes;
    we refuse the write)."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"the profile would hold {size:,} bytes of attributes, over the limit of {limit:,}")
