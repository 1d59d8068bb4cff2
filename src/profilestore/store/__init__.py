"""Stores, chosen by URL: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from .base import Store


def open_store(url: str) -> Store:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise ValueError(f"Invalid SQLite store URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db")
        from .sqlite import SQLiteStore

        return SQLiteStore(Path(parts.path[1:]))
    raise ValueError(f"Unsupported store URL {url!r}: supported schemes are sqlite")
