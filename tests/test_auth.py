"""Profile API authentication: off until a client turns it on, then a live token of that client
on every protected call. Each protected path is tried with every kind of token."""

import hashlib

import pytest

from profilestore.auth import AuthService
from profilestore.config import Settings
from profilestore.model import ClientConfig
from profilestore.store import open_store
from support import FakeClock, accepted_id, apply, deliver, submit, wait_complete, xml_fields
from support import dump as store_dump

BATCH = "batch=thirdPartyId,city\nc1,Oslo\n"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Secured:
    """A service whose client demo requires tokens, with one token of every kind."""

    def __init__(self, make_service):
        self.clock = FakeClock()
        self.http = make_service(clock=self.clock)
        record = apply(self.http, BATCH)
        self.batch_id = record["batchId"]
        self.tnt_id = self.http.get("/api/profiles/thirdPartyId/c1", params={"client": "demo"}).json()["tntId"]
        deliver(self.http, {"id": {"tntId": self.tnt_id, "marketingCloudVisitorId": "ecid-1"}})
        self.expired = self.token("demo", expiresInDays=1)
        self.clock.advance(days=2)
        self.revoked = self.token("demo")
        self.http.delete(f"/api/clients/demo/tokens/{self.revoked['id']}")
        self.right = self.token("demo")
        self.other_client = self.token("acme")
        assert self.http.patch("/api/clients/demo", json={"authRequired": True}).json()["authRequired"] is True

    def token(self, client, **request) -> dict:
        response = self.http.post(f"/api/clients/{client}/tokens", json=request)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def secured(make_service) -> Secured:
    return Secured(make_service)


PROTECTED = {
    "bulk v1": lambda s, h: s.http.post("/m2/demo/profile/batchUpdate", content=BATCH, headers={**FORM, **h}),
    "bulk v2": lambda s, h: s.http.post("/m2/demo/v2/profile/batchUpdate", content=BATCH, headers={**FORM, **h}),
    "batch status": lambda s, h: s.http.get("/m2/demo/profile/batchStatus", params={"batchId": s.batch_id}, headers=h),
    "batch status v2": lambda s, h: s.http.get("/m2/demo/v2/profile/batchStatus", params={"batchId": s.batch_id}, headers=h),
    "single update GET": lambda s, h: s.http.get("/m2/demo/profile/update?mbox3rdPartyId=c1&profile.x=1", headers=h),
    "single update POST": lambda s, h: s.http.post("/m2/demo/profile/update", content="mboxPC=" + s.tnt_id + "&profile.x=2", headers={**FORM, **h}),
    "fetch by tntId": lambda s, h: s.http.get(f"/rest/v1/profiles/{s.tnt_id}", params={"client": "demo"}, headers=h),
    "fetch by thirdPartyId": lambda s, h: s.http.get("/rest/v1/profiles/thirdPartyId/c1", params={"client": "demo"}, headers=h),
    "fetch by ECID": lambda s, h: s.http.get("/rest/v1/profiles/marketingCloudVisitorId/ecid-1", params={"client": "demo"}, headers=h),
}  # fmt: skip


def message(response) -> str:
    if response.headers["content-type"].startswith("application/xml"):
        fields = xml_fields(response)
        assert fields["success"] == "false"
        return fields["message"]
    return response.json()["message"]


def bearer(token: dict) -> dict:
    return {"Authorization": f"Bearer {token['token']}"}


@pytest.mark.parametrize("call", PROTECTED.values(), ids=PROTECTED.keys())
class TestEveryProtectedPath:
    def test_no_token(self, secured, call):
        response = call(secured, {})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert message(response) == "Client demo requires authentication: send Authorization: Bearer TOKEN"

    def test_malformed_header(self, secured, call):
        response = call(secured, {"Authorization": "Basic dXNlcjpwYXNz"})
        assert response.status_code == 401 and message(response).startswith("Malformed Authorization header")

    def test_bad_token(self, secured, call):
        response = call(secured, {"Authorization": "Bearer pst_not-a-real-token"})
        assert response.status_code == 401 and message(response) == "The token is not valid"

    def test_token_of_another_client(self, secured, call):
        response = call(secured, bearer(secured.other_client))
        assert response.status_code == 403 and message(response) == "The token belongs to another client, not to demo"

    def test_expired_token(self, secured, call):
        response = call(secured, bearer(secured.expired))
        assert response.status_code == 403 and message(response).startswith(
            "The token expired at 2026-11-24T10:00:00.000"
        )

    def test_revoked_token(self, secured, call):
        response = call(secured, bearer(secured.revoked))
        assert response.status_code == 403 and message(response).startswith("The token was revoked at")

    def test_right_token(self, secured, call):
        response = call(secured, bearer(secured.right))
        assert response.status_code == 200, response.text


