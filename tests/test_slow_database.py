"""A PostgreSQL that keeps a read waiting, under a real `profilestore serve`: the waiting requests
hold up none of the process's others, and answer once the database does."""

import threading

import httpx
import psycopg
import pytest

from support import apply, attributes, eventually, serve_process

pytestmark = pytest.mark.slow  # a real serve on PostgreSQL

WAITING_FOR_PROFILES = """SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    WHERE NOT l.granted AND c.relname = 'profiles' AND c.relnamespace = current_schema()::regnamespace"""


def in_background(call) -> tuple[threading.Thread, dict]:
    """call() on a thread of its own; its answer lands in the dict."""
    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(response=call()), daemon=True)
    thread.start()
    return thread, answer


def test_requests_waiting_on_a_locked_table_hold_up_no_other_request(postgresql_url, tmp_path):
    with serve_process(postgresql_url, tmp_path) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        apply(http, "batch=thirdPartyId,tier\nv1,gold\n")
        assert attributes(http, "v1") == {"tier": "gold"}
        with psycopg.connect(postgresql_url) as locker:  # not autocommit: the lock lasts until the rollback
            locker.execute("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
            fetch, fetched = in_background(lambda: httpx.get(f"{server.url}/rest/v1/profiles/thirdPartyId/v1",
                                                             params={"client": "demo"}, timeout=60))  # fmt: skip
            # The Delivery API finds its client by the host name here: a question to the store.
            delivery, delivered = in_background(lambda: httpx.post(
                f"{server.url}/rest/v1/delivery", params={"sessionId": "s1"}, headers={"Host": "demo.tt.omtrdc.net"},
                json={"id": {"thirdPartyId": "v1"}, "execute": {"pageLoad": {"profileParameters": {"seen": "yes"}}}},
                timeout=60,
            ))  # fmt: skip
            count = locker.cursor()
            eventually(lambda: count.execute(WAITING_FOR_PROFILES).fetchone()[0] >= 2, "both waiting for the lock")

            assert http.get("/api/openapi.json").status_code == 200
            refused = http.get("/rest/v1/profiles/thirdPartyId/v1")  # no client: refused before the store
            assert refused.status_code == 400 and "client" in refused.json()["message"]
            assert http.get("/api/health/live").status_code == 200
            assert fetch.is_alive() and delivery.is_alive(), "all of these were answered while the lock was held"
            assert count.execute(WAITING_FOR_PROFILES).fetchone()[0] >= 2
            locker.rollback()

        fetch.join(60)
        delivery.join(60)
        assert fetched["response"].status_code == 200, fetched["response"].text
        assert fetched["response"].json()["profileAttributes"]["tier"]["value"] == "gold"
        assert delivered["response"].status_code == 200, delivered["response"].text
        assert delivered["response"].json()["client"] == "demo"
        assert attributes(http, "v1") == {"tier": "gold", "seen": "yes"}
