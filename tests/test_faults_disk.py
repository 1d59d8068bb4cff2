"""The embedded store on a disk that fills up (a real tmpfs, mounted by the test): a batch
caught by it waits in its place and completes exactly once space is freed; submits meanwhile
answer 503; only a failure that lasts past the give-up time makes a batch stuck, and then its
unapplied rows can be downloaded and resubmitted."""

import os
import subprocess
import sys

import httpx
import pytest

from faults import SmallDisk, need_root
from support import (
    FakeClock,
    accepted_id,
    attributes,
    eventually,
    numbered_rows,
    serve_process,
    started,
    submit,
    table_rows,
    wait_complete,
    xml_fields,
)
from test_cli import cli

pytestmark = pytest.mark.slow  # real full disks (tmpfs) under real processes

# Throttled (an ingestion window all day), so that a batch is still applying when the disk fills.
THROTTLED = {
    "PROFILESTORE_CHUNK_ROWS": "500",
    "PROFILESTORE_RETRY_MAX_SECONDS": "0.5",
    "PROFILESTORE_INGEST_WINDOWS": "mon-sun 00:00-23:59:59.999999 UTC 20000",
}


@pytest.fixture
def disk(tmp_path):
    need_root("mounting a small disk (tmpfs)")
    small = SmallDisk(tmp_path / "disk", megabytes=128)
    yield small
    small.unmount()


def store_on(disk: SmallDisk) -> str:
    return f"sqlite:///{disk.path / 'data' / 'profilestore.db'}"


def test_a_disk_that_fills_during_a_batch_then_frees_loses_no_row(disk, tmp_path):
    store_url = store_on(disk)
    with serve_process(store_url, tmp_path, THROTTLED) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        first = accepted_id(submit(http, numbered_rows("first", 60_000)))
        eventually(lambda: started(http, first), "started")
        disk.fill()

        retrying = eventually(lambda: (r := http.get(f"/api/batches/{first}").json())["lastError"] and r, "retrying")
        assert retrying["status"] == "incomplete" and retrying["nextAttemptAt"] and retrying["failingSince"]
        assert retrying["lastError"] == "the disk is full (SQLITE_FULL)"
        shown = cli("status", first, url=server.url).stdout
        assert "retrying since" in shown and "the disk is full (SQLITE_FULL); next attempt" in shown
        refused = submit(http, numbered_rows("second", 10))
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        assert xml_fields(refused) == {"success": "false", "message": "The store cannot be used right now: the disk is full (SQLITE_FULL). Try again in a few seconds"}  # fmt: skip
        health = http.get("/api/health")
        assert health.status_code == 503 and "the disk is full" in " ".join(health.json()["problems"])

        disk.free()
        second = accepted_id(submit(http, numbered_rows("second", 10)))
        done, later = wait_complete(http, first), wait_complete(http, second)
        assert (done["consumedCount"], done["successfulUpdates"], done["failedUpdates"]) == (60_000, 60_000, 0)
        assert done["lastError"] is None and done["failedAttempts"] == 0
        assert later["startedAt"] >= done["finishedAt"], (
            "the later batch did not overtake the one caught by the full disk"
        )
        assert attributes(http, "c0") == {"v": "second", "n": "0"}
        assert attributes(http, "c59999") == {"v": "first", "n": "59999"}
    assert table_rows(store_url, "profiles") == 60_000


def test_a_worker_that_starts_on_a_full_disk_waits_and_keeps_the_order(disk, tmp_path):
    store_url = store_on(disk)
    with serve_process(store_url, tmp_path, THROTTLED, ["--no-worker"]) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        first = accepted_id(submit(http, numbered_rows("first", 5_000)))
        second = accepted_id(submit(http, numbered_rows("second", 10)))
        disk.fill()
        log = (tmp_path / "worker.log").open("wb")
        command = [sys.executable, "-m", "profilestore", "worker", "--store", store_url]
        worker = subprocess.Popen(command, env={**os.environ, **THROTTLED}, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: "the disk is full" in (tmp_path / "worker.log").read_text(), "failed on the full disk")
            assert worker.poll() is None, "the worker process lives on"
            assert http.get(f"/api/batches/{first}").json()["status"] == "incomplete"
            disk.free()
            done, later = wait_complete(http, first), wait_complete(http, second)
        finally:
            worker.terminate()
            worker.wait(30)
        assert (done["successfulUpdates"], later["successfulUpdates"]) == (5_000, 10)
        assert later["startedAt"] >= done["finishedAt"]
        assert attributes(http, "c0") == {"v": "second", "n": "0"}
        assert attributes(http, "c4999") == {"v": "first", "n": "4999"}


def test_a_batch_failing_past_the_give_up_time_is_stuck_and_offers_its_unapplied_rows(disk, make_service_on):
    store_url, clock = store_on(disk), FakeClock()
    accepting = make_service_on(store=store_url, clock=clock, run_worker=False)
    body = numbered_rows("first", 2_000)
    batch_id = accepted_id(submit(accepting, body))
    disk.fill()
    disk.free_a_little(128 * 1024)  # room for the batch's records, not for its chunk of 2,000 rows
    http = make_service_on(store=store_url, clock=clock, retry_max_seconds=0.2, chunk_rows=2_000)

    failing = eventually(lambda: (r := http.get(f"/api/batches/{batch_id}").json())["lastError"] and r, "retrying")
    assert failing["failingSince"] == "2026-11-23T10:00:00.000+00:00" and failing["status"] == "incomplete"
    clock.advance(days=1, seconds=1)
    record = wait_complete(http, batch_id)
    assert (record["status"], record["consumedCount"]) == ("stuck", 0)
    assert record["stuckReason"] == "gave up after 24 h of failed attempts; the last: the disk is full (SQLITE_FULL)"

    unprocessed = http.get(f"/api/batches/{batch_id}/unprocessed.csv")
    assert unprocessed.status_code == 200 and unprocessed.content == body.encode()
    disk.free()
    resubmitted = wait_complete(http, accepted_id(submit(http, unprocessed.content)))
    assert resubmitted["successfulUpdates"] == 2_000
    assert attributes(http, "c1999") == {"v": "first", "n": "1999"}
