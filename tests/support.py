"""Helpers the tests share: submitting batches and reading answers the way a client does."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from xml.etree import ElementTree

import httpx

from profilestore.testing import ServeProcess

DEADLINE_SECONDS = 300  # a safety net for a hung worker, never a performance assertion


def xml_fields(response: httpx.Response) -> dict:
    root = ElementTree.fromstring(response.text)
    assert root.tag == "response"
    return {child.tag: child.text or "" for child in root if child.tag != "profile"}


def failed_profile_ids(response: httpx.Response) -> list[str]:
    root = ElementTree.fromstring(response.text)
    return [p.findtext("id") for p in root.findall("profile") if p.findtext("status") == "failed"]


def submit(http, text: str | bytes, client: str = "demo", version: int = 2, **kwargs) -> httpx.Response:
    path = f"/m2/{client}/v2/profile/batchUpdate" if version == 2 else f"/m2/{client}/profile/batchUpdate"
    body = text.encode() if isinstance(text, str) else text
    headers = {"Content-Type": "application/x-www-form-urlencoded", **kwargs.pop("headers", {})}
    return http.post(path, content=body, headers=headers, **kwargs)


def accepted_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    fields = xml_fields(response)
    assert fields["success"] == "true", response.text
    return fields["batchId"]


def wait_complete(http, batch_id: str) -> dict:
    """The batch's /api record once it is no longer incomplete."""

    def finished() -> dict | None:
        record = http.get(f"/api/batches/{batch_id}").json()
        return record if record["status"] != "incomplete" else None

    return eventually(finished, f"finished batch {batch_id}")


def eventually(check, what: str, pause: float = 0.05):
    """check()'s first true result, tried every `pause` seconds until the deadline (a safety
    net, not a timing); every wait of the tests goes through here."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(pause)
    raise AssertionError(f"never {what} (tried for {DEADLINE_SECONDS}s)")


def numbered_rows(value: str, size: int) -> str:
    """A batch setting v=value and n=i on visitors c0, c1, ... by thirdPartyId."""
    return "batch=thirdPartyId,v,n\n" + "".join(f"c{i},{value},{i}\n" for i in range(size))


def started(http, batch_id: str) -> bool:
    return http.get(f"/api/batches/{batch_id}").json()["consumedCount"] > 0


def apply(http, text: str, client: str = "demo", version: int = 2) -> dict:
    """Submit a batch and wait until it is applied; its /api record."""
    return wait_complete(http, accepted_id(submit(http, text, client, version)))


def attributes(http, visitor_id: str, client: str = "demo", by: str = "thirdPartyId") -> dict[str, str] | None:
    path = f"/rest/v1/profiles/thirdPartyId/{visitor_id}" if by == "thirdPartyId" else f"/rest/v1/profiles/{visitor_id}"
    response = http.get(path, params={"client": client})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return {name: a["value"] for name, a in response.json()["profileAttributes"].items()}


def deliver(http, body: dict, client: str | None = "demo", session: str = "s1", **params) -> httpx.Response:
    """A Delivery API call, as a page or a server SDK makes it."""
    query = {"sessionId": session, **({"client": client} if client else {}), **params}
    return http.post("/rest/v1/delivery", params=query, json={"context": {"channel": "web"}, **body})


class FakeClock:
    """Epoch milliseconds that move only when a test moves them."""

    def __init__(self, iso: str = "2026-11-23T10:00:00+00:00"):
        from datetime import datetime

        self.ms = int(datetime.fromisoformat(iso).timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float = 0, days: float = 0) -> None:
        self.ms += int((seconds + days * 86_400) * 1000)


def seq_of(batch_id: str) -> int:
    return int(batch_id.rsplit("-", 1)[1])


def serve_process(store_url: str, log_dir: Path, env: dict | None = None, extra_args: list[str] = ()) -> ServeProcess:
    """A real `profilestore serve` on the store for a `with` block, logging into log_dir."""
    return ServeProcess(store_url, log_dir, extra_args, env)


def query(store_url: str, sql: str) -> list[tuple]:
    """The rows of one SQL statement run straight on the store's database, for the few tests
    that check what is on disk; the statement must read the same in SQLite and PostgreSQL."""
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            return db.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as db:
        cursor = db.execute(sql)
        return cursor.fetchall() if cursor.description else []


def table_rows(store_url: str, table: str) -> int:
    return query(store_url, f"SELECT count(*) FROM {table}")[0][0]


def dump(store_url: str) -> str:
    """Every row of every table of the store, as text."""
    tables = (
        "SELECT name FROM sqlite_master WHERE type = 'table'" if store_url.startswith("sqlite:")
        else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )  # fmt: skip
    return "\n".join(str(query(store_url, f"SELECT * FROM {table}")) for (table,) in query(store_url, tables))
