"""What /api shows beyond Target: the batch record, failed rows, and the failed rows as a file."""

import pytest

from support import FakeClock, accepted_id, apply, attributes, eventually, query, submit, wait_complete

BATCH = "batch=thirdPartyId,city,zip\nc1,Oslo,0150\n,Rome\nc3,a%zz\nc4,Bergen,5003,extra\nc5,Paris,75001\n"


def test_batch_record_has_counts_timings_and_state(http):
    record = apply(http, BATCH)
    assert record["client"] == "demo" and record["version"] == 2
    assert (record["status"], record["state"]) == ("complete", "complete")
    assert (record["batchSize"], record["consumedCount"]) == (5, 5)
    assert (record["successfulUpdates"], record["profilesNotFound"], record["failedUpdates"]) == (2, 0, 3)
    assert record["payloadBytes"] == len(BATCH.encode())
    assert record["acceptedAt"] <= record["startedAt"] <= record["finishedAt"]
    assert record["durationMs"] >= 0
    assert record["batchStatus"].endswith(f"/m2/demo/v2/profile/batchStatus?batchId={record['batchId']}")


def test_failed_rows_with_line_id_and_reason(http):
    record = apply(http, BATCH)
    body = http.get(f"/api/batches/{record['batchId']}/failures").json()
    assert body["failedUpdates"] == 3
    assert body["failedRows"] == [
        {"line": 3, "id": "", "reason": "empty thirdPartyId"},
        {"line": 4, "id": "c3", "reason": "column 'city' ('a%zz'): invalid percent-encoding"},
        {"line": 5, "id": "c4", "reason": "4 fields, but the header has 3"},
    ]


def test_failed_rows_page_through(http):
    record = apply(http, BATCH)
    page = http.get(f"/api/batches/{record['batchId']}/failures", params={"limit": 1, "offset": 1}).json()
    assert [r["line"] for r in page["failedRows"]] == [4]


def test_failed_rows_csv_is_the_original_lines_plus_a_reason(http):
    record = apply(http, BATCH)
    response = http.get(f"/api/batches/{record['batchId']}/failures.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [
        "batch=thirdPartyId,city,zip,#reason",
        ",Rome,,line 3: empty thirdPartyId",
        "c3,a%zz,,line 4: column 'city' ('a%25zz'): invalid percent-encoding",
        "c4,Bergen,5003,extra,line 5: 4 fields%2C but the header has 3",
    ]


def test_failed_rows_csv_can_be_fixed_and_resubmitted_as_is(http):
    record = apply(http, BATCH)
    csv = http.get(f"/api/batches/{record['batchId']}/failures.csv").text
    fixed = csv.replace(",Rome,", "c2,Rome,").replace("a%zz", "Lyon").replace("5003,extra,", "5003,")
    resubmitted = apply(http, fixed)
    assert (resubmitted["successfulUpdates"], resubmitted["failedUpdates"]) == (3, 0)
    assert attributes(http, "c2") == {"city": "Rome"}
    assert attributes(http, "c3") == {"city": "Lyon"}
    assert attributes(http, "c4") == {"city": "Bergen", "zip": "5003"}


def test_unknown_batch_is_404_in_json(http):
    response = http.get("/api/batches/demo-1700000000000-5")
    assert response.status_code == 404
    assert response.json()["message"] == "No batch found with batchId=demo-1700000000000-5"


def test_profile_record_shows_every_id(http):
    apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")
    profile = http.get("/api/profiles/thirdPartyId/crm-1", params={"client": "demo"}).json()
    assert profile["thirdPartyId"] == "crm-1"
    assert http.get(f"/api/profiles/tntId/{profile['tntId']}", params={"client": "demo"}).json() == profile


def test_unknown_profile_record_is_404(http):
    response = http.get("/api/profiles/thirdPartyId/nobody", params={"client": "demo"})
    assert response.status_code == 404
    assert http.get("/api/profiles/email/x", params={"client": "demo"}).status_code == 404


def test_a_batch_whose_bytes_are_lost_is_stuck_with_the_reason(make_service, store_url):
    http = make_service(store=store_url, run_worker=False)
    batch_id = accepted_id(submit(http, "batch=pcId,city\np1,Oslo\n"))
    query(store_url, "DELETE FROM batch_payloads")
    make_service(store=store_url)  # a worker comes along
    record = wait_complete(http, batch_id)
    assert (record["status"], record["state"]) == ("stuck", "stuck")
    assert record["stuckReason"] == "the batch's bytes are missing from the store"
    later = apply(http, "batch=pcId,city\np2,Rome\n")
    assert later["status"] == "complete", "a stuck batch must not hold back the ones after it"


