"""Settings: defaults as Target's, overridable by PROFILESTORE_* environment variables and CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("profilestore-data")
    store: str = ""  # a store URL; empty means an SQLite file in data_dir
    public_url: str = ""  # base of the batchStatus links; empty means the URL the client called
    max_batch_bytes: int = 50 * MB  # Target: files must be under 50 MB
    max_batch_rows: int = 500_000  # Target: at most 500,000 rows per upload
    chunk_rows: int = 5_000  # rows applied per transaction
    run_worker: bool = True  # `serve` applies batches itself unless told another process does
    worker_poll_seconds: float = 0.5  # how often a worker looks for batches accepted by other processes

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.data_dir / 'profilestore.db'}"

    @classmethod
    def from_env(cls, environ: os._Environ | dict = os.environ, **overrides) -> Settings:
        values = {}
        for f in fields(cls):
            raw = environ.get(f"PROFILESTORE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(f.type, raw)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _convert(kind: str, raw: str):
    if kind == "Path":
        return Path(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw
