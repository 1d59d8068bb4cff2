"""Completion webhooks: when a batch completes or becomes stuck, a signed POST of its record to
the URL its client configured (docs/operations.md#completion-webhooks).

A delivery is made in the transaction that finishes the batch (BatchService calls
new_delivery), so a batch never finishes without one and never gets two. The worker process
sends them (WebhookSender, on a thread of its own beside the worker's loop): it claims due
deliveries in one transaction by moving their next attempt CLAIM_MS ahead, so that another
sender passes them by, then posts each and records what happened. A 2xx delivers it; anything
else (a redirect included, since none is followed) is retried, doubling from 10 s up to an
hour, until a day after the event, then given up. A process that dies mid-send leaves its
claim to expire: the delivery is sent again then, and the receiver tells it by its event id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

import httpx
import orjson

from .config import Settings
from .errors import BadRequest
from .model import Batch, BatchState, ClientConfig, WebhookDelivery
from .records import batch_record, status_url
from .store.base import Store, WriteTx
from .times import DAY_MS, HOUR_MS, backoff, now_ms

log = logging.getLogger("profilestore.webhooks")
SECRET_PREFIX = "whsec_"
TIMEOUT_SECONDS = 10
FIRST_RETRY_MS = 10_000
MAX_RETRY_MS = HOUR_MS
GIVE_UP_MS = DAY_MS  # after the event
CLAIM_MS = 60_000  # how long a claimed delivery is left to its sender: more than a send can take
CLAIM_AT_ONCE = 20
POLL_SECONDS = 1.0
EVENTS = {BatchState.COMPLETE: "batch.completed", BatchState.STUCK: "batch.stuck"}


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def allowed_hosts(settings: Settings) -> set[str]:
    return {host.strip().lower() for host in settings.webhook_allow.split(",") if host.strip()}


def refusal(settings: Settings, url: str) -> str | None:
    """Why webhooks may not go to this URL, or None: it must be http(s), and its host (or
    host:port) one of PROFILESTORE_WEBHOOK_ALLOW."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"the webhook URL {url!r} cannot be read: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"the webhook URL {url!r} must be an http or https URL with a host"
    host = parts.hostname.lower()
    allowed = allowed_hosts(settings)
    if host in allowed or (port is not None and f"{host}:{port}" in allowed):
        return None
    named = f"{host}:{port}" if port is not None else host
    return f"webhooks may not go to host {named}: it is not in PROFILESTORE_WEBHOOK_ALLOW"


def check_url(settings: Settings, url: str) -> None:
    """BadRequest unless webhooks may go to the URL (see refusal)."""
    problem = refusal(settings, url)
    if problem:
        raise BadRequest(problem[0].upper() + problem[1:])


def new_delivery(tx: WriteTx, batch: Batch, settings: Settings, now: int) -> None:
    """Store the webhook of the batch, which just finished in this transaction, if its client
    has a webhook URL. The body is rendered now, so every attempt sends the same bytes; its
    batchStatus link is on PROFILESTORE_PUBLIC_URL (a path alone without one)."""
    config = tx.client_config(batch.client)
    if config is None or not config.webhook_url or batch.state not in EVENTS:
        return
    body = orjson.dumps(batch_record(batch, status_url(settings.public_url, batch))).decode()
    event = EVENTS[batch.state]
    tx.insert_delivery(WebhookDelivery(uuid.uuid4().hex, batch.client, batch.seq, event, body, now, 0, now))


