"""Stores, chosen by URL: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or a
PostgreSQL connection URL `postgresql://user@host:port/database` (libpq's form, options included)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from .base import Store, StoreError

POSTGRESQL_SCHEMES = ("postgresql", "postgres")
INSTALL_HINT = "PostgreSQL stores need psycopg 3: pip install 'profilestore[postgresql]'"


def open_store(url: str, migrate: bool = True, timeout: float = 5.0) -> Store:
    """The store at this URL; migrate=False refuses a database whose schema is behind instead
    of bringing it up to date. timeout: how long an operation waits for a PostgreSQL
    connection before it fails with StoreUnavailable."""
    if urlsplit(url).scheme in POSTGRESQL_SCHEMES:
        return _postgresql().PostgresStore(url, run_migrations=migrate, timeout=timeout)
    from .sqlite import SQLiteStore

    return SQLiteStore(_sqlite_path(url), run_migrations=migrate)


def migrate(url: str) -> list[str]:
    """Bring the store's schema up to date; the names of the migrations applied."""
    if urlsplit(url).scheme in POSTGRESQL_SCHEMES:
        return _postgresql().migrate(url)
    from .sqlite import migrate as migrate_sqlite

    try:
        return migrate_sqlite(_sqlite_path(url))
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"cannot migrate {url}: {e}") from None


def _sqlite_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise StoreError(f"Unsupported store URL {url!r}: use sqlite:///… or postgresql://…")
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise StoreError(f"Invalid SQLite store URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db")
    return Path(parts.path[1:])


def _postgresql():
    """The PostgreSQL store's module; its driver is an optional dependency."""
    try:
        from . import postgresql
    except ImportError as e:
        raise StoreError(f"{INSTALL_HINT} ({e})") from None
    return postgresql
