"""A batch's record as our /api shows it and as a completion webhook sends it: plain data, for
the HTTP layer (web/wire.py) and the rules (batches.py, which renders webhook bodies) alike."""

from __future__ import annotations

from dataclasses import replace

from .model import Batch, Failing
from .times import iso_ms


def status_url(base: str, batch: Batch) -> str:
    """The batch's Target batchStatus link on the server at base ("" for a path alone)."""
    version = "/v2" if batch.version == 2 else ""
    return f"{base.rstrip('/')}/m2/{batch.client}{version}/profile/batchStatus?batchId={batch.id}"


def batch_record(batch: Batch, url: str, failing: Failing | None = None) -> dict:
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
        "state": batch.state.value,
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