def signature(secret: str, timestamp: int, body: str) -> str:
    """The X-Profilestore-Signature header: HMAC-SHA256 of "{timestamp}.{body}", as Stripe's."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def retry_delay_ms(attempts: int, draw: Callable[[], float] = random.random) -> int:
    """The pause after the attempts-th failed attempt: doubling from FIRST_RETRY_MS up to
    MAX_RETRY_MS, drawn between half and all of that."""
    return int(backoff(FIRST_RETRY_MS, MAX_RETRY_MS, attempts - 1, draw))


class WebhookSender:
    """Sends the store's due deliveries; send_due() once, or run() until stop()."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms):
        self.store, self.settings, self.clock = store, settings, clock
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
        self.beat_at = time.monotonic()

    def send_due(self) -> int:
        """Claim the deliveries due now and send each; how many were claimed."""
        now = self.clock()

        def claim(tx: WriteTx) -> list[WebhookDelivery]:
            return tx.claim_deliveries(now, now + CLAIM_MS, CLAIM_AT_ONCE)

        # Not durable: a claim lost to a power cut only makes its deliveries due again.
        claimed = self.store.write(None, claim, durable=False)
        for delivery in claimed:
            self._send(delivery)
            self.beat_at = time.monotonic()
        return len(claimed)

    def _send(self, delivery: WebhookDelivery) -> None:
        config = self.store.client_config(delivery.client)
        status: int | None = None
        if config is None or not config.webhook_url or not config.webhook_secret:
            self._record(delivery, None, "the client has no webhook URL any more", give_up=True)
            return
        problem = refusal(self.settings, config.webhook_url)
        if problem is None:
            timestamp = self.clock() // 1000
            headers = {
                "Content-Type": "application/json",
                "X-Profilestore-Event-Id": delivery.event_id,
                "X-Profilestore-Event": delivery.event,
                "X-Profilestore-Timestamp": str(timestamp),
                "X-Profilestore-Signature": signature(config.webhook_secret, timestamp, delivery.body),
            }
            try:
                status = self._http.post(
                    config.webhook_url, content=delivery.body.encode(), headers=headers
                ).status_code
                problem = None if 200 <= status < 300 else f"the receiver answered {status}"
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        self._record(delivery, status, problem)

    def _record(
        self, delivery: WebhookDelivery, status: int | None, problem: str | None, give_up: bool = False
    ) -> None:
        now = self.clock()
        attempts = delivery.attempts + 1
        if problem is None:
            done = replace(delivery, attempts=attempts, next_attempt_ms=None, delivered_ms=now, last_status=status,
                           last_error=None)  # fmt: skip
        else:
            retry_at = now + retry_delay_ms(attempts)
            if give_up or retry_at - delivery.created_ms >= GIVE_UP_MS:
                problem, retry_at_or_none = f"{problem}; given up", None
            else:
                retry_at_or_none = retry_at
            done = replace(delivery, attempts=attempts, next_attempt_ms=retry_at_or_none, last_status=status,
                           last_error=problem)  # fmt: skip
            log.warning("webhook %s of batch seq %d to %s failed: %s", delivery.event_id, delivery.seq,
                        delivery.client, problem)  # fmt: skip
        self.store.write(delivery.client, lambda tx: tx.update_delivery(done))

    def run(self) -> None:
        """Send due deliveries until stopped; an error is logged and tried again at the next poll."""
        while not self._stop.is_set():
            self.beat_at = time.monotonic()
            try:
                sent = self.send_due()
            except Exception:
                log.exception("sending webhooks failed; trying again")
                sent = 0
            if not sent:
                self._stop.wait(POLL_SECONDS)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._http.close()


class SenderThread:
    """A WebhookSender on a thread of its own (`webhook-sender`), so that a slow receiver (up to
    10 s a delivery) never holds up the batches."""

    def __init__(self, sender: WebhookSender):
        self.sender = sender
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sender.run()
        except BaseException as e:  # what run()'s own handling let through: never silent
            self.error = e
            log.critical("the webhook sender died", exc_info=e)

    def problem(self) -> str | None:
        """What is wrong with the sender, or None."""
        if self._thread.ident is not None and not self._thread.is_alive() and not self.sender.stopped:
            return f"the webhook sender thread died ({self.error!r})"
        return None

    def stop(self) -> None:
        self.sender.stop()
        self._thread.join()
        self.sender.close()


def webhook_changes(
    settings: Settings, current: ClientConfig | None, url: str | None, url_given: bool, new_secret_asked: bool
) -> dict:
    """The changes of a client's settings (webhook_url, webhook_secret) that a PATCH asks for:
    a URL turns webhooks on (BadRequest unless it may be used, see refusal) and makes a secret
    if the client has none; null turns them off and forgets the secret; new_secret_asked makes
    a new one (BadRequest without a URL)."""
    changes: dict = {}
    if url_given and url is None:
        return {"webhook_url": None, "webhook_secret": None}
    if url_given:
        check_url(settings, url or "")
        changes["webhook_url"] = url
    has_url = url_given or bool(current and current.webhook_url)
    if new_secret_asked and not has_url:
        raise BadRequest("The client has no webhook URL: set webhookUrl before asking for a new secret")
    if has_url and (new_secret_asked or not (current and current.webhook_secret)):
        changes["webhook_secret"] = new_secret()
    return changes
