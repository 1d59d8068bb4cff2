"""What the routers take from the running app, and the guards they put in front of routes.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, and a hop to a
thread (and back through the GIL) costs far more than these lookups when the store's reads
take microseconds (SQLite). Where they may wait on a network (PostgreSQL), `read` hands them
to a thread, so that one slow or unreachable database does not stop the event loop.

Nothing that may wait on the store runs on the event loop: `async def` routes hand store calls
to `read` or to the thread pool (FastAPI runs `def` routes there itself), the fetch API awaits
the store's profile_async, and `check_caller` asks the store only on a thread. The thread pool
(anyio's default, 40 threads) is larger than the PostgreSQL pool (store.postgresql.POOL_SIZE),
so threads, not the loop, wait up to the store's timeout for a connection."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ..auth import AuthService, bearer
from ..batches import BatchService
from ..clients import check_client, client_limit
from ..config import Settings
from ..errors import Forbidden, Unauthenticated
from ..privacy import PrivacyService
from ..store.base import Store
from ..updates import UpdateService

T = TypeVar("T")


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


async def read(request: Request, fn: Callable[..., T], *args) -> T:
    """fn(*args), a call that reads the store: here if the store's reads are fast, else on a thread."""
    if request.app.state.store.fast_reads:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


def wake_worker(request: Request) -> None:
    """Tell the worker, wherever it runs, that a batch was accepted."""
    if request.app.state.worker is not None:
        request.app.state.worker.wake()


def _client_of(request: Request) -> str:
    return request.path_params.get("client") or request.query_params.get("client", "")


async def profile_api_token(request: Request) -> None:
    """Target's profile API authentication, for the client in the path or the query."""
    client = _client_of(request)
    if client:
        await check_caller(request, client)


async def check_caller(request: Request, client: str) -> None:
    """AuthService.check for the request: here when the client's cached settings decide it, else
    through `read`. On PostgreSQL a hop to a thread and back costs about half what the query does
    (bench/reads' load, in turn: 800 µs of serve's CPU a fetch with two hops, 600 with none)."""
    auth = request.app.state.auth
    if not auth.passes_unasked(client):
        await read(request, auth.check, client, request.headers.get("authorization"))


async def call_rate(request: Request) -> None:
    """Target's call rate limit on the bulk and status endpoints, per client."""
    client = _client_of(request)
    state = request.app.state
    per_minute = client_limit(state.settings, await read(request, state.auth.client_config, client), "calls_per_minute")
    state.call_limiter.check(client, per_minute)


async def client_code(request: Request) -> None:
    """A client code the request names, in its path or its query, must be one, before any store
    is asked about it (PostgreSQL cannot even take a NUL in a string)."""
    if "client" in request.path_params or "client" in request.query_params:
        check_client(_client_of(request))


async def admin(request: Request) -> None:
    """The admin key from configuration; with none configured, loopback callers only, by the
    address of the connection's peer. X-Forwarded-For counts only from the proxies named in
    PROFILESTORE_TRUSTED_PROXIES (the server puts the caller it names in the peer's place); from
    any other peer, a request that carries it came through a proxy, so its caller is not local.
    Neither is one that carries RFC 7239's Forwarded, which the server does not read."""
    settings = request.app.state.settings
    if not settings.admin_key:
        proxied = "forwarded" in request.headers or (
            not settings.trusted_proxies and "x-forwarded-for" in request.headers
        )
        if proxied or not is_loopback(request.client.host if request.client else ""):
            raise Forbidden("The admin API answers only on loopback unless PROFILESTORE_ADMIN_KEY is configured")
        return
    supplied = bearer(request.headers.get("authorization"))
    if supplied is None or not hmac.compare_digest(supplied.encode(), settings.admin_key.encode()):
        raise Unauthenticated("The admin API needs Authorization: Bearer ADMIN_KEY")


def is_loopback(host: str) -> bool:
    """Whether the host is a loopback IP address (127.0.0.0/8, ::1, or IPv4 loopback mapped
    into IPv6); a name, even `localhost`, is not."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback
