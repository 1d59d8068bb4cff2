"""A worker that dies or freezes is replaced, and health tells the truth while it is gone."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from profilestore.batches import MAX_OPEN_ATTEMPTS, BatchService
from profilestore.config import Settings
from profilestore.store import open_store
from profilestore.store.base import StoreUnavailable
from profilestore.worker import EXIT_STALLED, Worker
from support import FakeClock, accepted_id, apply, attributes, eventually, serve_process, submit, wait_complete
from test_cli import _children, _gone

pytestmark = pytest.mark.slow  # worker processes that die, freeze and are restarted

INJECT = Path(__file__).parent / "inject"  # sitecustomize.py: the first worker loop dies


def dying_once(tmp_path: Path) -> dict:
    """The environment of processes whose first worker loop dies as it starts."""
    return {"PYTHONPATH": str(INJECT), "PROFILESTORE_TEST_WORKER_DIES": str(tmp_path / "died")}


def problems_until_healthy(http: httpx.Client, once=lambda: True) -> list[str]:
    """Every problem /api/health reported, polled until it answers 200 once once() is true."""
    seen: list[str] = []

    def healthy() -> bool:
        ready = once()
        answer = http.get("/api/health")
        if answer.status_code == 200 and ready:
            return True
        seen.extend([p for p in answer.json()["problems"] if p not in seen])
        return False

    try:
        eventually(healthy, "healthy")
    except AssertionError as never:
        raise AssertionError(f"{never}; problems seen: {seen}") from None
    return seen


def test_a_worker_process_whose_loop_dies_exits_with_its_status(store_url, tmp_path):
    command = [sys.executable, "-m", "profilestore", "worker", "--store", store_url]
    died = subprocess.run(
        command, env={**os.environ, **dying_once(tmp_path)}, capture_output=True, text=True, timeout=60
    )
    assert died.returncode == EXIT_STALLED
    assert "the worker thread died" in died.stderr
    assert "the process exits so that it is started again" in died.stderr


def test_serve_replaces_a_worker_process_whose_loop_died_and_health_shows_the_gap(store_url, tmp_path):
    with serve_process(store_url, tmp_path, dying_once(tmp_path)) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        seen = problems_until_healthy(http, once=lambda: "starting a new one" in server.log_path.read_text())
        assert f"the worker process exited with status {EXIT_STALLED}; a new one is starting" in seen
        batch_id = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n"))
        assert wait_complete(http, batch_id)["successfulUpdates"] == 1
        assert attributes(http, "crm-1") == {"city": "Oslo"}
    assert "the worker thread died" in server.log_path.read_text()


def test_serve_kills_and_replaces_a_frozen_worker_process(store_url, tmp_path):
    with serve_process(store_url, tmp_path, {"PROFILESTORE_WORKER_STALL_SECONDS": "2"}) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        problems_until_healthy(http)
        (frozen,) = _children(server.process.pid)
        os.kill(frozen, signal.SIGSTOP)
        batch_id = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n"))
        eventually(lambda: http.get("/api/health").status_code == 503, "unhealthy")
        seen = problems_until_healthy(http)
        assert any(p.startswith("the worker process had not reported for") and "and was killed" in p for p in seen), (
            seen
        )
        eventually(lambda: _gone(frozen), f"saw the frozen worker {frozen} killed")
        assert wait_complete(http, batch_id)["successfulUpdates"] == 1, "its replacement applied the batch"
        (replacement,) = _children(server.process.pid)
        assert replacement != frozen


def test_health_fails_when_the_worker_thread_of_the_app_dies(make_service, monkeypatch):
    class Fatal(BaseException):
        pass

    def die(self):
        raise Fatal("the worker loop died")

    monkeypatch.setattr(Worker, "apply_next", die)
    http = make_service()
    answer = eventually(lambda: (a := http.get("/api/health")).status_code == 503 and a, "unhealthy")
    assert answer.json()["problems"] == ["the worker thread died (Fatal('the worker loop died'))"]
    assert answer.json()["worker"] == "the worker thread died (Fatal('the worker loop died'))"


def test_the_worker_loop_goes_on_after_an_error_that_is_not_the_stores(make_service, monkeypatch):
    failures = iter([RuntimeError("a bug that passes"), RuntimeError("a bug that passes")])
    original = Worker.purge

    def purge_fails_twice(self):
        if (error := next(failures, None)) is not None:
            raise error
        return original(self)

    monkeypatch.setattr(Worker, "purge", purge_fails_twice)
    http = make_service()
    assert apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")["successfulUpdates"] == 1
    eventually(lambda: next(failures, None) is None and http.get("/api/health").status_code == 200, "healthy")


def test_a_batch_that_kills_every_worker_becomes_stuck_and_lets_the_next_one_go(store_url, make_service_on, tmp_path):
    http = make_service_on(store=store_url, run_worker=False)
    poison = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n"))
    later = accepted_id(submit(http, "batch=thirdPartyId,city\ncrm-2,Rome\n"))
    command = [sys.executable, "-m", "profilestore", "worker", "--store", store_url]
    crashing = {**os.environ, "PYTHONPATH": str(INJECT), "PROFILESTORE_TEST_WORKER_CRASHES": "1"}
    for _ in range(MAX_OPEN_ATTEMPTS):
        assert subprocess.run(command, env=crashing, capture_output=True, timeout=60).returncode == -signal.SIGKILL
    assert http.get(f"/api/batches/{poison}").json()["status"] == "incomplete", "each crash alone is no reason"
    make_service_on(store=store_url)  # a worker that does not crash comes along
    record = wait_complete(http, poison)
    assert record["status"] == "stuck"
    assert record["stuckReason"] == (f"the worker stopped {MAX_OPEN_ATTEMPTS} times while applying line 2 on, with "
                                     "nothing committed (killed, out of memory or frozen: see its log)")  # fmt: skip
    assert wait_complete(http, later)["successfulUpdates"] == 1


def test_failures_recorded_across_worker_restarts_are_not_taken_for_crashes(store_url):
    store = open_store(store_url)
    try:
        service = BatchService(store, Settings(), FakeClock())
        batch, _ = service.submit("demo", 2, b"batch=pcId,a\np1,1\n")
        for _ in range(2 * MAX_OPEN_ATTEMPTS):  # a worker process after another, each failing on a full disk
            batch = service.start_attempt(batch)
            batch = service.record_failed_attempt(batch, StoreUnavailable("the disk is full"), retry_in_ms=250)
        assert (batch.state, batch.last_error) == ("queued", "the disk is full")
    finally:
        store.close()
