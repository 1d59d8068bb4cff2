"""Privacy requests by TNTID, THIRDPARTYID or ECID, and deleting single attributes."""

import pytest

from support import apply, attributes, deliver


@pytest.fixture
def visitor(http):
    """A visitor with a merged anonymous profile, an ECID, and a failed batch row of their own."""
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    anonymous = deliver(http, {"execute": {"pageLoad": {"profileParameters": {"color": "red"}}}}).json()["id"]["tntId"]
    linked = deliver(http, {"id": {"tntId": anonymous, "thirdPartyId": "c1", "marketingCloudVisitorId": "ecid-1"}})
    record = apply(http, "batch=thirdPartyId,city\nc1,Os%zzlo\nc2,bad%zz\n")
    return {"tntId": linked.json()["id"]["tntId"], "anonymous": anonymous, "batchId": record["batchId"]}


@pytest.mark.parametrize("namespace, key", [("TNTID", "tntId"), ("THIRDPARTYID", None), ("ECID", None)])
def test_access_returns_the_whole_profile_with_all_its_ids(http, visitor, namespace, key):
    visitor_id = {"TNTID": visitor["tntId"], "THIRDPARTYID": "c1", "ECID": "ecid-1"}[namespace]
    body = http.get(f"/api/clients/demo/privacy/{namespace}/{visitor_id}").json()
    assert (body["tntId"], body["thirdPartyId"], body["marketingCloudVisitorId"]) == (visitor["tntId"], "c1", "ecid-1")
    assert body["mergedTntIds"] == [visitor["anonymous"]]
    assert {k: v["value"] for k, v in body["attributes"].items()} == {"city": "Oslo", "color": "red"}


def test_delete_removes_the_profile_its_links_and_its_failed_rows(http, visitor):
    response = http.delete("/api/clients/demo/privacy/ECID/ecid-1")
    assert response.status_code == 200 and response.json()["failedRowsRemoved"] == 1
    for path in (f"/rest/v1/profiles/{visitor['tntId']}", f"/rest/v1/profiles/{visitor['anonymous']}",
                 "/rest/v1/profiles/thirdPartyId/c1", "/rest/v1/profiles/marketingCloudVisitorId/ecid-1"):  # fmt: skip
        assert http.get(path, params={"client": "demo"}).status_code == 404
    remaining = http.get(f"/api/batches/{visitor['batchId']}/failures").json()["failedRows"]
    assert [r["id"] for r in remaining] == ["c2"]
    assert "c1" not in http.get(f"/api/batches/{visitor['batchId']}/failures.csv").text


def test_a_deleted_visitor_who_comes_back_starts_afresh(http, visitor):
    http.delete("/api/clients/demo/privacy/THIRDPARTYID/c1")
    apply(http, "batch=thirdPartyId,tier\nc1,gold\n")
    assert attributes(http, "c1") == {"tier": "gold"}


def test_unknown_namespace_and_unknown_visitor(http, visitor):
    bad = http.get("/api/clients/demo/privacy/EMAIL/x")
    assert (
        bad.status_code == 400 and bad.json()["message"] == "Unknown namespace 'EMAIL': use TNTID, THIRDPARTYID or ECID"
    )
    assert http.delete("/api/clients/demo/privacy/THIRDPARTYID/nobody").status_code == 404


def test_delete_one_attribute(http, visitor):
    response = http.delete("/api/profiles/thirdPartyId/c1/attributes/color", params={"client": "demo"})
    assert response.status_code == 200
    assert attributes(http, "c1") == {"city": "Oslo"}
    again = http.delete("/api/profiles/thirdPartyId/c1/attributes/color", params={"client": "demo"})
    assert again.status_code == 404 and again.json()["message"] == "The profile has no attribute 'color'"


def test_ids_with_nul_find_no_profile(http, visitor):
    deleted = http.delete("/api/profiles/thirdPartyId/c%001/attributes/color", params={"client": "demo"})
    assert deleted.status_code == 404
    assert http.delete("/api/clients/demo/privacy/THIRDPARTYID/c%001").status_code == 404
    assert attributes(http, "c1") == {"city": "Oslo", "color": "red"}


def test_a_visitor_with_failed_rows_and_no_profile_can_be_deleted(http):
    # Regression: 404, and the failed rows, which hold the visitor's id, stayed.
    record = apply(http, "batch=thirdPartyId,city\nc9,bad%zz\nc%39,Oslo,extra\n")
    response = http.delete("/api/clients/demo/privacy/THIRDPARTYID/c9")
    assert response.status_code == 200
    assert response.json() == {
        "deleted": {"client": "demo", "ids": ["c9"]},
        "profileFound": False,
        "failedRowsRemoved": 2,
    }
    assert http.get(f"/api/batches/{record['batchId']}/failures").json()["failedRows"] == []
