"""Target's Single Profile Update API: GET or POST, existing profiles only, applied before the answer."""

import pytest

from support import accepted_id, apply, attributes, deliver, submit, wait_complete, xml_fields

URL = "/m2/demo/profile/update"


@pytest.fixture
def known(http):
    apply(http, "batch=thirdPartyId,city,tier\nc1,Oslo,gold\n")
    apply(http, "batch=pcId,city\nt1.01_0,Rome\n")
    return http


def refused(response, status, message_part):
    assert response.status_code == status, response.text
    fields = xml_fields(response)
    assert fields["success"] == "false" and message_part in fields["message"]


def test_get_by_third_party_id_sets_the_named_attributes(known):
    response = known.get(f"{URL}?mbox3rdPartyId=c1&profile.city=Bergen&profile.Color=S%C3%A3o+Green")
    assert xml_fields(response) == {"success": "true", "message": "Request successfully submitted"}
    assert attributes(known, "c1") == {"city": "Bergen", "tier": "gold", "Color": "São Green"}


def test_get_by_mbox_pc(known):
    known.get(f"{URL}?mboxPC=t1.01_0&profile.city=Milan")
    assert attributes(known, "t1.01_0", by="tntId") == {"city": "Milan"}


def test_post_with_parameters_in_the_query_string(known):
    known.post(f"{URL}?mbox3rdPartyId=c1&profile.city=Bergen")
    assert attributes(known, "c1")["city"] == "Bergen"


def test_post_with_a_form_body(known):
    response = known.post(URL, content=b"mbox3rdPartyId=c1&profile.city=Troms%C3%B8&profile.note=a+b%26c",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert xml_fields(response)["success"] == "true"
    assert attributes(known, "c1") == {"city": "Tromsø", "tier": "gold", "note": "a b&c"}


def test_empty_value_leaves_the_attribute_unchanged(known):
    known.get(f"{URL}?mbox3rdPartyId=c1&profile.city=&profile.tier=silver")
    assert attributes(known, "c1") == {"city": "Oslo", "tier": "silver"}


def test_unknown_profile_is_not_created(known):
    refused(known.get(f"{URL}?mbox3rdPartyId=nobody&profile.city=Oslo"), 404, "updates change existing profiles only")
    assert attributes(known, "nobody") is None
    refused(known.get(f"{URL}?mboxPC=nobody.01_0&profile.city=Oslo"), 404, "mboxPC=nobody.01_0")


def test_get_over_8_kb_is_413(known):
    refused(known.get(f"{URL}?mbox3rdPartyId=c1&profile.x={'a' * 8200}"), 413, "over 8,192 bytes, the limit for GET")
    assert "x" not in attributes(known, "c1")


def test_post_over_60_kb_is_413(known):
    body = f"mbox3rdPartyId=c1&profile.x={'a' * 61_440}".encode()
    refused(known.post(URL, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}), 413, "61,440")
    assert "x" not in attributes(known, "c1")


def test_post_under_60_kb_is_fine(known):
    body = f"mbox3rdPartyId=c1&profile.x={'a' * 60_000}".encode()
    assert (
        known.post(URL, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200
    )


def test_request_limits_are_configurable(make_service):
    http = make_service(max_update_get_bytes=100)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    refused(http.get(f"{URL}?mbox3rdPartyId=c1&profile.x={'a' * 100}"), 413, "over 100 bytes")


def test_attribute_name_over_128_characters(known):
    refused(
        known.get(f"{URL}?mbox3rdPartyId=c1&profile.{'n' * 129}=1"),
        400,
        "the attribute name is 129 characters, the limit is 128",
    )


def test_malformed_percent_encoding_names_the_parameter(known):
    refused(
        known.get(f"{URL}?mbox3rdPartyId=c1&profile.city=%zz"),
        400,
        "Parameter 'profile.city': invalid percent-encoding",
    )
    assert attributes(known, "c1")["city"] == "Oslo"


def test_nul_is_refused_by_name(known):
    refused(
        known.get(f"{URL}?mbox3rdPartyId=c1&profile.city=Os%00lo"), 400, "Parameter 'profile.city': the NUL character"
    )
    assert attributes(known, "c1")["city"] == "Oslo"


def test_missing_or_both_ids(known):
    refused(known.get(f"{URL}?profile.city=Rome"), 400, "exactly one of mboxPC or mbox3rdPartyId")
    refused(known.get(f"{URL}?mboxPC=t1.01_0&mbox3rdPartyId=c1&profile.city=Rome"), 400, "exactly one")
    refused(known.get(f"{URL}?mbox3rdPartyId=&profile.city=Rome"), 400, "mbox3rdPartyId is empty")


def test_no_profile_parameters(known):
    refused(known.get(f"{URL}?mbox3rdPartyId=c1&city=Rome"), 400, "No profile.NAME=VALUE parameters")


def test_form_body_of_another_type_is_415(known):
    response = known.post(URL, content=b'{"a":1}', headers={"Content-Type": "application/json"})
    refused(response, 415, "application/x-www-form-urlencoded")


def test_a_single_update_is_not_overwritten_by_a_batch_accepted_before_it(make_service, store_url):
    http = make_service(store=store_url, run_worker=False)
    deliver(http, {"id": {"thirdPartyId": "c1"}, "execute": {"pageLoad": {"profileParameters": {"city": "Oslo"}}}})
    queued = accepted_id(submit(http, "batch=thirdPartyId,city,tier\nc1,Rome,silver\n"))
    http.get(f"{URL}?mbox3rdPartyId=c1&profile.city=Paris")
    worker = make_service(store=store_url)
    wait_complete(worker, queued)
    assert attributes(http, "c1") == {"city": "Paris", "tier": "silver"}


def test_a_batch_accepted_after_a_single_update_overwrites_it(known):
    known.get(f"{URL}?mbox3rdPartyId=c1&profile.city=Paris")
    apply(known, "batch=thirdPartyId,city\nc1,Rome\n")
    assert attributes(known, "c1")["city"] == "Rome"
