"""The store contract (store/base.py), as huey's StorageTests: one suite that runs unchanged on
every store, here an SQLite file in the test's folder and a PostgreSQL store on a schema of its
own (skipped, with the reason, when no server answers; under CI=true it must: see conftest's
postgresql_server). Each test names a promise of Store or WriteTx that the rules above rely on;
a bulk write may still be running when it returns (WriteTx), yet a transaction stays all or
nothing. Backend-specific behaviour is tested in test_sqlite.py and test_postgresql.py."""

import threading
from dataclasses import replace

import pytest

from profilestore.model import (
    Batch,
    BatchState,
    ClientConfig,
    FailedRow,
    IdempotencyKey,
    Profile,
    QueueState,
    Token,
    WebhookDelivery,
)
from profilestore.store import open_store
from profilestore.store.base import StoreConflict, StoreFailed
from profilestore.store.rows import TNT_ID, profile_from_row
from support import query

CLIENT = "demo"
PAYLOAD = b"batch=pcId,a\np1,\x00\xff\n"  # bytes, not text


def profile(tnt_id: str, third_party_id: str | None) -> Profile:
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


def test_profile_rows_are_found_by_address_and_rewritten_in_place(store):
    store.write(CLIENT, lambda tx: tx.insert_profiles([profile("t1", "x1")]))
    store.write(CLIENT, lambda tx: tx.retire_profile(CLIENT, "t0", "t1"))  # t0 now resolves to t1

    def rewrite(tx):
        stored = tx.stored_profiles(CLIENT, "tntId", ["t0", "t1", "t9"])
        assert stored["t0"] == stored["t1"]  # one profile, one address
        assert "t9" not in stored
        assert (stored["t1"].modified_ms, stored["t1"].active_ms, stored["t1"].attributes) == (1, 1, '{"a":["1",1,2]}')
        new = [(CLIENT, "t2", 5, 6, "x2", None, '{"b":["2",6,4]}', 7)]
        tx.write_profile_rows(new, [(8, '{"a":["3",8,4]}', 9, stored["t1"].address)])
        return tx.stored_profiles(CLIENT, "thirdPartyId", ["x1", "x2"])

    seen = store.write(CLIENT, rewrite)
    assert {i: (s.modified_ms, s.active_ms, s.attributes) for i, s in seen.items()} == {
        "x1": (8, 9, '{"a":["3",8,4]}'), "x2": (6, 7, '{"b":["2",6,4]}')}  # fmt: skip
    x1, x2 = store.profile(CLIENT, "thirdPartyId", "x1"), store.profile(CLIENT, "thirdPartyId", "x2")
    assert (x1.tnt_id, x1.created_ms, x1.modified_ms, x1.attributes, x1.active_ms) == (
        "t1",
        1,
        8,
        {"a": ["3", 8, 4]},
        9,
    )
    assert (x2.tnt_id, x2.created_ms, x2.modified_ms, x2.attributes, x2.active_ms) == (
        "t2",
        5,
        6,
        {"b": ["2", 6, 4]},
        7,
    )


@pytest.mark.parametrize("write", ["insert_profiles", "save_profiles"])
def test_a_bulk_write_refused_by_the_database_undoes_its_whole_transaction(store, write):
    store.write(CLIENT, lambda tx: tx.insert_profiles([profile("t1", "x1")]))

    def clash(tx):
        tx.save_client(ClientConfig(CLIENT, daily_rows=5))
        # A new profile with x1's thirdPartyId: the database refuses it, maybe only at commit.
        getattr(tx, write)([profile("t2", "x2"), profile("t3", "x1")])

    with pytest.raises(StoreConflict) as refused:
        store.write(CLIENT, clash)
    assert type(refused.value.__cause__).__name__ in ("IntegrityError", "UniqueViolation"), refused.value
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
    for fields in (
        {"accepted_ms": 5},
        {"accepted_ms": 3, "failing_since_ms": 4},
        {"state": BatchState.COMPLETE, "accepted_ms": 1},
    ):
        store.write(CLIENT, lambda tx, f=fields: tx.insert_batch(batch(**f), b"batch=pcId\np1\n"))
    assert store.queue_state() == QueueState(waiting=2, oldest_accepted_ms=3, retrying=1)


