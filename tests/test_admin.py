"""The admin API (/api): the admin key, or loopback callers when none is configured."""

import httpx
import pytest

from profilestore.web.deps import is_loopback
from support import apply, serve_process, submit


def test_without_an_admin_key_loopback_callers_are_admins(make_service):
    assert make_service(peer="127.0.0.1").get("/api/clients/demo").status_code == 200
    assert make_service(peer="::1").get("/api/clients/demo").status_code == 200


def test_without_an_admin_key_other_callers_are_refused(make_service):
    response = make_service(peer="10.1.2.3").get("/api/clients/demo")
    assert response.status_code == 403
    assert "only on loopback unless PROFILESTORE_ADMIN_KEY is configured" in response.json()["message"]


def test_with_an_admin_key_it_is_required_from_everyone(make_service):
    http = make_service(admin_key="s3cret-admin", peer="127.0.0.1")
    assert http.get("/api/clients/demo").status_code == 401
    wrong = http.get("/api/clients/demo", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["message"] == "The admin API needs Authorization: Bearer ADMIN_KEY"
    right = http.get("/api/clients/demo", headers={"Authorization": "Bearer s3cret-admin"})
    assert right.status_code == 200


def test_health_is_open(make_service):
    http = make_service(admin_key="k", peer="10.1.2.3")
    assert http.get("/api/health").json()["status"] == "ok"
    assert http.get("/api/health/live").json() == {"status": "ok"}


def test_target_paths_do_not_need_the_admin_key(make_service):
    http = make_service(admin_key="k", peer="10.1.2.3")
    assert submit(http, "batch=pcId,a\np1,1\n").status_code == 200


def test_client_settings_show_the_effective_quotas(make_service):
    http = make_service(daily_rows=1000)
    assert http.get("/api/clients/demo").json() == {
        "client": "demo", "authRequired": False, "dailyRows": 1000, "callsPerMinute": 0, "webhookUrl": None,
    }  # fmt: skip
    changed = http.patch("/api/clients/demo", json={"dailyRows": 5, "callsPerMinute": 10}).json()
    assert (changed["dailyRows"], changed["callsPerMinute"]) == (5, 10)
    assert http.get("/api/clients/acme").json()["dailyRows"] == 1000


def test_invalid_admin_input_is_400_naming_the_field(http):
    response = http.patch("/api/clients/demo", json={"dailyRows": -5})
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid request: dailyRows: Input should be greater than or equal to 0"


def test_batch_list_newest_first_per_client_and_paged(http):
    ids = [apply(http, "batch=pcId,a\np1,1\n", client=c)["batchId"] for c in ("demo", "acme", "demo", "demo")]
    listed = [b["batchId"] for b in http.get("/api/batches", params={"client": "demo"}).json()["batches"]]
    assert listed == [ids[3], ids[2], ids[0]]
    page = http.get("/api/batches", params={"limit": 2, "before": ids[2]}).json()["batches"]
    assert [b["batchId"] for b in page] == [ids[1], ids[0]]


@pytest.mark.slow
def test_no_secret_is_logged(store_url, tmp_path):
    env = {"PROFILESTORE_ADMIN_KEY": "admin-key-that-must-not-leak"}
    with serve_process(store_url, tmp_path, env) as server:
        admin = {"Authorization": "Bearer admin-key-that-must-not-leak"}
        http = httpx.Client(base_url=server.url, headers=admin)
        secret = http.post("/api/clients/demo/tokens", json={}).json()["token"]
        http.patch("/api/clients/demo", json={"authRequired": True})
        assert http.get("/api/clients/demo/tokens").text.find(secret) == -1
        with_token = {"Authorization": f"Bearer {secret}"}
        httpx.post(f"{server.url}/m2/demo/v2/profile/batchUpdate", content="batch=pcId,a\np1,1\n", headers=with_token)
        httpx.get(f"{server.url}/rest/v1/profiles/p1", params={"client": "demo"}, headers=with_token)
        httpx.get(
            f"{server.url}/rest/v1/profiles/p1", params={"client": "demo"}, headers={"Authorization": "Bearer wrong"}
        )
    log = (tmp_path / f"serve-{server.port}.log").read_text()
    assert "profilestore on" in log
    assert secret not in log and "admin-key-that-must-not-leak" not in log


@pytest.mark.slow
def test_a_forwarded_caller_is_not_taken_for_a_loopback_one(store_url, tmp_path):
    # Regression: uvicorn trusted X-Forwarded-For from loopback peers and the rule compared
    # strings, so any caller behind a proxy on the same host could name itself "127.evil".
    with serve_process(store_url, tmp_path) as server:
        for claimed in ("127.evil", "localhost", "127.0.0.1", "203.0.113.9"):
            response = httpx.get(f"{server.url}/api/clients/demo", headers={"X-Forwarded-For": claimed})
            assert response.status_code == 403, claimed
        forwarded = httpx.get(f"{server.url}/api/clients/demo", headers={"Forwarded": "for=127.0.0.1"})
        assert forwarded.status_code == 403
        assert httpx.get(f"{server.url}/api/clients/demo").status_code == 200, "a local caller is let in"


@pytest.mark.slow
def test_behind_a_trusted_proxy_the_forwarded_caller_counts(store_url, tmp_path):
    with serve_process(store_url, tmp_path, {"PROFILESTORE_TRUSTED_PROXIES": "127.0.0.1"}) as server:
        url = f"{server.url}/api/clients/demo"
        assert httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert httpx.get(url, headers={"X-Forwarded-For": "127.evil"}).status_code == 403
        assert httpx.get(url, headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


@pytest.mark.parametrize("host, local", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("127.evil", False), ("localhost", False), ("10.0.0.1", False), ("", False), ("testclient", False),
])  # fmt: skip
def test_only_loopback_ip_addresses_are_local(host, local):
    assert is_loopback(host) is local


@pytest.mark.parametrize(
    "field, value, limit", [("dailyRows", 2**31, "2147483647"), ("callsPerMinute", 10**30, "2147483647")]
)
def test_quotas_beyond_what_the_store_holds_are_400(http, field, value, limit):
    response = http.patch("/api/clients/demo", json={field: value})
    assert response.status_code == 400
    assert response.json()["message"] == f"Invalid request: {field}: Input should be less than or equal to {limit}"


@pytest.mark.parametrize("path", [
    "/api/batches?client=%00", "/api/profiles/tntId/t1?client=%00", "/api/clients/%00/tokens",
    "/api/clients/de%00mo/privacy/TNTID/t1", "/api/profiles/tntId/t1/attributes/a?client=%00",
])  # fmt: skip
def test_a_client_code_that_cannot_be_one_is_400_on_every_admin_route(http, path):
    # Regression: PostgreSQL cannot take a NUL in a string, and these answered 500.
    method = "DELETE" if path.endswith("/attributes/a?client=%00") else "GET"
    response = http.request(method, path)
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid client code")


@pytest.mark.slow
def test_a_forwarded_header_the_server_does_not_read_never_makes_a_loopback_caller(store_url, tmp_path):
    with serve_process(store_url, tmp_path, {"PROFILESTORE_TRUSTED_PROXIES": "127.0.0.1"}) as server:
        response = httpx.get(f"{server.url}/api/clients/demo", headers={"Forwarded": "for=203.0.113.9"})
        assert response.status_code == 403
