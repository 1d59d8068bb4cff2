"""Profiles expire after a time without activity; expired ones are not served and get purged."""

from support import FakeClock, apply, attributes, deliver, eventually, table_rows


def profile_rows(http) -> int:
    """Rows of profiles and of merged-away tntIds in the service's store."""
    return sum(table_rows(http.app.state.settings.store_url, table) for table in ("profiles", "merged_ids"))


def test_a_profile_expires_after_14_days_without_activity(make_service):
    clock = FakeClock()
    http = make_service(clock=clock)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    clock.advance(days=13.9)
    assert attributes(http, "c1") == {"city": "Oslo"}
    clock.advance(days=0.2)
    response = http.get("/rest/v1/profiles/thirdPartyId/c1", params={"client": "demo"})
    assert response.status_code == 404
    assert response.json()["message"] == "No profile found for client demo with third party id=c1"


def test_any_write_is_activity(make_service):
    clock = FakeClock()
    http = make_service(clock=clock)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    clock.advance(days=10)
    deliver(http, {"id": {"thirdPartyId": "c1"}})  # a visit, with no parameters
    clock.advance(days=10)
    assert attributes(http, "c1") == {"city": "Oslo"}


def test_writes_treat_an_expired_profile_as_gone(make_service):
    clock = FakeClock()
    http = make_service(clock=clock)
    apply(http, "batch=thirdPartyId,city,tier\nc1,Oslo,gold\n")
    clock.advance(days=15)
    assert http.get("/m2/demo/profile/update?mbox3rdPartyId=c1&profile.city=Rome").status_code == 404
    assert apply(http, "batch=thirdPartyId,city\nc1,Rome\n", version=1)["profilesNotFound"] == 1
    apply(http, "batch=thirdPartyId,city\nc1,Rome\n", version=2)
    assert attributes(http, "c1") == {"city": "Rome"}, "a new profile, without the expired one's attributes"


def test_a_pcid_row_starts_an_expired_profile_afresh_under_the_same_tntid(make_service):
    # The expired row is deleted and the new one inserted with the same key, in one transaction.
    clock = FakeClock()
    http = make_service(clock=clock)
    apply(http, "batch=pcId,city,tier\np1.01_0,Oslo,gold\n")
    clock.advance(days=15)
    assert apply(http, "batch=pcId,city\np1.01_0,Rome\n")["successfulUpdates"] == 1
    assert attributes(http, "p1.01_0", by="tntId") == {"city": "Rome"}


def test_the_worker_purges_expired_profiles_and_their_links(make_service):
    clock = FakeClock()
    http = make_service(clock=clock)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\nc2,Rome\n")
    anonymous = deliver(http, {"execute": {"pageLoad": {"profileParameters": {"a": "1"}}}}).json()["id"]["tntId"]
    deliver(http, {"id": {"tntId": anonymous, "thirdPartyId": "c1"}})
    assert profile_rows(http) == 3  # two profiles and one merged-away tntId
    clock.advance(days=15)
    eventually(lambda: profile_rows(http) == 0, "purged the expired profiles")  # the idle worker purges by itself


def test_lifetime_zero_means_never(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, profile_lifetime_days=0)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    clock.advance(days=3650)
    assert attributes(http, "c1") == {"city": "Oslo"}


def test_lifetime_is_configurable(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, profile_lifetime_days=90)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    clock.advance(days=89)
    assert attributes(http, "c1") == {"city": "Oslo"}
    clock.advance(days=2)
    assert attributes(http, "c1") is None
