"""Completion webhooks (docs/operations.md#completion-webhooks), against a real HTTP receiver on
127.0.0.1: a batch that completes or becomes stuck is posted once, signed, with its record as
body; a failed delivery is retried, a redirect is not followed, a host not allowed is refused
when the URL is set and when the delivery is due; the secret is shown once; the delivery log.

The retries are driven by a WebhookSender on the service's own store and a fake clock (no test
waits out a backoff), except the restart test, which runs a real `serve` twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from profilestore.webhooks import WebhookSender
from support import FakeClock, accepted_id, eventually, serve_process, submit, wait_complete

BATCH = "batch=thirdPartyId,tier\nc1,gold\nc2,silver\n"
PUBLIC_URL = "http://profiles.test"  # the test client's base: webhook bodies then equal /api records


class Receiver:
    """An HTTP server that records every request and answers the next of `answers` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def verified(request: dict, secret: str) -> dict:
    """The body of a delivery whose signature checks out, as the docs' snippet checks it."""
    timestamp, signature = (
        request["headers"]["X-Profilestore-Timestamp"],
        request["headers"]["X-Profilestore-Signature"],
    )
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, f"sha256={expected}")
    return json.loads(request["body"])


def hook_up(http, url: str, client: str = "demo") -> str:
    """Set the client's webhook URL; the secret the answer shows."""
    answer = http.patch(f"/api/clients/{client}", json={"webhookUrl": url})
    assert answer.status_code == 200, answer.text
    return answer.json()["webhookSecret"]


def log(http, client: str = "demo") -> list[dict]:
    return http.get(f"/api/clients/{client}/webhooks/deliveries").json()["deliveries"]


def stuck_batch(http, reason: str = "the disk caught fire") -> str:
    """A batch made stuck by the service's rules, as the worker would; its id."""
    batch_id = accepted_id(submit(http, BATCH))
    service = http.app.state.batches
    service.give_up(service.find(batch_id), reason)
    return batch_id


def sender_of(http, clock, **settings) -> WebhookSender:
    state = http.app.state
    return WebhookSender(state.store, replace(state.settings, **settings), clock)


def test_a_completed_batch_is_posted_once_signed_with_its_record(make_service, receiver):
    http = make_service(webhook_allow="127.0.0.1", public_url=PUBLIC_URL)
    secret = hook_up(http, receiver.url)
    record = wait_complete(http, accepted_id(submit(http, BATCH)))
    delivered = eventually(lambda: [d for d in log(http) if d["state"] == "delivered"], "delivered")
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert verified(request, secret) == record
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json" and headers["X-Profilestore-Event"] == "batch.completed"
    assert delivered[0]["eventId"] == headers["X-Profilestore-Event-Id"]
    assert delivered[0]["batchId"] == record["batchId"]
    assert (delivered[0]["attempts"], delivered[0]["lastStatus"], delivered[0]["lastError"]) == (1, 200, None)