def test_purging_batches_keeps_unfinished_recent_and_the_newest_ones(store):
    def add(**fields) -> int:
        seq = store.write(CLIENT, lambda tx: tx.insert_batch(batch(**fields), b"batch=pcId\np1\n"))
        store.write(CLIENT, lambda tx: tx.add_failed_rows(seq, [FailedRow(2, "p1", "bad", b"p1", 2)]))
        return seq

    old, unfinished, recent = (
        add(state=BatchState.COMPLETE, finished_ms=10),
        add(),
        add(state=BatchState.STUCK, finished_ms=99),
    )
    newest_old = add(state=BatchState.COMPLETE, finished_ms=10)
    assert store.write(None, lambda tx: tx.purge_batches(50, 100)) == 1
    assert [store.batch(seq) is not None for seq in (old, unfinished, recent, newest_old)] == [False, True, True, True]
    assert store.failed_rows(old) == [] and store.batch_payload(old) is None
    assert store.failed_rows(recent) == [FailedRow(2, "p1", "bad", b"p1", 2)]


# -- helpers of the contract suite ---------------------------------------------------------------

ROWS = [FailedRow(line, f"p{line}", "bad", f"p{line},\xff".encode("latin-1"), 5) for line in (5, 2, 9, 7)]


def full_profile(tnt_id: str = "t1", client: str = CLIENT, **fields) -> Profile:
    defaults = {"created_ms": 100, "modified_ms": 200, "third_party_id": f"x{tnt_id[1:]}", "mcvid": f"m{tnt_id[1:]}",
                "attributes": {"city": ["Zürich", 150, 7], "tier": ["gold", 200, 8]}, "active_ms": 300}  # fmt: skip
    return Profile(client, tnt_id, **{**defaults, **fields})


def token(token_id: str, client: str = CLIENT, **fields) -> Token:
    return Token(**{"id": token_id, "client": client, "hash": f"hash-{token_id}", "created_ms": 10,
                    "expires_ms": 1000, "revoked_ms": None, **fields})  # fmt: skip


def insert(store, accepted: Batch, payload: bytes = PAYLOAD) -> int:
    return store.write(accepted.client, lambda tx: tx.insert_batch(accepted, payload))


def save(store, *profiles: Profile) -> None:
    store.write(None, lambda tx: tx.save_profiles(list(profiles)))


def seqs(batches: list[Batch]) -> list[int]:
    return [b.seq for b in batches]


def lines(rows: list[FailedRow]) -> list[int]:
    return [row.line for row in rows]


# -- write: one transaction, all or nothing ------------------------------------------------------


def test_a_write_returns_what_its_function_returns(store):
    assert store.write(CLIENT, lambda tx: 42) == 42


def test_an_error_in_the_function_reaches_the_caller_and_undoes_all_it_wrote(store):
    def write_then_fail(tx):
        tx.insert_batch(batch(), PAYLOAD)
        tx.save_client(ClientConfig(CLIENT, auth_required=True))
        tx.save_profiles([full_profile()])
        tx.save_token(token("k1"))
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        store.write(CLIENT, write_then_fail)
    assert store.batches(None, 10) == [] and store.client_config(CLIENT) is None
    assert store.profile(CLIENT, "tntId", "t1") is None and store.tokens(CLIENT) == []


def test_a_write_that_need_not_be_durable_is_kept_all_the_same(store):
    store.write(CLIENT, lambda tx: tx.save_client(ClientConfig(CLIENT, daily_rows=5)), durable=False)
    assert store.client_config(CLIENT) == ClientConfig(CLIENT, daily_rows=5)


def test_a_write_for_no_one_client_may_change_any_clients_data(store):
    store.write(None, lambda tx: tx.save_profiles([full_profile(client="a"), full_profile(client="b")]))
    assert store.has_client("a") and store.has_client("b")


def test_a_store_opened_again_finds_what_was_written(store_url):
    first = open_store(store_url)
    save(first, full_profile())
    first.close()
    again = open_store(store_url)
    assert again.profile(CLIENT, "tntId", "t1") == full_profile()
    again.close()


def test_closing_a_store_twice_is_safe(store_url):
    opened = open_store(store_url)
    opened.close()
    opened.close()


# -- write's meanwhile ---------------------------------------------------------------------------


def test_meanwhile_runs_once_after_the_function_on_the_callers_thread(store):
    calls = []
    result = store.write(CLIENT, lambda tx: calls.append("fn") or "done",
                         meanwhile=lambda: calls.append(("meanwhile", threading.current_thread())))  # fmt: skip
    assert result == "done" and calls == ["fn", ("meanwhile", threading.current_thread())]


def test_an_error_in_the_function_keeps_meanwhile_from_running(store):
    def fail(tx):
        raise ValueError("no")

    calls = []
    with pytest.raises(ValueError):
        store.write(CLIENT, fail, meanwhile=lambda: calls.append("meanwhile"))
    assert calls == []


