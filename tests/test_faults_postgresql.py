"""PostgreSQL going away under a running `profilestore serve`: its connections ended (what a
restart or a failover does), or the server out of reach. Calls meanwhile answer 503 in their
path's format, never 500, and once the database is back every accepted batch completes
exactly, with no restart of anything."""

import time
from urllib.parse import urlsplit

import httpx
import pytest

from faults import CuttableProxy, terminate_connections, with_application_name
from profilestore.store.postgresql import READ_CHECK_IDLE_SECONDS
from support import (
    accepted_id,
    apply,
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

pytestmark = pytest.mark.slow  # connections cut and the database out of reach, under a real serve

FAST = {
    "PROFILESTORE_CHUNK_ROWS": "500",
    "PROFILESTORE_RETRY_MAX_SECONDS": "0.5",
    "PROFILESTORE_STORE_TIMEOUT_SECONDS": "1",
}


def assert_refused_for_now(response: httpx.Response) -> None:
    """A 503 in Target's XML that says the store is unavailable and when to try again."""
    assert response.status_code == 503, response.text
    assert xml_fields(response)["success"] == "false"
    assert "The store cannot be used right now" in xml_fields(response)["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_connections_ended_during_a_batch_and_its_submits_lose_nothing(postgresql_url, tmp_path):
    url, name = with_application_name(postgresql_url)
    with serve_process(url, tmp_path, FAST) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        big = accepted_id(submit(http, numbered_rows("first", 100_000)))
        eventually(lambda: started(http, big), "started")
        answers = []
        for _ in range(5):
            assert terminate_connections(postgresql_url, name) > 0
            answers.append(submit(http, numbered_rows("second", 10)))
            time.sleep(0.2)
        for answer in answers:
            if answer.status_code != 200:
                assert_refused_for_now(answer)
        later = [accepted_id(a) for a in answers if a.status_code == 200]
        record = wait_complete(http, big)
        assert (record["consumedCount"], record["successfulUpdates"], record["failedUpdates"]) == (100_000, 100_000, 0)
        assert all(wait_complete(http, b)["successfulUpdates"] == 10 for b in later)
        assert attributes(http, "c99999") == {"v": "first", "n": "99999"}
        if later:
            assert attributes(http, "c9") == {"v": "second", "n": "9"}, "the batch accepted later wins"
    assert table_rows(url, "profiles") == 100_000
    assert "a new one" not in server.log_path.read_text(), "the worker process was never replaced"


def test_while_the_database_is_out_of_reach_calls_answer_503_and_batches_wait(postgresql_url, tmp_path):
    target = urlsplit(postgresql_url)
    proxy = CuttableProxy(target.hostname, target.port or 5432)
    try:
        with serve_process(proxy.url_for(postgresql_url), tmp_path, FAST) as server:
            http = httpx.Client(base_url=server.url, timeout=60)
            waiting = accepted_id(submit(http, numbered_rows("first", 50_000)))
            eventually(lambda: started(http, waiting), "started")
            proxy.cut()

            assert_refused_for_now(submit(http, numbered_rows("second", 10)))
            fetch = http.get("/rest/v1/profiles/thirdPartyId/c0", params={"client": "demo"})
            assert fetch.status_code == 503 and fetch.json()["status"] == 503
            assert "The store cannot be used right now" in fetch.json()["message"]
            health = http.get("/api/health")
            assert health.status_code == 503
            assert any(p.startswith("the store is unavailable") for p in health.json()["problems"]), health.json()

            proxy.restore()
            later = accepted_id(eventually(lambda: (r := submit(http, numbered_rows("second", 10))).status_code == 200 and r,
                                           "accepted once the database was back"))  # fmt: skip
            record = wait_complete(http, waiting)
            assert (record["consumedCount"], record["successfulUpdates"], record["failedUpdates"]) == (
                50_000,
                50_000,
                0,
            )
            assert wait_complete(http, later)["successfulUpdates"] == 10
            assert attributes(http, "c0") == {"v": "second", "n": "0"}
            assert attributes(http, "c49999") == {"v": "first", "n": "49999"}
            eventually(lambda: http.get("/api/health").status_code == 200, "healthy again")
    finally:
        proxy.close()


def test_fetches_after_their_idle_connections_were_ended_are_answered(postgresql_url, tmp_path):
    """The fetch API's own connections, ended while unused (a restart or failover between calls),
    are checked and replaced before a fetch is given one."""
    url, name = with_application_name(postgresql_url)
    with serve_process(url, tmp_path) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        apply(http, "batch=thirdPartyId,tier\nv1,gold\n")
        assert attributes(http, "v1") == {"tier": "gold"}
        time.sleep(READ_CHECK_IDLE_SECONDS + 0.5)  # unused long enough to be checked
        assert terminate_connections(postgresql_url, name) > 0
        for _ in range(3):
            assert attributes(http, "v1") == {"tier": "gold"}
