"""Rows apply in file order; batches apply in the order they were accepted, each one counting."""

from support import accepted_id, apply, attributes, submit, wait_complete


def test_later_rows_of_a_batch_win(http):
    apply(http, "batch=thirdPartyId,tier,city\nc1,silver,Oslo\nc1,gold\n")
    assert attributes(http, "c1") == {"tier": "gold", "city": "Oslo"}


def test_consecutive_batches_for_the_same_ids_both_take_effect(make_service):
    # Target's caveat: a second v2 batch for the same ids overrides the first one's properties.
    http = make_service(run_worker=False)
    first = accepted_id(submit(http, "batch=thirdPartyId,a,b\nc1,1,1\nc2,1,1\n"))
    second = accepted_id(submit(http, "batch=thirdPartyId,b,c\nc1,2,2\nc2,,2\n"))
    worker = make_service(store=http.app.state.settings.store_url)
    wait_complete(worker, first), wait_complete(worker, second)
    assert attributes(http, "c1") == {"a": "1", "b": "2", "c": "2"}
    assert attributes(http, "c2") == {"a": "1", "b": "1", "c": "2"}


def test_batches_apply_in_the_order_they_were_accepted(make_service):
    http = make_service(run_worker=False, chunk_rows=7)
    ids = [accepted_id(submit(http, "batch=pcId,n\n" + f"p,{i}\n" * 20)) for i in range(30)]
    worker = make_service(store=http.app.state.settings.store_url, chunk_rows=7)
    for batch_id in ids:
        wait_complete(worker, batch_id)
    assert attributes(http, "p", by="tntId") == {"n": "29"}
