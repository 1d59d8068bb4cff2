"""A real `profilestore serve` killed with SIGKILL at any moment loses no accepted row and
applies none twice."""

import httpx
import pytest

from support import (
    accepted_id,
    attributes,
    eventually,
    query,
    serve_process,
    started,
    submit,
    table_rows,
    wait_complete,
)

pytestmark = pytest.mark.slow  # a serve killed with SIGKILL mid-batch and restarted

ROWS = 300_000
FAIL_EVERY = 997  # these rows have an empty id and must fail exactly once


def big_batch(value: str, size: int = ROWS) -> str:
    rows = (("" if i % FAIL_EVERY == 0 else f"c{i}") + f",{value},{i}" for i in range(size))
    return "batch=thirdPartyId,pass,n\n" + "\n".join(rows) + "\n"


def consumed_on_disk(store_url: str, batch_id: str) -> int:
    return query(store_url, f"SELECT consumed FROM batches WHERE seq = {int(batch_id.rsplit('-', 1)[1])}")[0][0]


def test_kill_during_a_batch_then_restart_finishes_every_batch_exactly(store_url, tmp_path):
    env = {"PROFILESTORE_CHUNK_ROWS": "2000"}
    with serve_process(store_url, tmp_path, env) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        first = accepted_id(submit(http, big_batch("first")))
        eventually(lambda: started(http, first), f"started batch {first}")
        # acknowledged, then killed at once: an answer means the batch is on disk
        second = accepted_id(submit(http, "batch=thirdPartyId,pass\nc1,second\nc2,second\n"))
        server.kill()
        assert 0 < consumed_on_disk(store_url, first) < ROWS, "the kill must land in the middle of the batch"

        server.start()
        first_record, second_record = wait_complete(http, first), wait_complete(http, second)

    failing = len(range(0, ROWS, FAIL_EVERY))
    assert first_record["consumedCount"] == ROWS
    assert (first_record["successfulUpdates"], first_record["failedUpdates"]) == (ROWS - failing, failing)
    assert second_record["successfulUpdates"] == 2
    assert table_rows(store_url, "profiles") == ROWS - failing
    assert table_rows(store_url, "failed_rows") == failing
    with serve_process(store_url, tmp_path) as server:
        http = httpx.Client(base_url=server.url)
        assert attributes(http, "c1") == {"pass": "second", "n": "1"}
        assert attributes(http, f"c{ROWS - 1}") == {"pass": "first", "n": str(ROWS - 1)}


def test_reads_are_answered_while_a_large_batch_is_applied(store_url, tmp_path):
    with serve_process(store_url, tmp_path) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        wait_complete(http, accepted_id(submit(http, "batch=thirdPartyId,city\nreader,Oslo\n")))
        batch_id = accepted_id(submit(http, big_batch("x", size=100_000)))
        reads_during_batch = 0

        def finished_or_read() -> bool:
            nonlocal reads_during_batch
            if http.get(f"/api/batches/{batch_id}").json()["status"] != "incomplete":
                return True
            assert attributes(http, "reader") == {"city": "Oslo"}
            reads_during_batch += 1
            return False

        eventually(finished_or_read, f"finished batch {batch_id}", pause=0)  # reads as fast as they are answered
        assert reads_during_batch > 10
