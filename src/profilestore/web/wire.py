"""The JSON shapes of our answers: profiles as Target's fetch API shows them and as /api does,
batch records and tokens. The XML ones are in xml.py."""

from __future__ import annotations

from dataclasses import replace

from ..model import MODIFIED_MS, VALUE, Batch, Failing, Profile, Token
from ..times import iso_ms


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
    """The batch's record. What this service's worker keeps failing at, it knows better than
    the store, which may not have taken even that write (a full disk)."""
    finished = batch.finished_ms
    if failing and failing.batch_id == batch.id and not batch.state.finished:
        batch = replace(batch, last_error=failing.last_error, failing_since_ms=failing.failing_since_ms,
                        next_attempt_ms=failing.next_attempt_ms)  # fmt: skip
    return {
        "batchId": batch.id,
        "client": batch.client,
        "version": batch.version,
        "status": batch.state.target_status,
        "state": batch.state,
        "batchSize": batch.size,
        "consumedCount": batch.consumed,
        "successfulUpdates": batch.successful,
        "profilesNotFound": batch.not_found,
        "failedUpdates": batch.failed,
        "payloadBytes": batch.payload_bytes,
        "acceptedAt": iso_ms(batch.accepted_ms),
        "startedAt": iso_ms(batch.started_ms),
        "finishedAt": iso_ms(finished),
        "durationMs": finished - batch.accepted_ms if finished else None,
        "stuckReason": batch.stuck_reason,
        "heldBack": batch.held_reason,
        "lastError": batch.last_error,
        "failingSince": iso_ms(batch.failing_since_ms),
        "nextAttemptAt": iso_ms(batch.next_attempt_ms),
        "failedAttempts": batch.attempts,
        "batchStatus": url,
    }


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