@pytest.mark.parametrize("params, problem", [
    ({"limit": 10**30}, "limit: Input should be less than or equal to 1000"),
    ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
    ({"offset": -1}, "offset: Input should be greater than or equal to 0"),
    ({"offset": 2**63}, "offset: Input should be less than or equal to 2147483647"),
])  # fmt: skip
def test_failures_paging_out_of_range_is_400_naming_the_field(http, params, problem):
    record = apply(http, BATCH)
    response = http.get(f"/api/batches/{record['batchId']}/failures", params=params)
    assert response.status_code == 400 and response.json()["message"] == f"Invalid request: {problem}"


def test_a_failed_row_keeps_only_the_beginning_of_a_huge_id_or_line(http):
    huge_id, huge_value = "x" * 3_000_000, "v" * 3_000_000
    record = apply(http, f"batch=thirdPartyId,city\n{huge_id},Oslo\nc2,{huge_value},extra\nc3,Rome\n")
    assert (record["successfulUpdates"], record["failedUpdates"]) == (1, 2)
    failed = http.get(f"/api/batches/{record['batchId']}/failures").json()["failedRows"]
    assert failed[0]["id"] == "x" * 1024 + "…"
    assert failed[0]["reason"] == "thirdPartyId is 3,000,000 characters, the limit is 256"
    assert table_rows_bytes(http, record) < 20_000, "nothing near the 6 MB sent is kept"


def test_a_row_kept_in_part_cannot_be_resubmitted_as_it_is(http):
    record = apply(http, f"batch=thirdPartyId,city\nc1,{'v' * 20_000},extra\n")
    csv = http.get(f"/api/batches/{record['batchId']}/failures.csv").content
    header, row = csv.splitlines()
    assert row.startswith(b"c1," + b"v" * 8_189)
    assert b"only the first 8%2C192 of its 20%2C009 bytes are kept%2C so it cannot be resubmitted as it is" in row
    resubmitted = apply(http, csv.decode())
    assert (resubmitted["successfulUpdates"], resubmitted["failedUpdates"]) == (0, 1), (
        "the cut values are never written"
    )
    assert attributes(http, "c1") is None


def test_the_failures_file_for_spreadsheets_defuses_formulas(http):
    record = apply(http, 'batch=thirdPartyId,note\n=HYPERLINK("http://x"),@SUM(1)\nc2,-2+3,extra\n')
    kept = http.get(f"/api/batches/{record['batchId']}/failures.csv")
    assert kept.text.splitlines()[1].startswith('=HYPERLINK("http://x"),@SUM(1),'), "the batch file is byte for byte"
    safe = http.get(f"/api/batches/{record['batchId']}/failures.csv", params={"variant": "spreadsheet"})
    assert (
        safe.headers["content-disposition"] == f'attachment; filename="{record["batchId"]}-failed-for-spreadsheets.csv"'
    )
    lines = safe.text.splitlines()
    assert lines[1].startswith("'=HYPERLINK(\"http://x\"),'@SUM(1),")
    assert lines[2].startswith("c2,'-2+3,extra,")


def test_only_a_stuck_batch_has_unprocessed_rows(http):
    record = apply(http, BATCH)
    response = http.get(f"/api/batches/{record['batchId']}/unprocessed.csv")
    assert response.status_code == 409
    assert (
        response.json()["message"]
        == f"Batch {record['batchId']} is complete: only a stuck batch has rows left unapplied"
    )


def test_finished_batches_and_their_failed_rows_are_purged_after_the_retention(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, batch_retention_days=30)
    old = apply(http, BATCH)
    clock.advance(days=29)
    recent = apply(http, BATCH)
    clock.advance(days=2)
    newest = apply(http, BATCH)  # the worker purges when it is idle, at most once a minute
    eventually(lambda: http.get(f"/api/batches/{old['batchId']}").status_code == 404, "purged")
    assert http.get(f"/api/batches/{recent['batchId']}/failures").json()["failedUpdates"] == 3
    assert http.get(f"/api/batches/{newest['batchId']}").status_code == 200


def test_the_newest_batch_is_never_purged_so_single_updates_still_win(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, batch_retention_days=1)
    older = apply(http, "batch=thirdPartyId,city\nc2,Rome\n")
    newest = apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    clock.advance(days=5)
    eventually(lambda: http.get(f"/api/batches/{older['batchId']}").status_code == 404, "purged")
    assert http.get(f"/api/batches/{newest['batchId']}").status_code == 200
    # A single update ranks after the newest batch accepted before it; with every batch gone,
    # it would rank before the batch rows stored, and be ignored.
    http.get("/m2/demo/profile/update", params={"mbox3rdPartyId": "c1", "profile.city": "Bergen"})
    assert attributes(http, "c1") == {"city": "Bergen"}


def table_rows_bytes(http, record) -> int:
    """The bytes of the batch's failed rows as the failures file gives them."""
    return len(http.get(f"/api/batches/{record['batchId']}/failures.csv").content)