def test_an_error_in_meanwhile_reaches_the_caller(store):
    with pytest.raises(ZeroDivisionError):
        store.write(CLIENT, lambda tx: None, meanwhile=lambda: 1 / 0)


def test_profiles_written_last_in_bulk_are_kept_once_meanwhile_has_run(store):
    calls = []
    store.write(CLIENT, lambda tx: tx.insert_profiles([full_profile()]), meanwhile=lambda: calls.append("meanwhile"))
    assert calls == ["meanwhile"] and store.profile(CLIENT, "tntId", "t1") == full_profile()


# -- batches -------------------------------------------------------------------------------------


def test_an_inserted_batch_reads_back_with_its_new_seq_and_its_bytes(store):
    seq = insert(store, batch(seq=99, accepted_ms=7))
    assert store.batch(seq) == batch(seq=seq, accepted_ms=7)
    assert store.batch_payload(seq) == PAYLOAD


def test_a_payload_of_several_megabytes_reads_back_whole(store):
    payload = b"batch=pcId\n" + bytes(range(256)) * (3 * 4096 + 1)
    assert store.batch_payload(insert(store, batch(), payload)) == payload


def test_seqs_increase_in_acceptance_order_whatever_seq_the_batch_had(store):
    accepted = [insert(store, batch(seq=5)) for _ in range(3)]
    assert accepted == sorted(set(accepted)) and len(accepted) == 3


def test_a_transaction_reads_a_batch_as_it_wrote_it(store):
    def insert_update_read(tx):
        seq = tx.insert_batch(batch(), PAYLOAD)
        tx.update_batch(replace(tx.batch(seq), state=BatchState.RUNNING, cursor=20))
        return tx.batch(seq)

    read = store.write(CLIENT, insert_update_read)
    assert (read.state, read.cursor) == (BatchState.RUNNING, 20) and store.batch(read.seq) == read


def test_update_batch_saves_its_state_cursor_and_counters(store):
    seq = insert(store, batch())
    updated = replace(store.batch(seq), state=BatchState.STUCK, cursor=30, cursor_line=4, consumed=3,
                      successful=1, not_found=1, failed=1, started_ms=5, finished_ms=6, attempts=2, open_attempts=1,
                      stuck_reason="why", held_reason="slow", last_error="disk", failing_since_ms=7,
                      next_attempt_ms=8)  # fmt: skip
    store.write(CLIENT, lambda tx: tx.update_batch(updated))
    assert store.batch(seq) == updated


def test_a_dropped_payload_is_gone_and_its_batch_stays(store):
    seq = insert(store, batch())
    store.write(CLIENT, lambda tx: tx.drop_payload(seq))
    store.write(CLIENT, lambda tx: tx.drop_payload(seq))  # nothing left to drop
    assert store.batch_payload(seq) is None and store.batch(seq) is not None


def test_an_unknown_seq_finds_no_batch_and_no_bytes(store):
    assert store.batch(1) is None and store.batch_payload(1) is None
    assert store.write(CLIENT, lambda tx: tx.batch(1)) is None


def test_batches_come_newest_first_of_one_client_or_of_all(store):
    a1, b1, a2 = insert(store, batch(client="a")), insert(store, batch(client="b")), insert(store, batch(client="a"))
    assert seqs(store.batches(None, 10)) == [a2, b1, a1]
    assert seqs(store.batches("a", 10)) == [a2, a1] and store.batches("c", 10) == []


def test_batches_page_by_limit_and_before_seq(store):
    accepted = [insert(store, batch()) for _ in range(5)]
    page = store.batches(CLIENT, 2)
    assert seqs(page) == [accepted[4], accepted[3]]
    assert seqs(store.batches(CLIENT, 2, before_seq=page[-1].seq)) == [accepted[2], accepted[1]]
    assert seqs(store.batches(CLIENT, 10, before_seq=accepted[1])) == [accepted[0]]


def test_last_batch_seq_is_the_latest_accepted_of_any_client_or_zero(store):
    assert store.write(None, lambda tx: tx.last_batch_seq()) == 0
    insert(store, batch(client="a"))
    latest = insert(store, batch(client="b"))
    assert store.write(None, lambda tx: tx.last_batch_seq()) == latest