def test_a_stuck_batch_is_posted_with_its_record(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1", public_url=PUBLIC_URL)
    secret = hook_up(http, receiver.url)
    batch_id = stuck_batch(http)
    assert sender_of(http, clock).send_due() == 1
    body = verified(receiver.requests[0], secret)
    assert body == http.get(f"/api/batches/{batch_id}").json()
    assert (body["status"], body["stuckReason"]) == ("stuck", "the disk caught fire")
    assert receiver.requests[0]["headers"]["X-Profilestore-Event"] == "batch.stuck"
    assert receiver.requests[0]["headers"]["X-Profilestore-Timestamp"] == str(clock.ms // 1000)


def test_a_receiver_that_fails_then_recovers_gets_the_same_delivery_on_a_retry(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1")
    hook_up(http, receiver.url)
    stuck_batch(http)
    sender = sender_of(http, clock)
    receiver.answers = [500]
    assert sender.send_due() == 1
    [failed] = log(http)
    assert (failed["state"], failed["attempts"], failed["lastStatus"]) == ("pending", 1, 500)
    assert failed["lastError"] == "the receiver answered 500"
    assert sender.send_due() == 0  # not before its backoff (10 s at most after the first failure)
    clock.advance(seconds=10)
    assert sender.send_due() == 1
    [delivered] = log(http)
    assert (delivered["state"], delivered["attempts"], delivered["lastStatus"]) == ("delivered", 2, 200)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert first["headers"]["X-Profilestore-Event-Id"] == second["headers"]["X-Profilestore-Event-Id"]


def test_a_delivery_failing_for_a_day_is_given_up(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1")
    hook_up(http, receiver.url)
    stuck_batch(http)
    sender = sender_of(http, clock)
    receiver.answers = [503] * 100
    while log(http)[0]["state"] == "pending":
        sender.send_due()
        clock.advance(seconds=3600)
    [given_up] = log(http)
    assert given_up["state"] == "given up" and given_up["lastError"] == "the receiver answered 503; given up"
    assert 20 < given_up["attempts"] < 40  # doubling up to an hour, for a day


def test_a_redirect_is_not_followed(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1")
    hook_up(http, receiver.url)
    stuck_batch(http)
    receiver.answers = [302]
    sender_of(http, clock).send_due()
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    [pending] = log(http)
    assert (pending["state"], pending["lastStatus"], pending["lastError"]) == (
        "pending",
        302,
        "the receiver answered 302",
    )


def test_a_host_not_allowed_is_refused_when_the_url_is_set(make_service):
    http = make_service(webhook_allow="hooks.example.com,127.0.0.1:9")
    for url, problem in (
        ("https://evil.example/in", "host evil.example: it is not in PROFILESTORE_WEBHOOK_ALLOW"),
        ("http://127.0.0.1:8080/in", "host 127.0.0.1:8080: it is not in PROFILESTORE_WEBHOOK_ALLOW"),
        ("ftp://hooks.example.com/in", "must be an http or https URL"),
    ):
        answer = http.patch("/api/clients/demo", json={"webhookUrl": url})
        assert answer.status_code == 400 and problem in answer.text, answer.text
    assert http.get("/api/clients/demo").json()["webhookUrl"] is None
    assert http.patch("/api/clients/demo", json={"webhookUrl": "https://HOOKS.example.com/in"}).status_code == 200
    assert http.patch("/api/clients/demo", json={"webhookUrl": "http://127.0.0.1:9/in"}).status_code == 200


def test_no_host_is_allowed_by_default(make_service):
    answer = make_service().patch("/api/clients/demo", json={"webhookUrl": "https://hooks.example.com/in"})
    assert answer.status_code == 400 and "PROFILESTORE_WEBHOOK_ALLOW" in answer.text


def test_a_host_no_longer_allowed_is_not_sent_to(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1")
    hook_up(http, receiver.url)
    stuck_batch(http)
    sender_of(http, clock, webhook_allow="hooks.example.com").send_due()
    assert receiver.requests == []
    [pending] = log(http)
    host = receiver.url.split("/")[2]
    assert pending["lastError"] == f"webhooks may not go to host {host}: it is not in PROFILESTORE_WEBHOOK_ALLOW"
    assert (pending["state"], pending["lastStatus"]) == ("pending", None)


def test_the_secret_is_shown_once_and_a_new_one_on_request(make_service):
    http = make_service(webhook_allow="hooks.example.com")
    secret = hook_up(http, "https://hooks.example.com/in")
    assert secret.startswith("whsec_") and len(secret) > 40
    record = http.get("/api/clients/demo").json()
    assert record["webhookUrl"] == "https://hooks.example.com/in" and "webhookSecret" not in record
    assert "webhookSecret" not in http.patch("/api/clients/demo", json={"dailyRows": 5}).json()
    assert (
        "webhookSecret"
        not in http.patch("/api/clients/demo", json={"webhookUrl": "https://hooks.example.com/2"}).json()
    )
    renewed = http.patch("/api/clients/demo", json={"newWebhookSecret": True}).json()["webhookSecret"]
    assert renewed.startswith("whsec_") and renewed != secret
    assert http.app.state.store.client_config("demo").webhook_secret == renewed


def test_a_new_secret_needs_a_url(make_service):
    answer = make_service().patch("/api/clients/demo", json={"newWebhookSecret": True})
    assert answer.status_code == 400 and "no webhook URL" in answer.text


def test_null_turns_webhooks_off_and_no_delivery_is_made(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1")
    hook_up(http, receiver.url)
    assert http.patch("/api/clients/demo", json={"webhookUrl": None}).json()["webhookUrl"] is None
    stuck_batch(http)
    assert sender_of(http, clock).send_due() == 0
    assert log(http) == [] and receiver.requests == []


def test_the_delivery_log_lists_the_clients_deliveries_newest_first(make_service, receiver):
    clock = FakeClock()
    http = make_service(clock=clock, run_worker=False, webhook_allow="127.0.0.1")
    hook_up(http, receiver.url)
    first = stuck_batch(http)
    clock.advance(seconds=1)
    second = stuck_batch(http)
    listed = log(http)
    assert [d["batchId"] for d in listed] == [second, first]
    assert set(listed[0]) == {"eventId", "event", "batchId", "state", "createdAt", "attempts", "nextAttemptAt",
                              "deliveredAt", "lastStatus", "lastError"}  # fmt: skip
    assert (listed[0]["event"], listed[0]["state"], listed[0]["attempts"]) == ("batch.stuck", "pending", 0)
    newest = http.get("/api/clients/demo/webhooks/deliveries", params={"limit": 1}).json()["deliveries"]
    assert [d["batchId"] for d in newest] == [second]
    assert http.get("/api/clients/demo/webhooks/deliveries", params={"limit": 1001}).status_code == 400
    assert log(http, "other") == []


@pytest.mark.slow
def test_a_due_delivery_survives_a_restart(store_url, receiver, tmp_path):
    env = {"PROFILESTORE_WEBHOOK_ALLOW": "127.0.0.1"}
    receiver.answers = [500]
    serve = serve_process(store_url, tmp_path, env)
    with serve:
        secret = httpx.patch(f"{serve.url}/api/clients/demo", json={"webhookUrl": receiver.url}).json()["webhookSecret"]
        wait_complete(httpx.Client(base_url=serve.url), accepted_id(submit(httpx.Client(base_url=serve.url), BATCH)))
        eventually(lambda: receiver.requests, "a first attempt")
    # stopped with the delivery failed once and due again within 10 s
    with serve_process(store_url, tmp_path, env) as again:
        client = httpx.Client(base_url=again.url)
        eventually(lambda: [d for d in log(client) if d["state"] == "delivered"], "delivered after the restart")
    first, second = receiver.requests
    assert verified(first, secret) == verified(second, secret)
    assert first["headers"]["X-Profilestore-Event-Id"] == second["headers"]["X-Profilestore-Event-Id"]
