"""Our extensions under /api (JSON): what Target does not show about a batch."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..batches import BatchService, id_of, target_status
from ..errors import Rejected
from ..ids import iso_ms
from ..profiles import attributes_json, not_found_json
from ..store.base import ID_KINDS, Batch, Store
from .bulk import status_url
from .deps import batches, store

router = APIRouter(prefix="/api")


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


@router.get("/profiles/{id_kind}/{visitor_id}")
def profile_record(id_kind: str, visitor_id: str, client: str, db: Store = Depends(store)) -> dict:
    """The whole profile with all its ids, which Target's fetch API does not show."""
    if id_kind not in ID_KINDS:
        raise Rejected(404, f"Unknown id kind {id_kind!r}: use one of {', '.join(ID_KINDS)}")
    profile = db.profile(client, id_kind, visitor_id)
    if profile is None:
        raise Rejected(404, not_found_json(client, id_kind, visitor_id)["message"])
    return {
        "client": profile.client,
        "tntId": profile.tnt_id,
        "thirdPartyId": profile.third_party_id,
        "marketingCloudVisitorId": profile.mcvid,
        "createdAt": iso_ms(profile.created_ms),
        "modifiedAt": iso_ms(profile.modified_ms),
        "attributes": attributes_json(profile),
    }


@router.get("/batches/{batch_id}")
def batch_record(batch_id: str, request: Request, service: BatchService = Depends(batches)) -> dict:
    batch = service.find(batch_id)
    return batch_json(batch, status_url(request, batch))


@router.get("/batches/{batch_id}/failures")
def batch_failures(
    batch_id: str, limit: int = 1000, offset: int = 0, service: BatchService = Depends(batches)
) -> dict:
    batch = service.find(batch_id)
    rows = service.store.failed_rows(batch.seq, limit, offset)
    return {
        "batchId": id_of(batch),
        "failedUpdates": batch.failed,
        "failedRows": [{"line": r.line, "id": r.id, "reason": r.reason} for r in rows],
    }


@router.get("/batches/{batch_id}/failures.csv")
def batch_failures_csv(batch_id: str, service: BatchService = Depends(batches)) -> Response:
    batch = service.find(batch_id)
    return Response(
        service.failed_rows_csv(batch),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{id_of(batch)}-failed.csv"'},
    )


def batch_json(batch: Batch, url: str) -> dict:
    finished = batch.finished_ms
    return {
        "batchId": id_of(batch),
        "client": batch.client,
        "version": batch.version,
        "status": target_status(batch),
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
        "batchStatus": url,
    }
