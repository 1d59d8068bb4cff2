"""Target's Bulk Profile Update API: batchUpdate (v1, v2) and batchStatus, in Target's XML."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .. import records
from ..batches import BatchService
from ..model import Batch
from . import xml
from .body import read_batch, upload_turn
from .deps import batches, call_rate, profile_api_token, wake_worker

router = APIRouter(dependencies=[Depends(profile_api_token), Depends(call_rate)])
STATUS_FAILED_IDS = 1_000  # failed ids batchStatus lists; /api/batches/{id}/failures pages through all


@router.post("/m2/{client}/profile/batchUpdate")
async def batch_update_v1(client: str, request: Request, service: BatchService = Depends(batches)) -> Response:
    return await _submit(request, service, client, version=1)


@router.post("/m2/{client}/v2/profile/batchUpdate")
async def batch_update_v2(client: str, request: Request, service: BatchService = Depends(batches)) -> Response:
    return await _submit(request, service, client, version=2)


async def _submit(request: Request, service: BatchService, client: str, version: int) -> Response:
    settings = service.settings
    key = request.headers.get("idempotency-key")
    async with upload_turn(request, settings.upload_wait_seconds) as turn:
        payload = await read_batch(request, settings.max_batch_bytes, turn)
        batch, replayed = await run_in_threadpool(service.submit, client, version, payload, key)
    if replayed:  # the answer the first submit got; the header tells it apart, as Stripe's does
        return xml.submitted(batch, status_url(request, batch), {"Idempotent-Replayed": "true"})
    wake_worker(request)
    return xml.submitted(batch, status_url(request, batch))


def status_url(request: Request, batch: Batch) -> str:
    return records.status_url(request.app.state.settings.public_url or str(request.base_url), batch)


@router.get("/m2/{client}/profile/batchStatus")
@router.get("/m2/{client}/v2/profile/batchStatus")
def batch_status(
    client: str, batchId: str = "", showDetails: str = "false", service: BatchService = Depends(batches)
) -> Response:
    """The batch's state, and the ids of its first STATUS_FAILED_IDS failed rows."""
    if not batchId:
        return xml.refused(400, "The batchId query parameter is required")
    batch = service.find(batchId, client)
    failed = service.store.failed_rows(batch.seq, STATUS_FAILED_IDS)
    return xml.batch_status(batch, showDetails.lower() == "true", failed)