def test_rows_accepted_since_count_the_clients_data_rows_from_the_time_on(store):
    for client, accepted_ms, size in ((CLIENT, 10, 1), (CLIENT, 20, 2), (CLIENT, 30, 4), ("other", 30, 8)):
        insert(store, batch(client=client, accepted_ms=accepted_ms, size=size))
    assert store.write(CLIENT, lambda tx: tx.rows_accepted_since(CLIENT, 20)) == 6
    assert store.write(CLIENT, lambda tx: tx.rows_accepted_since("nobody", 0)) == 0


def test_purging_batches_deletes_at_most_limit_those_finished_first_first(store):
    finished = [insert(store, batch(state=BatchState.COMPLETE, finished_ms=ms)) for ms in (30, 10, 20, 50)]
    insert(store, batch())  # the newest, never purged
    assert store.write(None, lambda tx: tx.purge_batches(50, 2)) == 2
    assert [store.batch(seq) is not None for seq in finished] == [True, False, False, True]
    assert store.write(None, lambda tx: tx.purge_batches(50, 2)) == 1  # not the one finished at 50
    assert [store.batch(seq) is not None for seq in finished] == [False, False, False, True]


def idempotency_key(store, client: str, key: str) -> IdempotencyKey | None:
    return store.write(client, lambda tx: tx.idempotency_key(client, key))


def test_an_idempotency_key_reads_back_per_client_and_is_replaced_whole(store):
    seq = insert(store, batch())
    saved = IdempotencyKey(CLIENT, "nightly", "ab" * 32, seq, 5)
    store.write(CLIENT, lambda tx: tx.save_idempotency_key(saved))
    assert idempotency_key(store, CLIENT, "nightly") == saved
    assert idempotency_key(store, "other", "nightly") is None
    again = replace(saved, digest="cd" * 32, accepted_ms=9)
    store.write(CLIENT, lambda tx: tx.save_idempotency_key(again))
    assert idempotency_key(store, CLIENT, "nightly") == again


def test_purging_a_batch_deletes_its_idempotency_keys(store):
    old = insert(store, batch(state=BatchState.COMPLETE, finished_ms=10))
    kept = insert(store, batch())
    for seq, key in ((old, "old"), (kept, "kept")):
        store.write(CLIENT, lambda tx, k=IdempotencyKey(CLIENT, key, "00", seq, 1): tx.save_idempotency_key(k))
    assert store.write(None, lambda tx: tx.purge_batches(50, 10)) == 1
    assert idempotency_key(store, CLIENT, "old") is None
    assert idempotency_key(store, CLIENT, "kept") is not None


# -- claim_next_batch ----------------------------------------------------------------------------


def test_no_batch_is_claimed_when_none_waits(store):
    insert(store, batch(state=BatchState.COMPLETE))
    insert(store, batch(state=BatchState.STUCK))
    with store.claim_next_batch() as claimed:
        assert claimed is None


def test_the_earliest_unfinished_batch_is_claimed(store):
    insert(store, batch(client="a", state=BatchState.COMPLETE))
    earliest = insert(store, batch(client="b"))
    insert(store, batch(client="c", state=BatchState.RUNNING))
    with store.claim_next_batch() as claimed:
        assert claimed == store.batch(earliest)


def test_a_clients_later_batch_waits_for_its_earlier_one(store):
    a1, a2, b = insert(store, batch(client="a")), insert(store, batch(client="a")), insert(store, batch(client="b"))
    with store.claim_next_batch() as first, store.claim_next_batch() as second:
        # A store that knows a1 is held passes it by, one that cannot hands it out again: never a2.
        assert first.seq == a1 and second.seq in (a1, b) and a2 not in (first.seq, second.seq)


def test_a_claimed_batch_can_be_claimed_again_once_its_block_ends(store):
    seq = insert(store, batch())
    with store.claim_next_batch() as first:
        pass
    with store.claim_next_batch() as again:
        assert first.seq == again.seq == seq


# -- failed rows ---------------------------------------------------------------------------------


def test_failed_rows_read_back_in_line_order_with_their_bytes(store):
    seq, other = insert(store, batch()), insert(store, batch())
    kept = FailedRow.kept(3, "p3", "too long", b"p3," + b"\xff" * 9000)
    store.write(CLIENT, lambda tx: tx.add_failed_rows(seq, (row for row in [*ROWS, kept])))  # any iterable
    assert lines(store.failed_rows(seq)) == [2, 3, 5, 7, 9] and store.failed_rows(other) == []
    assert store.failed_rows(seq)[:2] == [FailedRow(2, "p2", "bad", b"p2,\xff", 5), kept]


