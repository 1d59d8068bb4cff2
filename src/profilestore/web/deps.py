"""What the routers take from the running app, and the guards they put in front of routes.

All are `async def` although none awaits: FastAPI runs a plain `def` dependency in its thread
pool, and a hop to a thread (and back through the GIL) costs far more than these lookups,
whose store reads take microseconds."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..auth import CHALLENGE, AuthService, bearer
from ..batches import BatchService
from ..clients import client_limit
from ..config import Settings
from ..errors import Rejected
from ..privacy import PrivacyService
from ..store.base import Store
from ..updates import UpdateService

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


async def batches(request: Request) -> BatchService:
    return request.app.state.batches


async def store(request: Request) -> Store:
    return request.app.state.store


async def settings(request: Request) -> Settings:
    return request.app.state.settings


async def now(request: Request) -> int:
    return request.app.state.clock()


async def updates(request: Request) -> UpdateService:
    return request.app.state.updates


async def privacy(request: Request) -> PrivacyService:
    return request.app.state.privacy


async def auth(request: Request) -> AuthService:
    return request.app.state.auth


def _client_of(request: Request) -> str:
    return request.path_params.get("client") or request.query_params.get("client", "")


async def profile_api_token(request: Request) -> None:
    """Target's profile API authentication, for the client in the path or the query."""
    client = _client_of(request)
    if client:
        request.app.state.auth.check(client, request.headers.get("authorization"))


async def call_rate(request: Request) -> None:
    """Target's call rate limit on the bulk and status endpoints, per client."""
    client = _client_of(request)
    state = request.app.state
    per_minute = client_limit(state.settings, state.auth.client_config(client), "calls_per_minute")
    request.app.state.call_limiter.check(client, per_minute)


async def admin(request: Request) -> None:
    """The admin key from configuration; with none configured, loopback callers only."""
    key = request.app.state.settings.admin_key
    if not key:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK_HOSTS and not host.startswith("127."):
            raise Rejected(403, "The admin API answers only on loopback unless PROFILESTORE_ADMIN_KEY is configured")
        return
    supplied = bearer(request.headers.get("authorization"))
    if supplied is None or not hmac.compare_digest(supplied.encode(), key.encode()):
        raise Rejected(401, "The admin API needs Authorization: Bearer ADMIN_KEY", CHALLENGE)
