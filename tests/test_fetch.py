"""Target's Profile Fetch API: JSON shape, timestamps, and its 404 answers."""

import re

from support import apply

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


def test_fetch_by_third_party_id_in_targets_shape(http):
    apply(http, "batch=thirdPartyId,city,tier\ncrm-7,Oslo,gold\n")
    body = http.get("/rest/v1/profiles/thirdPartyId/crm-7", params={"client": "demo"}).json()
    assert set(body) == {"client", "visitorId", "modifiedAt", "profileAttributes"}
    assert (body["client"], body["visitorId"]) == ("demo", "crm-7")
    assert ISO_MS.fullmatch(body["modifiedAt"])
    assert body["profileAttributes"]["city"]["value"] == "Oslo"
    assert all(ISO_MS.fullmatch(a["modifiedAt"]) for a in body["profileAttributes"].values())


def test_an_id_with_nul_is_not_found(http):
    response = http.get("/rest/v1/profiles/thirdPartyId/c%001", params={"client": "demo"})
    assert response.status_code == 404
    assert response.json()["message"] == "No profile found for client demo with third party id=c\x001"


def test_an_invalid_client_code_is_400(http):
    response = http.get("/rest/v1/profiles/thirdPartyId/c1", params={"client": "de\x00mo"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid client code 'de\\x00mo'")


def test_fetch_by_tnt_id(http):
    apply(http, "batch=pcId,city\n0123abcd.28_0,Oslo\n")
    body = http.get("/rest/v1/profiles/0123abcd.28_0", params={"client": "demo"}).json()
    assert body["visitorId"] == "0123abcd.28_0"
    assert body["profileAttributes"]["city"]["value"] == "Oslo"


def test_attribute_modified_at_moves_only_for_attributes_written(http):
    apply(http, "batch=pcId,a,b\np1,1,1\n")
    before = http.get("/rest/v1/profiles/p1", params={"client": "demo"}).json()["profileAttributes"]
    apply(http, "batch=pcId,a,b\np1,2\n")
    after = http.get("/rest/v1/profiles/p1", params={"client": "demo"}).json()["profileAttributes"]
    assert after["b"] == before["b"]
    assert after["a"]["value"] == "2" and after["a"]["modifiedAt"] >= before["a"]["modifiedAt"]


def test_unknown_tnt_id_answers_targets_404(http):
    response = http.get("/rest/v1/profiles/nope", params={"client": "demo"})
    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": "No profile found for client demo with mboxPC=nope"}


def test_unknown_third_party_id_answers_targets_404(http):
    response = http.get("/rest/v1/profiles/thirdPartyId/nope", params={"client": "demo"})
    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": "No profile found for client demo with third party id=nope"}


def test_client_parameter_is_required(http):
    response = http.get("/rest/v1/profiles/thirdPartyId/x")
    assert response.status_code == 400
    assert response.json()["message"] == "The client query parameter is required"


def test_an_id_longer_than_any_of_its_kind_is_400(http):
    response = http.get(f"/rest/v1/profiles/{'t' * 129}", params={"client": "demo"})
    assert response.status_code == 400
    assert response.json() == {"status": 400, "message": "The tntId is 129 characters, the limit is 128"}
    too_long = http.get(f"/rest/v1/profiles/marketingCloudVisitorId/{'1' * 39}", params={"client": "demo"})
    assert too_long.status_code == 400