def test_failed_rows_page_by_limit_offset_and_line(store):
    seq = insert(store, batch())
    store.write(CLIENT, lambda tx: tx.add_failed_rows(seq, ROWS))
    assert lines(store.failed_rows(seq, limit=2)) == [2, 5]
    assert lines(store.failed_rows(seq, limit=2, offset=1)) == [5, 7]
    assert lines(store.failed_rows(seq, offset=3)) == [9]
    assert lines(store.failed_rows(seq, after_line=5)) == [7, 9]
    assert lines(store.failed_rows(seq, limit=1, offset=1, after_line=2)) == [7]


def test_deleting_failed_rows_forgets_the_clients_rows_of_those_ids_only(store):
    mine, theirs = insert(store, batch()), insert(store, batch(client="other"))
    store.write(None, lambda tx: [tx.add_failed_rows(seq, ROWS) for seq in (mine, theirs)])
    assert store.write(CLIENT, lambda tx: tx.delete_failed_rows(CLIENT, ["p2", "p9", "nobody"])) == 2
    assert lines(store.failed_rows(mine)) == [5, 7] and lines(store.failed_rows(theirs)) == [2, 5, 7, 9]


def test_a_failed_row_recorded_twice_is_a_conflict_that_keeps_nothing_of_the_transaction(store):
    seq = insert(store, batch())
    store.write(CLIENT, lambda tx: tx.add_failed_rows(seq, ROWS[:1]))

    def again(tx):
        tx.save_client(ClientConfig(CLIENT))
        tx.add_failed_rows(seq, ROWS[1:2] + ROWS[:1])

    with pytest.raises(StoreConflict):
        store.write(CLIENT, again)
    assert lines(store.failed_rows(seq)) == [5] and store.client_config(CLIENT) is None


# -- profiles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("write", ["insert_profiles", "save_profiles"])
def test_written_profiles_read_back_whole_by_each_of_their_ids(store, write):
    store.write(CLIENT, lambda tx: getattr(tx, write)([full_profile("t1"), full_profile("t2", mcvid=None)]))
    for id_kind, visitor_id in (("tntId", "t1"), ("thirdPartyId", "x1"), ("marketingCloudVisitorId", "m1")):
        assert store.profile(CLIENT, id_kind, visitor_id) == full_profile("t1")
    assert store.profile(CLIENT, "thirdPartyId", "x2") == full_profile("t2", mcvid=None)
    assert store.profile(CLIENT, "tntId", "t3") is None


def test_saving_a_profile_replaces_it_whole(store):
    save(store, full_profile())
    replaced = full_profile(created_ms=1, modified_ms=2, third_party_id="x9", mcvid=None,
                            attributes={"tier": ["silver", 2, 9]}, active_ms=3)  # fmt: skip
    save(store, replaced)
    assert store.profile(CLIENT, "tntId", "t1") == replaced
    assert store.profile(CLIENT, "thirdPartyId", "x1") is None
    assert store.profile(CLIENT, "marketingCloudVisitorId", "m1") is None


@pytest.mark.parametrize("id_kind, ids", [("tntId", ["t1", "t2"]), ("thirdPartyId", ["x1", "x2"]),
                                          ("marketingCloudVisitorId", ["m1", "m2"])])  # fmt: skip
def test_profiles_by_finds_the_profiles_of_the_ids_asked_and_leaves_out_the_others(store, id_kind, ids):
    save(store, full_profile("t1"), full_profile("t2"))
    found = store.write(CLIENT, lambda tx: tx.profiles_by(CLIENT, id_kind, [*ids, "unknown"]))
    assert found == {ids[0]: full_profile("t1"), ids[1]: full_profile("t2")}
    assert store.write(CLIENT, lambda tx: tx.profiles_by("other", id_kind, ids)) == {}


def test_ids_that_lead_to_one_profile_share_one_profile_object(store):
    save(store, full_profile("t1"), full_profile("t2"))
    store.write(CLIENT, lambda tx: tx.retire_profile(CLIENT, "t2", "t1"))
    found = store.write(CLIENT, lambda tx: tx.profiles_by(CLIENT, "tntId", ["t1", "t2"]))
    assert found["t1"] is found["t2"] and found["t1"] == full_profile("t1")


def test_a_clients_profiles_are_not_found_by_another_client_which_may_hold_the_same_ids(store):
    save(store, full_profile())
    assert store.profile("other", "tntId", "t1") is None
    save(store, full_profile(client="other", active_ms=1))
    assert store.profile("other", "thirdPartyId", "x1").active_ms == 1
    assert store.profile(CLIENT, "thirdPartyId", "x1").active_ms == 300


