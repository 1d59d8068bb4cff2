"""The store interface's promises that the rules above it rely on, on both stores: a bulk write
may still be running when it returns (WriteTx), yet a transaction stays all or nothing."""

import pytest

from profilestore.store import open_store
from profilestore.store.base import COMPLETE, STUCK, Batch, ClientConfig, FailedRow, Profile, QueueState

CLIENT = "demo"


def profile(tnt_id: str, third_party_id: str) -> Profile:
    return Profile(CLIENT, tnt_id, 1, 1, third_party_id=third_party_id, attributes={"a": ["1", 1, 2]}, active_ms=1)


@pytest.fixture
def store(store_url):
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_what_a_transaction_wrote_in_bulk_it_reads_back(store):
    def insert_then_read(tx):
        tx.insert_profiles([profile("t1", "x1")])
        tx.save_profiles([profile("t2", "x2")])
        return tx.profiles_by(CLIENT, "thirdPartyId", ["x1", "x2"])

    found = store.write(CLIENT, insert_then_read)
    assert {visitor_id: p.tnt_id for visitor_id, p in found.items()} == {"x1": "t1", "x2": "t2"}


@pytest.mark.parametrize("write", ["insert_profiles", "save_profiles"])
def test_a_bulk_write_refused_by_the_database_undoes_its_whole_transaction(store, write):
    store.write(CLIENT, lambda tx: tx.insert_profiles([profile("t1", "x1")]))

    def clash(tx):
        tx.save_client(ClientConfig(CLIENT, daily_rows=5))
        # A new profile with x1's thirdPartyId: the database refuses it, maybe only at commit.
        getattr(tx, write)([profile("t2", "x2"), profile("t3", "x1")])

    with pytest.raises(Exception) as refused:
        store.write(CLIENT, clash)
    assert type(refused.value).__name__ in ("IntegrityError", "UniqueViolation"), refused.value
    assert store.client_config(CLIENT) is None
    assert store.profile(CLIENT, "thirdPartyId", "x2") is None
    assert store.profile(CLIENT, "thirdPartyId", "x1").tnt_id == "t1"
    store.write(CLIENT, lambda tx: tx.insert_profiles([profile("t4", "x4")]))  # and the store works on
    assert store.profile(CLIENT, "thirdPartyId", "x4").tnt_id == "t4"


def batch(**fields) -> Batch:
    defaults = {"seq": 0, "client": CLIENT, "version": 2, "accepted_ms": 1, "size": 1, "payload_bytes": 10,
                "header": b"batch=pcId", "cursor": 11, "cursor_line": 2}  # fmt: skip
    return Batch(**{**defaults, **fields})


def test_queue_state_counts_what_waits_and_what_retries(store):
    assert store.queue_state() == QueueState(0, None, 0)
    for fields in ({"accepted_ms": 5}, {"accepted_ms": 3, "failing_since_ms": 4}, {"state": COMPLETE, "accepted_ms": 1}):
        store.write(CLIENT, lambda tx, f=fields: tx.insert_batch(batch(**f), b"batch=pcId\np1\n"))
    assert store.queue_state() == QueueState(waiting=2, oldest_accepted_ms=3, retrying=1)


def test_purging_batches_keeps_unfinished_recent_and_the_newest_ones(store):
    def add(**fields) -> int:
        seq = store.write(CLIENT, lambda tx: tx.insert_batch(batch(**fields), b"batch=pcId\np1\n"))
        store.write(CLIENT, lambda tx: tx.add_failed_rows(seq, [FailedRow(2, "p1", "bad", b"p1", 2)]))
        return seq

    old, unfinished, recent = add(state=COMPLETE, finished_ms=10), add(), add(state=STUCK, finished_ms=99)
    newest_old = add(state=COMPLETE, finished_ms=10)
    assert store.write(None, lambda tx: tx.purge_batches(50, 100)) == 1
    assert [store.batch(seq) is not None for seq in (old, unfinished, recent, newest_old)] == [False, True, True, True]
    assert store.failed_rows(old) == [] and store.batch_payload(old) is None
    assert store.failed_rows(recent) == [FailedRow(2, "p1", "bad", b"p1", 2)]
