"""Profile export (GET /api/clients/{client}/profiles/export): a client's live profiles as v2
batch files that post back as they are, or as /api records a line; filters; bad parameters."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from profilestore import export
from support import FakeClock, accepted_id, apply, deliver, serve_process, submit, wait_complete

EXPORT = "/api/clients/demo/profiles/export"
AWKWARD = (
    "batch=thirdPartyId,city,note,%23tag,name%2Cfull\n"
    "crm-1,S%C3%A3o%20Paulo,100%25+sure,a%2Cb,\n"
    "crm-2,%E6%9D%B1%E4%BA%AC,line1%0Aline2%0D%0Aend,,Ann%2BBo\n"
    "crm-3,Z%C3%BCrich\n"
)


def exported(http, **params) -> bytes:
    answer = http.get(EXPORT, params=params)
    assert answer.status_code == 200, answer.text
    return answer.content


def rows_by_id(body: bytes) -> tuple[str, dict[str, str]]:
    """The header, and the rows by their id (the first cell)."""
    header, *rows = body.decode().splitlines()
    return header, {row.split(",", 1)[0]: row for row in rows}


def test_a_batch_export_writes_each_awkward_value_percent_encoded(http):
    apply(http, AWKWARD)
    answer = http.get(EXPORT, params={"format": "batch"})
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert 'filename="demo-profiles-thirdPartyId.txt"' in answer.headers["content-disposition"]
    header, rows = rows_by_id(answer.content)
    assert header == "batch=thirdPartyId,%23tag,city,name%2Cfull,note"  # names sorted
    assert rows == {
        "crm-1": "crm-1,a%2Cb,S%C3%A3o%20Paulo,,100%25%20sure",
        "crm-2": "crm-2,,%E6%9D%B1%E4%BA%AC,Ann%2BBo,line1%0Aline2%0D%0Aend",
        "crm-3": "crm-3,,Z%C3%BCrich",  # empty trailing cells left out
    }


def test_an_ndjson_export_holds_the_api_record_of_each_profile(http):
    apply(http, AWKWARD)
    answer = http.get(EXPORT, params={"format": "ndjson"})
    assert answer.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in answer.text.splitlines()]
    by_id = {r["thirdPartyId"]: r for r in records}
    assert sorted(by_id) == ["crm-1", "crm-2", "crm-3"]
    assert [r["tntId"] for r in records] == sorted(r["tntId"] for r in records)
    assert by_id["crm-2"]["attributes"]["note"]["value"] == "line1\nline2\r\nend"
    assert by_id["crm-1"] == http.get("/api/profiles/thirdPartyId/crm-1", params={"client": "demo"}).json()


def test_the_two_keys_together_export_every_profile_once(http):
    apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\ncrm-2,Rome\n")
    apply(http, "batch=pcId,city\np-1,Lima\np-2,Kyiv\n")
    by_third_party = rows_by_id(exported(http, key="thirdPartyId"))[1]
    by_tnt_id = rows_by_id(exported(http, key="pcId"))
    assert by_third_party == {"crm-1": "crm-1,Oslo", "crm-2": "crm-2,Rome"}
    assert by_tnt_id == ("batch=pcId,city", {"p-1": "p-1,Lima", "p-2": "p-2,Kyiv"})


def test_a_profile_with_a_third_party_id_is_exported_by_it_only(http):
    apply(http, "batch=pcId,city\np-1,Lima\n")
    body = {
        "id": {"tntId": "p-1", "thirdPartyId": "crm-9"},
        "execute": {"pageLoad": {"profileParameters": {"tier": "gold"}}},
    }
    assert deliver(http, body).status_code == 200
    assert exported(http, key="pcId") == b"batch=pcId\n"
    assert rows_by_id(exported(http))[1] == {"crm-9": "crm-9,Lima,gold"}


def test_exports_of_a_client_without_profiles_are_a_bare_header_and_nothing(http):
    assert exported(http) == b"batch=thirdPartyId\n"
    assert exported(http, format="ndjson") == b""


def test_modified_since_leaves_out_profiles_changed_before(make_service):
    clock = FakeClock("2026-11-23T10:00:00+00:00")
    http = make_service(clock=clock)
    apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")
    clock.advance(days=1)
    apply(http, "batch=thirdPartyId,city\ncrm-2,Rome\n")
    assert rows_by_id(exported(http, modifiedSince="2026-11-24T10:00:00Z"))[1] == {"crm-2": "crm-2,Rome"}
    assert len(rows_by_id(exported(http, modifiedSince="2026-11-24T09:59:59+00:00"))[1]) == 1
    assert len(rows_by_id(exported(http, modifiedSince="2026-11-23T10:00:00"))[1]) == 2  # UTC without offset


def test_attributes_keeps_only_the_names_asked_for_and_the_profiles_that_have_them(http):
    apply(http, "batch=thirdPartyId,city,tier,age\ncrm-1,Oslo,gold,40\ncrm-2,,,31\ncrm-3,Rome\n")
    header, rows = rows_by_id(exported(http, attributes="tier,city"))
    assert header == "batch=thirdPartyId,city,tier"
    assert rows == {"crm-1": "crm-1,Oslo,gold", "crm-3": "crm-3,Rome"}
    records = [json.loads(line) for line in exported(http, format="ndjson", attributes="age").splitlines()]
    assert sorted((r["thirdPartyId"], list(r["attributes"])) for r in records) == [
        ("crm-1", ["age"]),
        ("crm-2", ["age"]),
    ]


def test_expired_profiles_are_left_out(make_service):
    clock = FakeClock()
    http = make_service(clock=clock)
    apply(http, "batch=thirdPartyId,city\ncrm-old,Oslo\n")
    clock.advance(days=10)
    apply(http, "batch=thirdPartyId,city\ncrm-new,Rome\n")
    clock.advance(days=5)  # crm-old 15 days inactive: expired, not yet purged
    assert rows_by_id(exported(http))[1] == {"crm-new": "crm-new,Rome"}
    assert [json.loads(line)["thirdPartyId"] for line in exported(http, format="ndjson").splitlines()] == ["crm-new"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"format": "csv"}, "Unknown format 'csv': use one of batch, ndjson"),
        ({"key": "mcvid"}, "Unknown key 'mcvid': use one of thirdPartyId, pcId"),
        ({"modifiedSince": "yesterday"}, "modifiedSince 'yesterday' is not an ISO-8601 time"),
        ({"attributes": ",,"}, "The attributes parameter names no attribute"),
        ({"attributes": ""}, "The attributes parameter names no attribute"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(http, params, message):
    apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")
    answer = http.get(EXPORT, params=params)
    assert answer.status_code == 400
    assert message in answer.json()["message"]


def round_trip(make_service, http) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Both batch files of the service, and what they give exported again from a fresh store."""
    files = {key: exported(http, key=key) for key in export.KEYS}
    fresh = make_service()
    for body in files.values():
        wait_complete(fresh, accepted_id(submit(fresh, body)))
    return {key: exported(fresh, key=key) for key in export.KEYS}, files


