"""What the benchmarks share: a real `profilestore serve` on a fresh store, submitting batches
as a client does, the machine's description, and the results file."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from profilestore.store import POSTGRESQL_SCHEMES
from profilestore.testing import ServeProcess, schema_url

RESULTS = Path(__file__).parent / "results"
CLIENT = "bench"


PROFILES_TABLE = """SELECT pg_table_size(relid) / 1048576, pg_indexes_size(relid) / 1048576,
    n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'profiles'::regclass"""


@contextmanager
def fresh_store(folder: Path, database: str | None = None, name: str = "profilestore") -> Iterator[str]:
    """The URL of an empty store: an SQLite file in `folder`, or a new schema of the PostgreSQL
    `database`, dropped afterwards."""
    if not database:
        yield f"sqlite:///{folder / name / 'profilestore.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(database, schema)
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class Service:
    """`profilestore serve` with its default settings on the store at `store_url`."""

    def __init__(self, folder: Path, store_url: str):
        self.store_url = store_url
        self.server = ServeProcess(store_url, folder)
        self.server.start()
        self.url = self.server.url
        self.http = httpx.Client(base_url=self.url, timeout=600)

    def submit(self, body: bytes, version: int = 2) -> tuple[str, float]:
        """(batchId, when the first byte was sent), the batch sent as curl --data-binary does."""
        path = f"/m2/{CLIENT}/v2/profile/batchUpdate" if version == 2 else f"/m2/{CLIENT}/profile/batchUpdate"
        started = time.perf_counter()
        answer = self.http.post(path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        if answer.status_code != 200:
            raise SystemExit(f"the batch was refused: {answer.status_code} {answer.text}")
        return answer.text.split("<batchId>")[1].split("</batchId>")[0], started

    def wait(self, batch_id: str, poll: float = 0.02, most: float = 0.5) -> dict:
        """The batch's record once it is complete. Polls every `poll` seconds near the end and
        less often before. Polling every 20 ms all along loaded the machine being measured: for
        an insert pass of the standard batch it cost `serve` and this client 3.9-4.2 s of CPU
        time instead of 0.7-0.8, and 10-30 % of the rate (the two ways in turn, twice)."""
        first = None
        while True:
            record = self.http.get(f"/api/batches/{batch_id}").json()
            if record["status"] != "incomplete":
                if record["status"] != "complete":
                    raise SystemExit(f"batch {batch_id} is {record['status']}: {record['stuckReason']}")
                return record
            now, done = time.perf_counter(), record["consumedCount"]
            first = first or (now, done)
            rate = (done - first[1]) / (now - first[0]) if now > first[0] else 0
            left = (record["batchSize"] - done) / rate if rate else most
            time.sleep(min(most, max(poll, left / 2)))  # half the time the rest should take

    def wait_idle(self) -> None:
        """Return once no batch waits to be applied."""
        while self.http.get("/api/health").json().get("queue", {}).get("waiting"):
            time.sleep(0.5)

    def apply(self, body: bytes) -> tuple[dict, float]:
        """The batch's record and its end-to-end seconds, first byte sent to complete."""
        batch_id, started = self.submit(body)
        record = self.wait(batch_id)
        return record, time.perf_counter() - started

    def profiles_table(self) -> dict | None:
        """For a PostgreSQL store: the profiles table's size on disk and its row versions, as
        PostgreSQL's statistics tell them (they lag a second or so behind)."""
        if urlsplit(self.store_url).scheme not in POSTGRESQL_SCHEMES:
            return None
        time.sleep(2)
        with psycopg.connect(self.store_url, autocommit=True) as conn:
            row = conn.execute(PROFILES_TABLE).fetchone()
        names = ("tableMB", "indexesMB", "liveRows", "deadRows", "updates", "hotUpdates")
        return dict(zip(names, row))

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the service: `serve` and its worker process, each at its
        own peak (an upper bound of their peak together)."""
        return sum(_peak_rss_kb(pid) for pid in self._pids()) / 1024

    def cpu_seconds(self) -> float:
        """CPU time the service has used so far: `serve` and its worker process, user and system."""
        return sum(_cpu_seconds(pid) for pid in self._pids())

    def _pids(self) -> list[int]:
        pid = self.server.process.pid
        children = [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
        return [pid, *map(int, children)]

    def stop(self) -> None:
        self.server.stop()


def _cpu_seconds(pid: int) -> float:
    # /proc/PID/stat: utime and stime are fields 14 and 15, after the command in parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory_kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
    return {
        "cores": os.cpu_count(),
        "memoryGiB": round(memory_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def save(name: str, results: dict) -> Path:
    """Write one benchmark's results to bench/results/NAME.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "when": time.strftime("%Y-%m-%d"), **results}, indent=2) + "\n")
    return path
