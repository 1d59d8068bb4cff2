"""The profile part of Target's Delivery API: ids, profileParameters, limits and the answer."""

import re

import pytest

from support import apply, attributes, deliver

TNT_ID = re.compile(r"[0-9a-f]{32}\.\d{2}_0")


def profile_record(http, kind, visitor_id, client="demo"):
    return http.get(f"/api/profiles/{kind}/{visitor_id}", params={"client": client}).json()


def test_parameters_from_every_section_reach_the_profile(http):
    body = {
        "id": {"thirdPartyId": "crm-1"},
        "execute": {
            "pageLoad": {"profileParameters": {"a": "1"}},
            "mboxes": [{"index": 0, "name": "hero", "profileParameters": {"b": "2"}}],
        },
        "prefetch": {
            "views": [{"name": "home", "profileParameters": {"c": "3"}}],
            "mboxes": [{"index": 0, "name": "footer", "profileParameters": {"d": "4"}}],
        },
    }
    assert deliver(http, body).status_code == 200
    assert attributes(http, "crm-1") == {"a": "1", "b": "2", "c": "3", "d": "4"}


def test_a_new_visitor_gets_a_tnt_id_and_a_valid_answer(http):
    response = deliver(http, {"requestId": "r-1", "execute": {"mboxes": [{"index": 0, "name": "hero"}]}})
    body = response.json()
    assert TNT_ID.fullmatch(body["id"]["tntId"])
    assert body["status"] == 200 and body["requestId"] == "r-1" and body["client"] == "demo"
    assert body["edgeHost"] == "profiles.test"
    assert body["execute"] == {"mboxes": [{"index": 0, "name": "hero"}]}
    assert attributes(http, body["id"]["tntId"], by="tntId") == {}


def test_the_answer_echoes_every_mbox_and_view_with_no_offers(http):
    body = {
        "execute": {"pageLoad": {}, "mboxes": [{"index": 1, "name": "a"}, {"index": 2, "name": "b"}]},
        "prefetch": {"views": [{"name": "home"}], "mboxes": [{"index": 0, "name": "c"}]},
    }
    answer = deliver(http, body).json()
    assert answer["execute"] == {"pageLoad": {}, "mboxes": [{"index": 1, "name": "a"}, {"index": 2, "name": "b"}]}
    assert answer["prefetch"] == {"views": [{"name": "home"}], "mboxes": [{"index": 0, "name": "c"}]}


def test_a_known_tnt_id_is_kept_and_updated(http):
    tnt_id = deliver(http, {}).json()["id"]["tntId"]
    answer = deliver(http, {"id": {"tntId": tnt_id}, "execute": {"pageLoad": {"profileParameters": {"x": "1"}}}})
    assert answer.json()["id"]["tntId"] == tnt_id
    assert attributes(http, tnt_id, by="tntId") == {"x": "1"}


def test_edge_host_follows_the_public_url(make_service):
    http = make_service(public_url="https://edge.example.com:8443")
    assert deliver(http, {}).json()["edgeHost"] == "edge.example.com:8443"


def test_numbers_and_booleans_are_stored_as_strings(http):
    deliver(http, {"id": {"thirdPartyId": "c1"}, "execute": {"pageLoad": {"profileParameters": {"n": 3, "ok": True}}}})
    assert attributes(http, "c1") == {"n": "3", "ok": "true"}


def test_client_from_the_organization_id(make_service):
    http = make_service(client_orgs="acme=ACME@AdobeOrg, demo=DEMO@AdobeOrg")
    answer = deliver(http, {"id": {"thirdPartyId": "c1"}}, client=None, imsOrgId="ACME@AdobeOrg").json()
    assert answer["client"] == "acme"
    assert attributes(http, "c1", client="acme") == {}


def test_client_from_the_host_name_when_it_is_known(http):
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n", client="shop")
    response = http.post("/rest/v1/delivery", params={"sessionId": "s1"}, json={"id": {"thirdPartyId": "c2"}},
                         headers={"Host": "shop.tt.example.com"})  # fmt: skip
    assert response.json()["client"] == "shop"


def test_client_from_the_default(make_service):
    http = make_service(default_client="main")
    assert deliver(http, {}, client=None).json()["client"] == "main"


