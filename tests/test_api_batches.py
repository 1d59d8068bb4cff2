"""What /api shows beyond Target: the batch record, failed rows, and the failed rows as a file."""


from support import accepted_id, apply, attributes, query, submit, wait_complete

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
