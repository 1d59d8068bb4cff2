"""The JSON shapes of our answers: profiles as Target's fetch API shows them and as /api does,
batch records and tokens. The XML ones are in xml.py."""

from __future__ import annotations

import orjson

from ..dryrun import DryRun
from ..model import MODIFIED_MS, VALUE, Batch, Failing, Profile, Token, WebhookDelivery
from ..records import batch_record
from ..times import iso_ms
from .errors import status_of


def attributes_json(profile: Profile) -> dict:
    return {name: {"value": a[VALUE], "modifiedAt": iso_ms(a[MODIFIED_MS])} for name, a in profile.attributes.items()}


def profile_json(profile: Profile) -> dict:
    """The whole profile with all its ids, which Target's fetch API does not show."""
    return {
        "client": profile.client,
        "tntId": profile.tnt_id,
        "thirdPartyId": profile.third_party_id,
        "marketingCloudVisitorId": profile.mcvid,
        "createdAt": iso_ms(profile.created_ms),
        "modifiedAt": iso_ms(profile.modified_ms),
        "lastActiveAt": iso_ms(profile.active_ms),
        "attributes": attributes_json(profile),
    }


def target_json(profile: Profile, visitor_id: str) -> dict:
    """The profile as Target's fetch API shows it."""
    return {
        "client": profile.client,
        "visitorId": visitor_id,
        "modifiedAt": iso_ms(profile.modified_ms),
        "profileAttributes": attributes_json(profile),
    }


def batch_json(batch: Batch, url: str, failing: Failing | None = None) -> dict:
    """The batch's record (see records.batch_record: a webhook sends the same)."""
    return batch_record(batch, url, failing)


def token_json(token: Token, now: int) -> dict:
    state = "revoked" if token.revoked_ms else "expired" if token.expires_ms <= now else "live"
    return {
        "id": token.id,
        "client": token.client,
        "state": state,
        "createdAt": iso_ms(token.created_ms),
        "expiresAt": iso_ms(token.expires_ms),
        "revokedAt": iso_ms(token.revoked_ms),
    }


def delivery_json(delivery: WebhookDelivery) -> dict:
    """A webhook delivery, for the delivery log (its body holds its batch's id)."""
    state = "delivered" if delivery.delivered_ms else "pending" if delivery.next_attempt_ms else "given up"
    return {
        "eventId": delivery.event_id,
        "event": delivery.event,
        "batchId": orjson.loads(delivery.body)["batchId"],
        "state": state,
        "createdAt": iso_ms(delivery.created_ms),
        "attempts": delivery.attempts,
        "nextAttemptAt": iso_ms(delivery.next_attempt_ms),
        "deliveredAt": iso_ms(delivery.delivered_ms),
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error,
    }


def dry_run_json(result: DryRun, version: int) -> dict:
    """What a batch would do: refused whole (with the status and message batchUpdate would
    answer), or its rows' outcomes, as its record would count them."""
    refusal = result.refusal
    return {
        "wouldBeAccepted": refusal is None,
        "refusal": {"status": status_of(refusal), "message": refusal.message} if refusal else None,
        "version": version,
        "batchSize": result.size,
        "successfulUpdates": result.successful,
        "profilesCreated": result.created,
        "profilesNotFound": result.not_found,
        "failedUpdates": result.failed,
        "failedRows": [{"line": r.line, "id": r.id, "reason": r.reason} for r in result.failed_rows],
    }
