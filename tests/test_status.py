"""Target's batchStatus answer, in XML, under both paths."""

import pytest

from support import accepted_id, apply, failed_profile_ids, submit, xml_fields

BATCH = "batch=thirdPartyId,city\nc1,Oslo\n,Rome\nc3,a,b\n"


def status(http, batch_id, client="demo", path="/m2/{client}/profile/batchStatus", **params):
    return http.get(path.format(client=client), params={"batchId": batch_id, **params})


def test_status_of_a_complete_batch(http):
    batch_id = apply(http, BATCH)["batchId"]
    response = status(http, batch_id)
    assert response.headers["content-type"].startswith("application/xml")
    assert xml_fields(response) == {"batchId": batch_id, "status": "complete", "batchSize": "3"}


def test_show_details_adds_the_counters(http):
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n", version=2)
    batch_id = apply(http, "batch=thirdPartyId,city\nc1,Rome\nnobody,Paris\n,x\n", version=1)["batchId"]
    assert xml_fields(status(http, batch_id, showDetails="true")) == {
        "batchId": batch_id, "status": "complete", "batchSize": "3", "consumedCount": "3",
        "successfulUpdates": "1", "profilesNotFound": "1", "failedUpdates": "1",
    }  # fmt: skip


def test_failed_rows_are_listed_as_profile_elements(http):
    batch_id = apply(http, BATCH)["batchId"]
    assert failed_profile_ids(status(http, batch_id)) == ["", "c3"]
    assert failed_profile_ids(status(http, batch_id, showDetails="true")) == ["", "c3"]


def test_status_under_the_v2_path_with_m2node(http):
    batch_id = apply(http, BATCH)["batchId"]
    response = status(http, batch_id, path="/m2/{client}/v2/profile/batchStatus", m2Node="00")
    assert xml_fields(response)["status"] == "complete"


def test_status_url_from_the_submit_answer_works_as_given(http):
    url = xml_fields(submit(http, BATCH))["batchStatus"]
    assert xml_fields(http.get(url))["batchSize"] == "3"


def test_a_queued_batch_is_incomplete(make_service):
    http = make_service(run_worker=False)
    batch_id = accepted_id(submit(http, BATCH))
    fields = xml_fields(status(http, batch_id, showDetails="true"))
    assert (fields["status"], fields["consumedCount"]) == ("incomplete", "0")


def test_unknown_batch_id_is_404(http):
    response = status(http, "demo-1700000000000-99")
    assert response.status_code == 404
    assert xml_fields(response) == {
        "success": "false",
        "message": "No batch found with batchId=demo-1700000000000-99 for client demo",
    }


def test_malformed_batch_id_is_404(http):
    assert status(http, "not-an-id").status_code == 404


def test_batch_of_another_client_is_not_shown(http):
    batch_id = apply(http, BATCH, client="acme")["batchId"]
    assert status(http, batch_id, client="demo").status_code == 404
    assert status(http, batch_id, client="acme").status_code == 200


def test_batch_id_with_a_wrong_timestamp_is_404(http):
    client, _, seq = apply(http, BATCH)["batchId"].split("-")
    assert status(http, f"{client}-1600000000000-{seq}").status_code == 404


def test_missing_batch_id_is_400(http):
    response = http.get("/m2/demo/profile/batchStatus")
    assert response.status_code == 400
    assert "batchId query parameter is required" in xml_fields(response)["message"]


@pytest.mark.parametrize("batch_id", ["demo-1-%C2%B2", "demo-1-9223372036854775808", "demo-99999999999999999999-1"])
def test_a_batch_id_with_numbers_no_batch_can_have_is_404(http, batch_id):
    # Regression: a non-ASCII digit ("²") and numbers past 64 bits answered a plain-text 500.
    response = http.get(f"/m2/demo/profile/batchStatus?batchId={batch_id}")
    assert response.status_code == 404 and xml_fields(response)["success"] == "false"
    assert http.get(f"/api/batches/{batch_id}").status_code == 404


def test_batch_status_lists_the_first_thousand_failed_ids(http):
    body = "batch=thirdPartyId,city\n" + "".join(f"c{i}/x,Oslo\n" for i in range(1_500)) + "ok,Oslo\n"
    batch_id = apply(http, body)["batchId"]
    listed = failed_profile_ids(status(http, batch_id, showDetails="true"))
    assert listed == [f"c{i}/x" for i in range(1_000)]
    assert xml_fields(status(http, batch_id, showDetails="true"))["failedUpdates"] == "1500"
    rest = http.get(f"/api/batches/{batch_id}/failures", params={"offset": 1_000}).json()["failedRows"]
    assert [r["id"] for r in rest] == [f"c{i}/x" for i in range(1_000, 1_500)]