def test_no_way_to_tell_the_client_is_400(http):
    response = deliver(http, {}, client=None, imsOrgId="X@AdobeOrg")
    assert response.status_code == 400
    assert "Cannot tell which client" in response.json()["message"]


def rejected(response, message_part):
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400 and message_part in body["message"]


def page_load(params, **ids):
    return {"id": ids, "execute": {"pageLoad": {"profileParameters": params}}}


def test_more_than_50_profile_parameters(http):
    params = {f"p{i}": "v" for i in range(51)}
    rejected(deliver(http, page_load(params, thirdPartyId="c1")), "51 in this request, the limit is 50")
    assert attributes(http, "c1") is None


def test_name_over_128_characters(http):
    rejected(deliver(http, page_load({"n" * 129: "v"}, thirdPartyId="c1")), "the attribute name is 129 characters")


def test_value_over_the_limit(make_service):
    http = make_service(max_delivery_value=10)
    rejected(
        deliver(http, page_load({"a": "x" * 11})),
        "execute.pageLoad.profileParameters.a: the value is 11 characters, the limit is 10",
    )


def test_null_and_object_values(http):
    rejected(deliver(http, page_load({"a": None})), "the value cannot be null")
    rejected(deliver(http, page_load({"a": {"b": 1}})), "the value must be a string")


def test_nul_in_a_value_or_an_id(http):
    rejected(deliver(http, page_load({"city": "Os\u0000lo"})), "pageLoad.profileParameters.city: the NUL character")
    rejected(deliver(http, page_load({"city": "Oslo"}, thirdPartyId="c\u00001")), "id.thirdPartyId: the NUL character")
    assert profile_record(http, "thirdPartyId", "c1")["status"] == 404


def test_more_than_50_mboxes(http):
    body = {"execute": {"mboxes": [{"index": i, "name": "m"} for i in range(51)]}}
    rejected(deliver(http, body), "execute.mboxes: size must be between 0 and 50")


def test_bad_session_id(http):
    rejected(deliver(http, {}, session="a b"), "sessionId must be 1 to 128 printable characters")
    rejected(deliver(http, {}, session=""), "sessionId")
    rejected(deliver(http, {}, session="a/b"), "sessionId")


def test_body_that_is_not_json(http):
    response = http.post("/rest/v1/delivery", params={"client": "demo", "sessionId": "s"}, content=b"{nope")
    rejected(response, "The body is not valid JSON")


def test_bad_third_party_id(http):
    rejected(deliver(http, {"id": {"thirdPartyId": "a/b"}}), "id.thirdPartyId: thirdPartyId may not contain '+' or '/'")


def test_id_of_the_wrong_type(http):
    rejected(deliver(http, {"id": {"tntId": 5}}), "id.tntId must be a string")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_and_nothing_is_written(http, value):
    # Regression: Python's json took them, the write was committed, and the answer was a 500.
    body = b'{"id": {"thirdPartyId": "c1"}, "execute": {"pageLoad": {"profileParameters": {"a": %s}}}}' % value.encode()
    rejected(
        http.post("/rest/v1/delivery", params={"client": "demo", "sessionId": "s"}, content=body), "not valid JSON"
    )
    assert profile_record(http, "thirdPartyId", "c1")["status"] == 404


def test_deeply_nested_json_is_refused(http):
    body = b'{"context": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    rejected(
        http.post("/rest/v1/delivery", params={"client": "demo", "sessionId": "s"}, content=body), "not valid JSON"
    )


def test_a_body_of_256_kb_or_more_is_refused_by_default(http):
    body = b'{"context": {"pad": "' + b"x" * (256 * 1024) + b'"}}'
    response = http.post("/rest/v1/delivery", params={"client": "demo", "sessionId": "s"}, content=body)
    assert response.status_code == 413
    assert response.json()["message"] == "The request is 262,144 bytes or more; the limit is 262,144"


@pytest.mark.parametrize("field, value, problem", [
    ("tntId", "t" * 129, "id.tntId: tntId is 129 characters, the limit is 128"),
    ("marketingCloudVisitorId", "1" * 39, "id.marketingCloudVisitorId: marketingCloudVisitorId is 39 characters, the limit is 38"),
])  # fmt: skip
def test_ids_longer_than_their_kind_allows_are_refused(http, field, value, problem):
    rejected(deliver(http, page_load({"city": "Oslo"}, **{field: value})), problem)
