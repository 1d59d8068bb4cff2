"""Profile size cap, daily rows, call rate and ingestion windows, on a fake clock."""

import threading

import pytest

from profilestore.errors import RateLimited
from profilestore.limits import CallLimiter, parse_windows
from support import FakeClock, accepted_id, apply, attributes, deliver, submit, wait_complete, xml_fields

URL = "/m2/demo/profile/update"


def failures(http, batch_id):
    return http.get(f"/api/batches/{batch_id}/failures").json()["failedRows"]


# -- profile size ---------------------------------------------------------------------------


def test_a_batch_row_that_would_pass_64_kb_fails_alone_and_changes_nothing(http):
    apply(http, "batch=thirdPartyId,a\nc1,small\n")
    big = "x" * 70_000
    record = apply(http, f"batch=thirdPartyId,a,b\nc1,changed,{big}\nc2,{big}\nc3,ok\n")
    assert (record["successfulUpdates"], record["failedUpdates"]) == (1, 2)
    reasons = {r["line"]: r["reason"] for r in failures(http, record["batchId"])}
    assert reasons[2] == "the profile would hold 70,009 bytes of attributes, over the limit of 65,536"
    assert attributes(http, "c1") == {"a": "small"}
    assert attributes(http, "c2") is None, "a v2 row refused for size creates no profile"
    assert attributes(http, "c3") == {"a": "ok"}


def test_the_cap_counts_the_whole_profile(make_service):
    http = make_service(max_profile_bytes=20)
    apply(http, "batch=thirdPartyId,aa\nc1,12345678\n")  # 2 + 8 = 10 bytes
    record = apply(http, "batch=thirdPartyId,bb\nc1,123456789\n")  # would be 21
    assert record["failedUpdates"] == 1
    assert apply(http, "batch=thirdPartyId,aa\nc1,1234567890123456\n")["failedUpdates"] == 0  # replaces: 18


def test_a_single_update_past_the_cap_is_refused(make_service):
    http = make_service(max_profile_bytes=20)
    apply(http, "batch=thirdPartyId,a\nc1,1\n")
    response = http.get(f"{URL}?mbox3rdPartyId=c1&profile.b={'x' * 30}")
    assert response.status_code == 400 and "over the limit of 20" in xml_fields(response)["message"]
    assert attributes(http, "c1") == {"a": "1"}


def test_a_delivery_update_or_merge_past_the_cap_is_refused(make_service):
    http = make_service(max_profile_bytes=20)
    response = deliver(
        http, {"id": {"thirdPartyId": "c1"}, "execute": {"pageLoad": {"profileParameters": {"a": "x" * 30}}}}
    )
    assert response.status_code == 400 and "over the limit of 20" in response.json()["message"]
    apply(http, "batch=thirdPartyId,a\nc1,1234567890\n")
    anonymous = deliver(http, {"execute": {"pageLoad": {"profileParameters": {"b": "1234567890"}}}}).json()["id"][
        "tntId"
    ]
    merge = deliver(http, {"id": {"tntId": anonymous, "thirdPartyId": "c1"}})
    assert merge.status_code == 400
    assert attributes(http, "c1") == {"a": "1234567890"}
    assert attributes(http, anonymous, by="tntId") == {"b": "1234567890"}


# -- rows per day ---------------------------------------------------------------------------


def test_a_batch_past_the_daily_rows_is_refused_whole_with_retry_after(make_service):
    clock = FakeClock("2026-11-23T22:00:00+00:00")
    http = make_service(clock=clock, daily_rows=10)
    accepted_id(submit(http, "batch=pcId,a\n" + "p,1\n" * 6))
    refused = submit(http, "batch=pcId,a\n" + "p,1\n" * 5)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7200"
    assert xml_fields(refused)["message"] == (
        "Client demo has 6 rows accepted today (UTC); this batch of 5 rows would pass the daily limit of 10. "
        "Try again after 2026-11-24T00:00:00.000+00:00"
    )
    accepted_id(submit(http, "batch=pcId,a\n" + "p,1\n" * 4))
    assert accepted_id(submit(http, "batch=pcId,a\n" + "p,1\n", client="acme"))
    clock.advance(seconds=7200)
    accepted_id(submit(http, "batch=pcId,a\n" + "p,1\n" * 5))