def test_a_retired_profiles_tnt_ids_resolve_to_the_one_it_merged_into(store):
    save(store, full_profile("t1"), full_profile("t2"), full_profile("t3"))
    store.write(CLIENT, lambda tx: tx.retire_profile(CLIENT, "t1", "t2"))
    store.write(CLIENT, lambda tx: tx.retire_profile(CLIENT, "t2", "t3"))
    assert [store.profile(CLIENT, "tntId", t).tnt_id for t in ("t1", "t2", "t3")] == ["t3", "t3", "t3"]
    assert store.merged_tnt_ids(CLIENT, "t3") == ["t1", "t2"] and store.merged_tnt_ids(CLIENT, "t2") == []
    assert store.profile(CLIENT, "thirdPartyId", "x1") is None


def test_deleting_a_profile_forgets_it_and_the_tnt_ids_merged_into_it(store):
    save(store, full_profile("t1"), full_profile("t2"))
    store.write(CLIENT, lambda tx: tx.retire_profile(CLIENT, "t1", "t2"))
    store.write(CLIENT, lambda tx: tx.delete_profile(CLIENT, "t2"))
    assert store.profile(CLIENT, "tntId", "t2") is None and store.profile(CLIENT, "tntId", "t1") is None
    assert store.merged_tnt_ids(CLIENT, "t2") == [] and not store.has_client(CLIENT)


def test_purging_inactive_profiles_deletes_at_most_limit_of_those_inactive_before_the_time(store):
    save(store, *(full_profile(t, client=c, active_ms=ms) for t, c, ms in
                  (("t1", "a", 10), ("t2", "b", 20), ("t3", "a", 30), ("t4", "a", 50), ("t5", "a", 60))))  # fmt: skip
    store.write("a", lambda tx: tx.retire_profile("a", "t5", "t1"))
    assert [store.write(None, lambda tx: tx.purge_inactive(50, 2)) for _ in range(3)] == [2, 1, 0]
    kept = [store.profile(c, "tntId", t) is not None for t, c in (("t1", "a"), ("t2", "b"), ("t3", "a"), ("t4", "a"))]
    assert kept == [False, False, False, True]
    assert store.merged_tnt_ids("a", "t1") == []


def test_a_client_is_known_by_its_profiles_only(store):
    store.write(CLIENT, lambda tx: tx.save_client(ClientConfig(CLIENT)))
    insert(store, batch())
    assert not store.has_client(CLIENT)
    save(store, full_profile())
    assert store.has_client(CLIENT) and not store.has_client("other")


def test_inserting_a_profile_whose_tnt_id_exists_is_a_conflict_that_keeps_nothing_of_the_transaction(store):
    save(store, full_profile("t1"))

    def clash(tx):
        tx.insert_batch(batch(), PAYLOAD)
        tx.insert_profiles([full_profile("t2"), full_profile("t1", third_party_id="x9", mcvid=None)])

    with pytest.raises(StoreConflict) as refused:
        store.write(CLIENT, clash)
    assert refused.value.cause and store.batches(None, 10) == []
    assert store.profile(CLIENT, "tntId", "t2") is None and store.profile(CLIENT, "tntId", "t1") == full_profile("t1")


# -- clients and tokens --------------------------------------------------------------------------


def test_a_clients_settings_read_back_and_are_replaced_whole(store):
    assert store.client_config(CLIENT) is None
    store.write(CLIENT, lambda tx: tx.save_client(ClientConfig(CLIENT, True, 100, 60)))
    assert store.client_config(CLIENT) == ClientConfig(CLIENT, True, 100, 60)
    store.write(CLIENT, lambda tx: tx.save_client(ClientConfig(CLIENT, daily_rows=5)))
    assert store.client_config(CLIENT) == ClientConfig(CLIENT, False, 5, None) and store.client_config("other") is None


def test_a_clients_tokens_read_back_first_saved_first_revoked_and_expired_included(store):
    saved = [token("k2"), token("k1", revoked_ms=5), token("k3", expires_ms=1)]
    store.write(CLIENT, lambda tx: [tx.save_token(t) for t in saved])
    store.write("other", lambda tx: tx.save_token(token("k4", client="other")))
    assert store.tokens(CLIENT) == saved
    assert store.write(CLIENT, lambda tx: tx.tokens(CLIENT)) == saved


