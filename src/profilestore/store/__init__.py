"""Stores, chosen by URL: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or a
PostgreSQL connection URL `postgresql://user@host:port/database` (libpq's form, options included)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from .base import Store, StoreError

POSTGRESQL_SCHEMES = ("postgresql", "postgres")
INSTALL_HINT = "PostgreSQL stores need psycopg 3: pip install 'profilestore[postgresql]'"


def open_store(url: str, migrate: bool = True) -> Store:
    """The store at this URL; migrate=False refuses a database whose schema is behind instead
    of bringing it up to date."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise StoreError(f"Invalid SQLite store URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db")
        from .sqlite import SQLiteStore

        return SQLiteStore(Path(parts.path[1:]))
    if parts.scheme in POSTGRESQL_SCHEMES:
        return _postgresql().PostgresStore(url, run_migrations=migrate)
    raise StoreError(f"Unsupported store URL {url!r}: use sqlite:///… or postgresql://…")


def migrate(url: str) -> list[str]:
    """Bring the store's schema up to date; the names of the migrations applied."""
    if urlsplit(url).scheme in POSTGRESQL_SCHEMES:
        return _postgresql().migrate(url)
    open_store(url).close()  # SQLite's schema is one version, created when the store opens
    return []


def _postgresql():
    """The PostgreSQL store's module; its driver is an optional dependency."""
    try:
        from . import postgresql
    except ImportError as e:
        raise StoreError(f"{INSTALL_HINT} ({e})") from None
    return postgresql
