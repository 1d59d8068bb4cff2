"""Client codes (Target's tenants): what a valid one looks like, and which client a request
that names none is for."""

from __future__ import annotations

import re

from .config import Settings
from .errors import BadRequest
from .model import ClientConfig
from .store.base import Store

CLIENT_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_client(client: str) -> None:
    if not CLIENT_CODE.fullmatch(client):
        raise BadRequest(f"Invalid client code {client!r}: use up to 64 letters, digits, '_', '.' or '-'")


def resolve_client(settings: Settings, store: Store, client: str, org_id: str, host: str) -> str:
    """The `client` parameter when given; else the client configured for the organization id;
    else the first label of the Host header when it names a known client (real Target is
    reached at CLIENT.tt.omtrdc.net); else the configured default client."""
    if client:
        check_client(client)
        return client
    if org_id in settings.clients_by_org:
        return settings.clients_by_org[org_id]
    label = host.split(".", 1)[0].split(":", 1)[0]
    if CLIENT_CODE.fullmatch(label) and (label in settings.clients_by_org.values() or store.has_client(label)):
        return label
    if settings.default_client:
        return settings.default_client
    raise BadRequest(
        "Cannot tell which client this request is for: pass ?client=CODE, or configure "
        f"PROFILESTORE_CLIENT_ORGS for organization id {org_id!r}, or PROFILESTORE_DEFAULT_CLIENT"
    )


def client_limit(settings: Settings, config: ClientConfig | None, name: str) -> int:
    """A quota (daily_rows, calls_per_minute): the client's own value, else the service's."""
    own = getattr(config, name) if config else None
    return getattr(settings, name) if own is None else own
