"""Identity linking: a tntId sent with a thirdPartyId or marketingCloudVisitorId is one visitor,
and two profiles of one visitor merge with the thirdPartyId profile's values winning."""

from support import apply, attributes, deliver


def visit(http, params=None, **ids):
    body = {"id": ids, "execute": {"pageLoad": {"profileParameters": params or {}}}}
    response = deliver(http, body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def record(http, kind, visitor_id):
    response = http.get(f"/api/profiles/{kind}/{visitor_id}", params={"client": "demo"})
    return response.json() if response.status_code == 200 else None


def test_anonymous_visitor_logs_in_and_every_id_finds_the_profile(http):
    tnt_id = visit(http, {"color": "red"})["tntId"]
    linked = visit(http, {"size": "M"}, tntId=tnt_id, thirdPartyId="crm-1", marketingCloudVisitorId="ecid-1")
    assert linked["tntId"] == tnt_id
    for path in (f"/rest/v1/profiles/{tnt_id}", "/rest/v1/profiles/thirdPartyId/crm-1",
                 "/rest/v1/profiles/marketingCloudVisitorId/ecid-1"):  # fmt: skip
        body = http.get(path, params={"client": "demo"}).json()
        assert {k: v["value"] for k, v in body["profileAttributes"].items()} == {"color": "red", "size": "M"}


def test_merge_keeps_every_attribute_and_the_third_party_profile_wins_conflicts(http):
    apply(http, "batch=thirdPartyId,tier,city\ncrm-1,gold,Oslo\n")
    known_tnt_id = record(http, "thirdPartyId", "crm-1")["tntId"]
    anonymous = visit(http, {"city": "Rome", "color": "red"})["tntId"]
    linked = visit(http, tntId=anonymous, thirdPartyId="crm-1")
    assert linked["tntId"] == known_tnt_id
    merged = {"tier": "gold", "city": "Oslo", "color": "red"}
    assert attributes(http, "crm-1") == merged
    assert attributes(http, anonymous, by="tntId") == merged
    assert attributes(http, known_tnt_id, by="tntId") == merged


def test_a_third_party_id_in_a_bulk_batch_before_and_after_linking(http):
    apply(http, "batch=thirdPartyId,points\ncrm-1,10\n")
    anonymous = visit(http, {"color": "red"})["tntId"]
    visit(http, tntId=anonymous, thirdPartyId="crm-1")
    record_after = apply(http, "batch=thirdPartyId,points\ncrm-1,20\n")
    assert record_after["successfulUpdates"] == 1
    assert attributes(http, anonymous, by="tntId") == {"points": "20", "color": "red"}


def test_a_merged_away_tnt_id_still_takes_bulk_rows(http):
    apply(http, "batch=thirdPartyId,points\ncrm-1,10\n")
    anonymous = visit(http, {"color": "red"})["tntId"]
    visit(http, tntId=anonymous, thirdPartyId="crm-1")
    record_v1 = apply(http, f"batch=pcId,color\n{anonymous},blue\n", version=1)
    assert (record_v1["successfulUpdates"], record_v1["profilesNotFound"]) == (1, 0)
    assert attributes(http, "crm-1") == {"points": "10", "color": "blue"}


def test_a_merged_away_tnt_id_merged_again_follows_the_chain(http):
    first = visit(http, {"a": "1"})["tntId"]
    visit(http, tntId=first, marketingCloudVisitorId="ecid-1")
    visit(http, {"b": "2"}, tntId=first, thirdPartyId="crm-1")
    second = visit(http, {"c": "3"})["tntId"]
    visit(http, tntId=second, thirdPartyId="crm-1")
    assert attributes(http, first, by="tntId") == {"a": "1", "b": "2", "c": "3"}
    assert record(http, "marketingCloudVisitorId", "ecid-1")["thirdPartyId"] == "crm-1"


def test_a_device_of_another_customer_is_not_merged(http):
    shared = visit(http, {"color": "red"}, thirdPartyId="crm-1")["tntId"]
    other = visit(http, {"size": "S"}, tntId=shared, thirdPartyId="crm-2")
    assert other["tntId"] != shared
    assert attributes(http, "crm-1") == {"color": "red"}
    assert attributes(http, "crm-2") == {"size": "S"}
    assert record(http, "tntId", shared)["thirdPartyId"] == "crm-1"


def test_ecid_links_like_a_third_party_id(http):
    anonymous = visit(http, {"color": "red"})["tntId"]
    visit(http, tntId=anonymous, marketingCloudVisitorId="ecid-9")
    assert record(http, "marketingCloudVisitorId", "ecid-9")["tntId"] == anonymous


def test_unknown_ecid_fetch_is_404(http):
    response = http.get("/rest/v1/profiles/marketingCloudVisitorId/nope", params={"client": "demo"})
    assert response.status_code == 404
    assert response.json()["message"] == "No profile found for client demo with marketingCloudVisitorId=nope"


def test_single_update_by_a_merged_away_tnt_id(http):
    apply(http, "batch=thirdPartyId,points\ncrm-1,10\n")
    anonymous = visit(http)["tntId"]
    visit(http, tntId=anonymous, thirdPartyId="crm-1")
    http.get(f"/m2/demo/profile/update?mboxPC={anonymous}&profile.points=11")
    assert attributes(http, "crm-1") == {"points": "11"}