def test_saving_a_token_again_saves_its_expiry_and_revocation_and_keeps_its_place(store):
    store.write(CLIENT, lambda tx: [tx.save_token(token(k)) for k in ("k1", "k2")])
    again = token("k1", hash="other", created_ms=99, expires_ms=2000, revoked_ms=50)
    store.write(CLIENT, lambda tx: tx.save_token(again))
    assert store.tokens(CLIENT) == [token("k1", expires_ms=2000, revoked_ms=50), token("k2")]


def test_a_token_is_found_by_the_hash_of_its_secret(store):
    store.write(CLIENT, lambda tx: tx.save_token(token("k1")))
    assert store.token_by_hash("hash-k1") == token("k1") and store.token_by_hash("hash-k2") is None


def test_a_token_with_another_tokens_hash_is_a_conflict(store):
    store.write(CLIENT, lambda tx: tx.save_token(token("k1")))
    with pytest.raises(StoreConflict):
        store.write(CLIENT, lambda tx: tx.save_token(token("k2", hash="hash-k1")))
    assert store.tokens(CLIENT) == [token("k1")]


# -- errors --------------------------------------------------------------------------------------


def test_any_other_error_of_the_database_is_raised_as_store_failed(store, store_url):
    query(store_url, "DROP TABLE clients")
    with pytest.raises(StoreFailed, match="clients"):
        store.client_config(CLIENT)
    with pytest.raises(StoreFailed, match="clients"):
        store.write(CLIENT, lambda tx: tx.save_client(ClientConfig(CLIENT)))
    assert store.write(CLIENT, lambda tx: tx.last_batch_seq()) == 0  # and the store works on


# -- profile pages -------------------------------------------------------------------------------


def test_profile_rows_read_one_clients_profiles_in_tnt_id_order_after_the_one_given(store):
    others = [replace(profile("t0", "o0"), client="other")]
    store.write(None, lambda tx: tx.insert_profiles([profile(t, f"x{t}") for t in ("t3", "t1", "t2", "t4")] + others))
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, None, 10)] == ["t1", "t2", "t3", "t4"]
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, "t1", 2)] == ["t2", "t3"]
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, "t4", 2)] == []
    assert [profile_from_row(row) for row in store.profile_rows(CLIENT, "t3", 1)] == [profile("t4", "xt4")]  # whole


def test_profile_rows_order_tnt_ids_by_their_bytes(store):
    tnt_ids = ["B", "a", "Z", "é", "_", "1"]
    store.write(CLIENT, lambda tx: tx.insert_profiles([profile(t, f"x{t}") for t in tnt_ids]))
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, None, 10)] == sorted(tnt_ids, key=str.encode)
    assert store.profile_rows("nobody", None, 10) == []


def test_attribute_names_are_those_of_the_profiles_active_and_modified_since(store):
    def made(tnt_id, third_party_id, names, modified_ms, active_ms, client=CLIENT):
        attributes = {name: ["v", modified_ms, 2] for name in names}
        return Profile(client, tnt_id, 1, modified_ms, third_party_id, None, attributes, active_ms)

    store.write(None, lambda tx: tx.insert_profiles([
        made("t1", "x1", ["city", "tier"], 10, 10), made("t2", None, ["é,名"], 10, 10),
        made("t3", "x3", ["old"], 10, 1), made("t4", "x4", ["stale"], 1, 10), made("t5", "x5", ["else"], 10, 10, "other"),
    ]))  # fmt: skip
    assert store.attribute_names(CLIENT, None, 0, 0) == {"city", "tier", "é,名", "old", "stale"}
    assert store.attribute_names(CLIENT, True, 5, 5) == {"city", "tier"}
    assert store.attribute_names(CLIENT, False, 5, 5) == {"é,名"}
    assert store.attribute_names("nobody", None, 0, 0) == set()


# -- webhook deliveries --------------------------------------------------------------------------


def delivery(event_id: str, seq: int = 1, client: str = CLIENT, **fields) -> WebhookDelivery:
    defaults = {"event": "batch.completed", "body": '{"batchId": "x"}', "created_ms": 10, "next_attempt_ms": 10}
    return WebhookDelivery(event_id, client, seq, **{**defaults, **fields})


def add_deliveries(store, *deliveries: WebhookDelivery) -> None:
    for d in deliveries:
        store.write(d.client, lambda tx, d=d: tx.insert_delivery(d))


def claim(store, now_ms: int, until_ms: int = 1000, limit: int = 10) -> list[WebhookDelivery]:
    return store.write(None, lambda tx: tx.claim_deliveries(now_ms, until_ms, limit))


