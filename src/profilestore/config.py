"""Settings: defaults as Target's, overridable by PROFILESTORE_* environment variables and CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .times import DAY_MS

MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("profilestore-data")
    store: str = ""  # a store URL; empty means an SQLite file in data_dir
    migrate: bool = True  # bring the store's schema up to date at start-up; off: refuse a schema that is behind
    public_url: str = ""  # base of the batchStatus links; empty means the URL the client called
    max_batch_bytes: int = 50 * MB  # Target: files must be under 50 MB
    max_batch_rows: int = 500_000  # Target: at most 500,000 rows per upload
    # Rows applied per transaction. A chunk's rows and profiles then fit in the processor's caches:
    # with 5,000, the update pass ran 20-35 % slower on both stores (the two sizes measured in turn).
    chunk_rows: int = 1_000
    run_worker: bool = True  # `serve` applies batches itself unless told another process does
    worker_poll_seconds: float = 0.5  # how often a worker looks for batches accepted by other processes
    max_update_get_bytes: int = 8 * 1024  # Target: single update requests of 8 KB for GET
    max_update_post_bytes: int = 60 * 1024  # and 60 KB for POST
    max_attribute_name: int = 128  # Target: profile parameter names up to 128 characters
    max_delivery_params: int = 50  # Target: 50 profile parameters per Delivery API request
    max_delivery_value: int = 5000  # Target: Delivery API profile parameter values up to 5000 characters
    # Target takes Delivery bodies up to 60 MB. A page's request is a few KB; parsing JSON holds
    # the interpreter (1 MB of empty objects: 35 ms, and every other request waits) and takes up
    # to 25 times its size in memory (see bench/bodies).
    max_delivery_bytes: int = 256 * 1024
    client_orgs: str = ""  # "client=ORGID@AdobeOrg,…": the client a Delivery request of that organization is for
    default_client: str = ""  # the client of Delivery requests that name none and match no other rule
    admin_key: str = ""  # the /api admin key; none means /api answers on loopback only
    token_days: int = 90  # lifetime of a new profile API token unless the caller says otherwise
    max_profile_bytes: int = 64 * 1024  # Target: 64 KB of external attributes per profile; 0: no cap
    daily_rows: int = 0  # rows accepted per client per UTC day (Target's legacy figure: 1,000,000); 0: off
    calls_per_minute: int = 0  # bulk and status calls per client per minute (Target: 50); 0: off
    ingest_windows: str = ""  # e.g. "mon-fri 09:00-18:00 Europe/Berlin 2000" (see limits.parse_windows)
    profile_lifetime_days: float = 14  # Target's default; a profile inactive this long expires; 0: never
    batch_retention_days: float = 30  # a finished batch's record and failed rows are kept this long
    idempotency_hours: float = 24  # an Idempotency-Key answers its batch again for this long
    store_timeout_seconds: float = 5  # how long a call waits for a PostgreSQL connection before a 503
    retry_max_seconds: float = 30  # the longest pause between a worker's attempts after failures
    retry_give_up_hours: float = 24  # Target's promise: a batch failing this long for passing reasons is stuck
    worker_stall_seconds: float = 60  # a worker loop silent this long is stuck: its process is restarted
    health_max_wait_minutes: float = 60  # health fails when a batch has waited longer than this
    max_concurrent_uploads: int = 2  # large batch bodies read and stored at once; others wait their turn
    upload_wait_seconds: float = 30  # how long one waits for its turn before a 503
    header_timeout_seconds: float = 10  # a request's line and headers must arrive within this
    body_timeout_seconds: float = 300  # and its body within this after them
    webhook_allow: str = ""  # "host,host:port": the only hosts completion webhooks may go to; none by default
    trusted_proxies: str = ""  # "IP,IP": proxies whose X-Forwarded-For names the caller; none by default

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.data_dir / 'profilestore.db'}"

    @property
    def lifetime_ms(self) -> int:
        return int(self.profile_lifetime_days * DAY_MS)

    @property
    def clients_by_org(self) -> dict[str, str]:
        pairs = (entry.split("=", 1) for entry in self.client_orgs.split(",") if "=" in entry)
        return {org.strip(): client.strip() for client, org in pairs}

    @classmethod
    def from_env(cls, environ: os._Environ | dict = os.environ, **overrides) -> Settings:
        values = {}
        for f in fields(cls):
            raw = environ.get(f"PROFILESTORE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(str(f.type), raw)
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