def test_what_is_exported_posts_back_into_a_fresh_store_and_exports_the_same(make_service):
    http = make_service()
    apply(http, AWKWARD)
    apply(http, "batch=pcId,city,%23tag\np-1,Lima,%E0%A4%A8%E0%A4%AE%E0%A4%B8%E0%A5%8D%E0%A4%A4%E0%A5%87\np-2,Kyiv\n")
    again, files = round_trip(make_service, http)
    assert again["pcId"] == files["pcId"]  # byte for byte: the same tntIds, so the same order
    # The fresh store makes new tntIds for the thirdPartyId profiles, so their rows come in
    # another order; the header and the rows are the same.
    assert rows_by_id(again["thirdPartyId"]) == rows_by_id(files["thirdPartyId"])
    assert sorted(again["thirdPartyId"].splitlines()) == sorted(files["thirdPartyId"].splitlines())


def test_the_export_is_the_same_when_it_takes_many_pages(http, monkeypatch):
    apply(http, "batch=thirdPartyId,a,b\n" + "".join(f"crm-{i},{i}{',x' * (i % 2)}\n" for i in range(25)))
    apply(http, "batch=pcId,c\n" + "".join(f"p-{i},{i}\n" for i in range(7)))
    whole = {(fmt, key): exported(http, format=fmt, key=key) for fmt in export.FORMATS for key in export.KEYS}
    monkeypatch.setattr(export, "PAGE_SIZE", 3)
    paged = {(fmt, key): exported(http, format=fmt, key=key) for fmt in export.FORMATS for key in export.KEYS}
    assert paged == whole
    assert len(rows_by_id(whole["batch", "thirdPartyId"])[1]) == 25


@pytest.mark.slow
def test_the_export_command_writes_the_stream_to_stdout(store_url, tmp_path):
    with serve_process(store_url, tmp_path, {"PROFILESTORE_ADMIN_KEY": "adm"}) as server:
        http = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer adm"})
        wait_complete(http, accepted_id(submit(http, "batch=thirdPartyId,city,tier\ncrm-1,Oslo,gold\ncrm-2,Rome\n")))

        def export_command(*args: str) -> subprocess.CompletedProcess:
            env = {**os.environ, "PROFILESTORE_URL": server.url, "PROFILESTORE_ADMIN_KEY": "adm"}
            command = [sys.executable, "-m", "profilestore", "export", "--client", "demo", *args]
            return subprocess.run(command, env=env, capture_output=True)

        batch = export_command("--attributes", "city")
        assert batch.returncode == 0, batch.stderr
        assert sorted(batch.stdout.decode().splitlines()) == ["batch=thirdPartyId,city", "crm-1,Oslo", "crm-2,Rome"]
        records = export_command("--format", "ndjson", "--modified-since", "2000-01-01T00:00:00Z").stdout
        assert sorted(json.loads(line)["thirdPartyId"] for line in records.splitlines()) == ["crm-1", "crm-2"]
        refused = export_command("--modified-since", "soon")
        assert refused.returncode == 1 and b"400: modifiedSince 'soon' is not an ISO-8601 time" in refused.stderr