def test_a_clients_webhook_settings_read_back_outside_and_inside_a_transaction(store):
    config = ClientConfig(CLIENT, webhook_url="https://hooks.example/in", webhook_secret="whsec_1")
    store.write(CLIENT, lambda tx: tx.save_client(config))
    assert store.client_config(CLIENT) == config
    assert store.write(CLIENT, lambda tx: tx.client_config(CLIENT)) == config
    assert store.write(CLIENT, lambda tx: tx.client_config("other")) is None


def test_a_transaction_reads_the_client_settings_it_saved(store):
    config = ClientConfig(CLIENT, webhook_url="http://a.example/")

    def save_then_read(tx):
        tx.save_client(config)
        return tx.client_config(CLIENT)

    assert store.write(CLIENT, save_then_read) == config


def test_deliveries_read_back_whole_newest_first_per_client_up_to_limit(store):
    add_deliveries(store, delivery("e1", created_ms=1), delivery("e3", created_ms=3), delivery("e2", created_ms=2))
    add_deliveries(store, delivery("o1", client="other"))
    assert [d.event_id for d in store.deliveries(CLIENT, 10)] == ["e3", "e2", "e1"]
    assert [d.event_id for d in store.deliveries(CLIENT, 2)] == ["e3", "e2"]
    assert store.deliveries("other", 10) == [delivery("o1", client="other")]


def test_a_delivery_of_an_event_id_stored_already_is_a_conflict(store):
    add_deliveries(store, delivery("e1"))
    with pytest.raises(StoreConflict):
        add_deliveries(store, delivery("e1", seq=2))


def test_claiming_takes_the_due_deliveries_and_moves_their_next_attempt(store):
    add_deliveries(store, delivery("due", next_attempt_ms=5), delivery("later", next_attempt_ms=50))
    add_deliveries(store, delivery("done", next_attempt_ms=None, delivered_ms=3))
    claimed = claim(store, now_ms=10, until_ms=70)
    assert claimed == [delivery("due", next_attempt_ms=70)]
    assert claim(store, now_ms=60) == [delivery("later", next_attempt_ms=1000)]  # "due" waits for its claim
    assert [d.event_id for d in claim(store, now_ms=70)] == ["due"]
    assert sorted(d.event_id for d in claim(store, now_ms=10**12)) == ["due", "later"]  # never "done"


def test_claiming_takes_at_most_limit_deliveries(store):
    add_deliveries(store, *(delivery(f"e{i}", next_attempt_ms=i) for i in range(5)))
    assert len(claim(store, now_ms=10, limit=3)) == 3
    assert len(claim(store, now_ms=10, limit=3)) == 2


def test_senders_claiming_at_once_never_claim_one_delivery_twice(store):
    add_deliveries(store, *(delivery(f"e{i:02}", next_attempt_ms=i) for i in range(40)))
    claimed: list[str] = []
    barrier = threading.Barrier(4)

    def sender() -> None:
        barrier.wait()
        for _ in range(10):
            claimed.extend(d.event_id for d in claim(store, now_ms=100, limit=3))

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"e{i:02}" for i in range(40)]


def test_updating_a_delivery_saves_its_attempts_and_outcome(store):
    add_deliveries(store, delivery("e1"))
    done = delivery("e1", attempts=2, next_attempt_ms=None, delivered_ms=40, last_status=204, last_error=None)
    store.write(CLIENT, lambda tx: tx.update_delivery(done))
    assert store.deliveries(CLIENT, 10) == [done]
    store.write(CLIENT, lambda tx: tx.update_delivery(delivery("unknown")))  # nothing, no error
    assert store.deliveries(CLIENT, 10) == [done]


def test_purging_a_batch_deletes_its_webhook_deliveries(store):
    old = insert(store, batch(state=BatchState.COMPLETE, finished_ms=10))
    kept = insert(store, batch())
    add_deliveries(store, delivery("old", seq=old), delivery("kept", seq=kept))
    assert store.write(None, lambda tx: tx.purge_batches(50, 10)) == 1
    assert [d.event_id for d in store.deliveries(CLIENT, 10)] == ["kept"]


def test_profile_rows_keep_only_the_profiles_with_or_without_a_third_party_id_if_told(store):
    store.write(CLIENT, lambda tx: tx.insert_profiles([profile("t1", "x1"), profile("t2", None), profile("t3", "x3")]))
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, None, 10, with_third_party_id=True)] == ["t1", "t3"]
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, None, 10, with_third_party_id=False)] == ["t2"]
    assert [row[TNT_ID] for row in store.profile_rows(CLIENT, "t1", 1, with_third_party_id=True)] == ["t3"]
