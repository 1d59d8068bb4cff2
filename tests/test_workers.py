"""Several `profilestore worker` processes on one store, beside `serve --no-worker` API nodes:
each client's batches in acceptance order, no chunk applied twice, and a worker killed with
kill -9 taken over by another."""

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from support import accepted_id, attributes, eventually, query, serve_process, submit, table_rows, wait_complete

pytestmark = pytest.mark.slow  # several worker processes, one of them killed

FAST = {"PROFILESTORE_WORKER_POLL_SECONDS": "0.05", "PROFILESTORE_CHUNK_ROWS": "500"}
# Applying at most 10,000 rows a second (an ingestion window all day), so that a worker that
# starts first cannot apply every batch before the others are up.
THROTTLED = {**FAST, "PROFILESTORE_INGEST_WINDOWS": "mon-sun 00:00-23:59:59.999999 UTC 10000"}


@contextmanager
def workers(store_url: str, log_dir: Path, count: int, env: dict = FAST):
    """`count` worker processes, each logging to worker-N.log; stopped at the end."""
    started = []
    for n in range(count):
        log = (log_dir / f"worker-{n}.log").open("wb")
        command = [sys.executable, "-m", "profilestore", "worker", "--store", store_url]
        started.append(subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def logged(log_dir: Path, count: int, text: str) -> list[int]:
    """How many times each worker logged the text."""
    return [(log_dir / f"worker-{n}.log").read_text().count(text) for n in range(count)]


def consumed(http: httpx.Client, batch_id: str) -> int:
    return http.get(f"/api/batches/{batch_id}").json()["consumedCount"]


def rows(client_tag: str, value: str, size: int) -> str:
    return "batch=thirdPartyId,value\n" + "".join(f"{client_tag}{i},{value}\n" for i in range(size))


def test_each_clients_batches_apply_in_acceptance_order_across_workers(store_url, tmp_path):
    one, two = (serve_process(store_url, tmp_path, FAST, ["--no-worker"]) for _ in range(2))
    with one, two:
        nodes = [httpx.Client(base_url=server.url, timeout=60) for server in (one, two)]
        # Two API nodes take turns accepting each client's batches.
        sent = {client: [accepted_id(submit(nodes[k % 2], rows("v", f"{client}-{k}", 3000), client)) for k in range(4)]
                for client in ("alpha", "beta", "gamma")}  # fmt: skip
        with workers(store_url, tmp_path, 3, THROTTLED):
            records = {client: [wait_complete(nodes[1], b) for b in ids] for client, ids in sent.items()}
        assert attributes(nodes[0], "v0", "beta") == {"value": "beta-3"}, "the batch accepted last wins"
    for client, batches in records.items():
        for earlier, later in zip(batches, batches[1:]):
            assert later["startedAt"] >= earlier["finishedAt"], (
                f"{client}: a batch began before the one accepted earlier ended"
            )
    assert sum(1 for n in logged(tmp_path, 3, "applying batch") if n) >= 2, "the workers shared the work"
    for client in sent:
        values = query(store_url, f"SELECT count(*) FROM batches WHERE client = '{client}' AND successful = 3000")
        assert values == [(4,)]


def test_workers_never_apply_a_chunk_twice(store_url, tmp_path):
    size, fail_every = 20_000, 101
    body = "batch=thirdPartyId,n\n" + "".join(("" if i % fail_every == 0 else f"c{i}") + f",{i}\n" for i in range(size))
    with serve_process(store_url, tmp_path, FAST, ["--no-worker"]) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        with workers(store_url, tmp_path, 3):
            record = wait_complete(http, accepted_id(submit(http, body)))
            failing = len(range(0, size, fail_every))
            assert (record["consumedCount"], record["successfulUpdates"]) == (size, size - failing)
            assert record["failedUpdates"] == failing
            failures = http.get(f"/api/batches/{record['batchId']}/failures", params={"limit": 1000}).json()[
                "failedRows"
            ]
            assert [f["line"] for f in failures] == [i + 2 for i in range(0, size, fail_every)]
            assert attributes(http, f"c{size - 1}") == {"n": str(size - 1)}
    assert table_rows(store_url, "profiles") == size - failing


def test_a_worker_killed_mid_batch_is_taken_over_by_another(store_url, tmp_path):
    size = 100_000
    body = "batch=thirdPartyId,n\n" + "".join(f"c{i},{i}\n" for i in range(size))
    with serve_process(store_url, tmp_path, FAST, ["--no-worker"]) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        with workers(store_url, tmp_path, 2) as started:
            batch_id = accepted_id(submit(http, body))
            eventually(lambda: consumed(http, batch_id) >= 5_000, f"applied 5,000 rows of {batch_id}", pause=0.01)
            holder = logged(tmp_path, 2, f"applying batch {batch_id}").index(1)
            os.kill(started[holder].pid, signal.SIGKILL)
            at_kill = consumed(http, batch_id)
            record = wait_complete(http, batch_id)
        assert 0 < at_kill < size, "the kill must land in the middle of the batch"
        assert (record["consumedCount"], record["successfulUpdates"], record["failedUpdates"]) == (size, size, 0)
        assert logged(tmp_path, 2, f"batch {batch_id} complete")[1 - holder] == 1, "the other worker finished it"
        assert attributes(http, "c0") == {"n": "0"} and attributes(http, f"c{size - 1}") == {"n": str(size - 1)}
    assert table_rows(store_url, "profiles") == size
