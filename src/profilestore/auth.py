"""Profile API authentication, as in Target: off for a client until turned on; then every bulk,
batch status, single update and fetch call needs `Authorization: Bearer TOKEN` of that client.

Tokens are random secrets shown once; only their SHA-256 is stored (a fast hash is enough for
a 256-bit random secret, unlike a password)."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import replace

from cachetools import TTLCache

from .clients import check_client
from .config import Settings
from .errors import BadRequest, Forbidden, NotFound, Unauthenticated
from .store.base import ClientConfig, Store, Token, WriteTx
from .times import DAY_MS, HOUR_MS, iso_ms, now_ms

TOKEN_PREFIX = "pst_"
CONFIG_TTL_MS = 1_000  # how long another process may go on with a client's previous settings
CACHED_CLIENTS = 10_000  # client codes come from callers: the cache of their settings is bounded


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The secret of an `Authorization: Bearer SECRET` header; None if there is no header;
    Unauthenticated if it is malformed."""
    if authorization is None:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("Malformed Authorization header: expected 'Bearer TOKEN'")
    return secret.strip()


class AuthService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms):
        self.store = store
        self.settings = settings
        self.clock = clock
        self._configs: TTLCache[str, ClientConfig | None] = TTLCache(CACHED_CLIENTS, CONFIG_TTL_MS, timer=clock)
        self._configs_lock = threading.Lock()  # the cache is not thread-safe; callers are threads

    def client_config(self, client: str) -> ClientConfig | None:
        """The client's settings, read at most once a second: this check runs before every
        profile API call. Changes made through this process apply at once, others within 1 s."""
        cached, config = self._cached(client)
        if cached:
            return config
        config = self.store.client_config(client)
        with self._configs_lock:
            self._configs[client] = config
        return config

    def passes_unasked(self, client: str) -> bool:
        """Whether check() passes without asking the store: the client's settings are cached and
        need no token; BadRequest for an invalid client code, as from check(). A caller on an
        event loop hands check() to a thread only when this is False."""
        check_client(client)
        cached, config = self._cached(client)
        return cached and (config is None or not config.auth_required)

    def _cached(self, client: str) -> tuple[bool, ClientConfig | None]:
        """(whether the client's settings are cached, and those settings)."""
        with self._configs_lock:
            try:  # one lookup: a cached entry can expire between an `in` and the `[]` after it
                return True, self._configs[client]
            except KeyError:
                return False, None

    def check(self, client: str, authorization: str | None) -> None:
        """Pass if the client does not require authentication or the token is its own and live."""
        check_client(client)  # before the store is asked about it
        config = self.client_config(client)
        if config is None or not config.auth_required:
            return
        secret = bearer(authorization)
        if secret is None:
            raise Unauthenticated(f"Client {client} requires authentication: send Authorization: Bearer TOKEN")
        token = self.store.token_by_hash(token_hash(secret))
        if token is None:
            raise Unauthenticated("The token is not valid")
        if token.client != client:
            raise Forbidden(f"The token belongs to another client, not to {client}")
        if token.revoked_ms is not None:
            raise Forbidden(f"The token was revoked at {iso_ms(token.revoked_ms)}")
        if token.expires_ms <= self.clock():
            raise Forbidden(f"The token expired at {iso_ms(token.expires_ms)}")

    def create_token(self, client: str, days: float | None = None, keep_previous_hours: float = 0) -> tuple[Token, str]:
        """A new token and its secret. As in Target it replaces the client's live tokens, unless
        keep_previous_hours asks to keep them that long for a rotation."""
        check_client(client)
        days = self.settings.token_days if days is None else days
        if days <= 0 or keep_previous_hours < 0:
            raise BadRequest("A token must live more than 0 days, and a rotation period cannot be negative")
        now = self.clock()
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = Token(secrets.token_hex(8), client, token_hash(secret), now, now + int(days * DAY_MS))

        def create(tx: WriteTx) -> Token:
            rotation_end = now + int(keep_previous_hours * HOUR_MS)
            for old in tx.tokens(client):
                if old.revoked_ms is None and old.expires_ms > now:
                    kept = replace(old, expires_ms=min(old.expires_ms, rotation_end))
                    tx.save_token(kept if keep_previous_hours else replace(old, revoked_ms=now))
            tx.save_token(token)
            return token

        return self.store.write(client, create), secret

    def revoke(self, client: str, token_id: str) -> Token:
        now = self.clock()

        def revoke(tx: WriteTx) -> Token:
            token = next((t for t in tx.tokens(client) if t.id == token_id), None)
            if token is None:
                raise NotFound(f"Client {client} has no token {token_id}")
            revoked = replace(token, revoked_ms=token.revoked_ms or now)
            tx.save_token(revoked)
            return revoked

        return self.store.write(client, revoke)

    def configure(self, client: str, **changes) -> ClientConfig:
        """Change some of a client's settings (auth_required, daily_rows, calls_per_minute)."""
        check_client(client)
        config = replace(self.store.client_config(client) or ClientConfig(client), **changes)
        self.store.write(client, lambda tx: tx.save_client(config))
        with self._configs_lock:
            self._configs.pop(client, None)
        return config