def test_nothing_is_written_without_a_token(secured):
    secured.http.get("/m2/demo/profile/update?mbox3rdPartyId=c1&profile.city=Rome")
    refused = secured.http.post(
        "/m2/demo/v2/profile/batchUpdate", content="batch=thirdPartyId,city\nc1,Rome\n", headers=FORM
    )
    assert refused.status_code == 401
    fetched = secured.http.get(
        "/rest/v1/profiles/thirdPartyId/c1", params={"client": "demo"}, headers=bearer(secured.right)
    )
    assert fetched.json()["profileAttributes"]["city"]["value"] == "Oslo"


def test_the_delivery_api_stays_open(secured):
    assert deliver(secured.http, {"id": {"thirdPartyId": "c1"}}).status_code == 200


def test_other_clients_are_not_affected(secured):
    assert apply(secured.http, BATCH, client="acme")["successfulUpdates"] == 1


def test_auth_can_be_turned_off_again(secured):
    secured.http.patch("/api/clients/demo", json={"authRequired": False})
    assert secured.http.get("/rest/v1/profiles/thirdPartyId/c1", params={"client": "demo"}).status_code == 200


def test_a_new_token_replaces_the_live_ones(secured):
    newer = secured.token("demo")
    response = PROTECTED["fetch by thirdPartyId"](secured, bearer(secured.right))
    assert response.status_code == 403 and message(response).startswith("The token was revoked")
    assert PROTECTED["fetch by thirdPartyId"](secured, bearer(newer)).status_code == 200


def test_a_rotation_keeps_the_previous_token_for_a_while(secured):
    newer = secured.token("demo", keepPreviousHours=2)
    fetch = PROTECTED["fetch by thirdPartyId"]
    assert fetch(secured, bearer(secured.right)).status_code == 200
    assert fetch(secured, bearer(newer)).status_code == 200
    secured.clock.advance(seconds=2 * 3600 + 1)
    assert fetch(secured, bearer(secured.right)).status_code == 403
    assert fetch(secured, bearer(newer)).status_code == 200


def test_tokens_are_listed_without_secrets_and_stored_only_as_hashes(secured):
    listed = secured.http.get("/api/clients/demo/tokens").json()["tokens"]
    assert [t["state"] for t in listed] == ["expired", "revoked", "live"]
    assert all("token" not in t for t in listed)
    dump = store_dump(secured.http.app.state.settings.store_url)
    secret = secured.right["token"]
    assert secret not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump


def test_a_token_is_shown_once_with_its_expiry(secured):
    token = secured.token("demo", expiresInDays=30)
    assert token["token"].startswith("pst_") and len(token["token"]) > 40
    assert token["expiresAt"].startswith("2026-12-25T10:00:00.000")
    assert token["state"] == "live"


def test_revoking_an_unknown_token_is_404(secured):
    response = secured.http.delete("/api/clients/demo/tokens/nope")
    assert response.status_code == 404 and response.json()["message"] == "Client demo has no token nope"


def test_bad_token_request_is_400(secured):
    response = secured.http.post("/api/clients/demo/tokens", json={"expiresInDays": -1})
    assert response.status_code == 400 and "expiresInDays" in response.json()["message"]


def test_upload_wait_with_a_token_of_an_auth_client(secured):
    batch_id = accepted_id(submit(secured.http, BATCH, headers=bearer(secured.right)))
    assert wait_complete(secured.http, batch_id)["successfulUpdates"] == 1


@pytest.mark.parametrize(
    "field, value", [("expiresInDays", 1e20), ("keepPreviousHours", 1e20), ("expiresInDays", 36_501)]
)
def test_a_token_lifetime_beyond_a_century_is_400(secured, field, value):
    # Regression: 1e20 days passed the range of the stored times and answered a plain-text 500.
    response = secured.http.post("/api/clients/demo/tokens", json={field: value})
    assert (
        response.status_code == 400 and f"{field}: Input should be less than or equal to" in response.json()["message"]
    )


def test_a_client_setting_that_expires_from_the_cache_mid_lookup_is_read_again(store_url):
    # Regression: the cache was asked twice (`in`, then `[]`); an entry expiring between the two
    # raised KeyError, a 500 on a profile API call. This clock moves 0.6 s at every reading.
    store = open_store(store_url)
    try:
        store.write("demo", lambda tx: tx.save_client(ClientConfig("demo", daily_rows=7)))
        ticks = iter(range(0, 10**9, 600))
        auth = AuthService(store, Settings(), clock=lambda: next(ticks))
        assert [auth.client_config("demo").daily_rows for _ in range(5)] == [7] * 5
    finally:
        store.close()
