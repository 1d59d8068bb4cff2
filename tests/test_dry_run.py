"""Dry runs: what a batch file would do, answered without storing or changing anything."""

import gzip

import pytest

from support import FakeClock, apply, attributes, serve_process, submit, xml_fields
from test_cli import cli

MIXED = (
    "batch=thirdPartyId,city,tier\n"
    "known,Oslo,gold\n"  # an existing profile: updated
    "new-1,Rome\n"  # created
    "new-1,,silver\n"  # the same new profile: created once
    "bad,a,b,c\n"  # too many fields
    "worse,Os%ZZlo\n"  # bad percent-encoding
)


def validate(http, body: str | bytes, client: str = "demo", version: int = 2, **kwargs):
    content = body.encode() if isinstance(body, str) else body
    return http.post(f"/api/clients/{client}/batches/validate", params={"version": version}, content=content, **kwargs)


def batch_count(http) -> int:
    return len(http.get("/api/batches").json()["batches"])


def test_a_dry_run_counts_what_the_rows_would_do_and_lists_the_failures(http):
    apply(http, "batch=thirdPartyId,city\nknown,Bergen\n")
    result = validate(http, MIXED).json()
    assert result["wouldBeAccepted"] is True and result["refusal"] is None
    assert (result["batchSize"], result["successfulUpdates"], result["profilesCreated"]) == (5, 3, 1)
    assert (result["profilesNotFound"], result["failedUpdates"]) == (0, 2)
    assert result["failedRows"] == [
        {"line": 5, "id": "bad", "reason": "4 fields, but the header has 3"},
        {"line": 6, "id": "worse", "reason": "column 'city' ('Os%ZZlo'): invalid percent-encoding"},
    ]


def test_a_dry_run_stores_and_changes_nothing(http):
    apply(http, "batch=thirdPartyId,city\nknown,Bergen\n")
    validate(http, MIXED)
    assert batch_count(http) == 1
    assert attributes(http, "known") == {"city": "Bergen"}
    assert attributes(http, "new-1") is None


def test_a_dry_run_counts_as_the_batch_then_does(http):
    apply(http, "batch=thirdPartyId,city\nknown,Bergen\n")
    result = validate(http, MIXED).json()
    record = apply(http, MIXED)
    assert (result["successfulUpdates"], result["profilesNotFound"], result["failedUpdates"]) == (
        record["successfulUpdates"],
        record["profilesNotFound"],
        record["failedUpdates"],
    )


def test_v1_counts_the_rows_of_unknown_profiles_as_not_found(http):
    result = validate(http, "batch=thirdPartyId,city\nnobody,Oslo\n", version=1).json()
    assert (result["successfulUpdates"], result["profilesNotFound"], result["profilesCreated"]) == (0, 1, 0)


def test_a_row_that_would_pass_the_profile_cap_fails_with_its_reason(make_service):
    http = make_service(max_profile_bytes=10)
    result = validate(http, "batch=thirdPartyId,city\nc1,Oslo\nc2,Rio%20de%20Janeiro\n").json()
    assert result["failedRows"] == [
        {"line": 3, "id": "c2", "reason": "the profile would hold 18 bytes of attributes, over the limit of 10"}
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("pcId,city\np1,Oslo\n", 400, "The batch must start with 'batch=' followed by the header"),
        ("batch=email,city\np1,Oslo\n", 400, "Unknown key column 'email'"),
        ("batch=pcId,city\n", 400, "Batch is empty: the file has a header line but no data rows"),
    ],
)
def test_a_file_batch_update_would_refuse_is_answered_with_that_refusal(http, body, status, message):
    result = validate(http, body).json()
    assert result["wouldBeAccepted"] is False
    assert result["refusal"]["status"] == status and result["refusal"]["message"].startswith(message)
    refused = submit(http, body)
    assert refused.status_code == status and xml_fields(refused)["message"] == result["refusal"]["message"]
    assert batch_count(http) == 0


def test_too_many_rows_and_the_daily_quota_are_refusals_too(make_service):
    http = make_service(max_batch_rows=1)
    assert validate(http, "batch=pcId,a\np1,1\np2,2\n").json()["refusal"]["status"] == 413
    http = make_service(daily_rows=1)
    assert validate(http, "batch=pcId,a\np1,1\np2,2\n").json()["refusal"]["status"] == 429


def test_a_gzip_compressed_file_is_read_as_batch_update_reads_it(http):
    result = validate(http, gzip.compress(b"batch=pcId,a\np1,1\n")).json()
    assert (result["wouldBeAccepted"], result["successfulUpdates"]) == (True, 1)


def test_the_version_must_be_1_or_2(http):
    refused = validate(http, "batch=pcId,a\np1,1\n", version=3)
    assert refused.status_code == 400 and "version" in refused.json()["message"]


def test_a_dry_run_needs_the_admin_api(make_service):
    http = make_service(peer="203.0.113.9")
    assert validate(http, "batch=pcId,a\np1,1\n").status_code == 403


def test_an_expired_profile_is_not_deleted_by_a_dry_run(make_service):
    clock = FakeClock()
    http = make_service(clock=clock, profile_lifetime_days=1)
    apply(http, "batch=thirdPartyId,city\nc1,Oslo\n")
    clock.advance(days=2)
    assert validate(http, "batch=thirdPartyId,city\nc1,Rome\n", version=1).json()["profilesNotFound"] == 1
    record = apply(http, "batch=thirdPartyId,city\nc1,Rome\n", version=1)
    assert record["profilesNotFound"] == 1  # still expired, as before the dry run


@pytest.mark.slow
def test_the_cli_dry_run_shows_the_outcome_and_exits_1_when_rows_would_fail(store_url, tmp_path):
    batch = tmp_path / "batch.txt"
    batch.write_text("batch=thirdPartyId,city\nc1,Oslo\nbad,a,b\n")
    with serve_process(store_url, tmp_path) as server:
        checked = cli("upload", str(batch), "--client", "demo", "--dry-run", url=server.url)
        assert checked.returncode == 1, checked.stderr
        assert "dry run, nothing stored: 2 rows would give 1 applied (1 new profiles)" in checked.stdout
        assert "line 3: 3 fields, but the header has 2" in checked.stdout
        batch.write_text("batch=thirdPartyId,city\nc1,Oslo\n")
        assert cli("upload", str(batch), "--client", "demo", "--dry-run", url=server.url).returncode == 0