def test_a_client_can_have_its_own_daily_rows(make_service):
    http = make_service(clock=FakeClock())
    http.patch("/api/clients/demo", json={"dailyRows": 2})
    assert submit(http, "batch=pcId,a\np1,1\np2,1\np3,1\n").status_code == 429
    assert submit(http, "batch=pcId,a\np1,1\np2,1\np3,1\n", client="acme").status_code == 200


# -- call rate ------------------------------------------------------------------------------


def test_bulk_and_status_calls_past_the_rate_get_429_with_retry_after(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, calls_per_minute=3)
    batch_id = accepted_id(submit(http, "batch=pcId,a\np1,1\n"))
    status = lambda: http.get("/m2/demo/profile/batchStatus", params={"batchId": batch_id})  # noqa: E731
    clock.advance(seconds=20)
    assert [status().status_code, status().status_code] == [200, 200]
    clock.advance(seconds=10)
    refused = status()
    assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
    assert "3 bulk and status calls in the last minute, the limit is 3" in xml_fields(refused)["message"]
    assert submit(http, "batch=pcId,a\np1,1\n").status_code == 429
    assert http.get(f"{URL}?mboxPC=p1&profile.a=2").status_code != 429, "single updates are exempt, as in Target"
    assert submit(http, "batch=pcId,a\np1,1\n", client="acme").status_code == 200
    clock.advance(seconds=30)
    assert status().status_code == 200


# -- ingestion windows ----------------------------------------------------------------------


class PausingSleep:
    """Records the worker's pauses and moves the fake clock; holds the first pause until
    the test has looked at the batch."""

    def __init__(self, clock: FakeClock):
        self.clock, self.pauses = clock, []
        self.first_pause, self.go_on = threading.Event(), threading.Event()

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.advance(seconds=seconds)
        self.first_pause.set()
        self.go_on.wait(60)


def test_inside_a_window_the_worker_holds_the_rate_and_says_so(make_service):
    clock = FakeClock("2026-11-23T10:00:00+00:00")  # a Monday
    sleep = PausingSleep(clock)
    http = make_service(clock=clock, sleep=sleep, ingest_windows="mon-fri 09:00-17:00 UTC 100")
    batch_id = accepted_id(submit(http, "batch=pcId,a\n" + "".join(f"p{i},1\n" for i in range(450))))
    try:
        assert sleep.first_pause.wait(60)
        record = http.get(f"/api/batches/{batch_id}").json()
        assert record["heldBack"] == "ingestion window mon-fri 09:00-17:00 UTC: at most 100 rows/s"
        assert (record["state"], record["consumedCount"]) == ("running", 100)
    finally:
        sleep.go_on.set()
    record = wait_complete(http, batch_id)
    assert record["successfulUpdates"] == 450 and record["heldBack"] is None
    assert sleep.pauses == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_outside_windows_the_worker_runs_at_full_speed(make_service):
    clock = FakeClock("2026-11-22T10:00:00+00:00")  # a Sunday
    sleep = PausingSleep(clock)
    sleep.go_on.set()
    http = make_service(clock=clock, sleep=sleep, ingest_windows="mon-fri 09:00-17:00 UTC 100")
    record = wait_complete(http, accepted_id(submit(http, "batch=pcId,a\n" + "p,1\n" * 450)))
    assert record["successfulUpdates"] == 450 and record["heldBack"] is None
    assert sleep.pauses == []


def test_windows_follow_their_time_zone():
    (window,) = parse_windows("sat-sun 22:00-23:30 Asia/Tokyo 10")
    saturday_22_tokyo = FakeClock("2026-11-21T13:30:00+00:00")()
    assert window.contains(saturday_22_tokyo)
    assert not window.contains(saturday_22_tokyo + 3600_000)


@pytest.mark.parametrize("text", ["mon-fri 09:00 UTC 100", "mon-xyz 09:00-10:00 UTC 1", "mon 10:00-09:00 UTC 5",
                                  "mon 09:00-10:00 Mars/Base 5", "mon 09:00-10:00 UTC 0"])  # fmt: skip
def test_a_bad_window_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="Bad ingestion window"):
        parse_windows(text)


def test_the_per_client_caches_stay_bounded_whatever_clients_callers_name():
    clock = FakeClock()
    limiter = CallLimiter(clock, max_clients=100)
    for n in range(1_000):
        limiter.check(f"client-{n}", per_minute=5)
    assert len(limiter._calls) == 100
    with pytest.raises(RateLimited):  # the clients it keeps are still limited
        for _ in range(6):
            limiter.check("client-999", per_minute=5)
