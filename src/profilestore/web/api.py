"""Our extensions under /api (JSON): what Target does not show, and the admin API. Everything
here needs the admin key (or, with none configured, a loopback caller); health is apart."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from .. import export
from ..auth import AuthService
from ..batches import BatchService
from ..clients import client_limit
from ..config import Settings
from ..dryrun import dry_run
from ..errors import NotFound
from ..model import ID_KINDS, Failing
from ..privacy import PrivacyService
from ..profiles import live_profile
from ..store.base import Store
from ..webhooks import webhook_changes
from .body import read_batch, upload_turn
from .bulk import status_url
from .deps import admin, auth, batches, client_code, now, privacy, settings, store
from .wire import batch_json, delivery_json, dry_run_json, profile_json, token_json

router = APIRouter(prefix="/api", dependencies=[Depends(admin), Depends(client_code)])
MAX_OFFSET = 2**31 - 1
MAX_QUOTA = 2**31 - 1  # what the stores' integer columns hold
MAX_TOKEN_DAYS = 36_500  # a century: a longer one would pass the range of the stored times


# -- batches ----------------------------------------------------------------------------------


@router.get("/batches")
def batch_list(
    request: Request, client: str | None = None, limit: int = Query(100, ge=1, le=1000), before: str | None = None,
    service: BatchService = Depends(batches),
) -> dict:  # fmt: skip
    """Batches, newest first; page with before=<the last batchId of the previous page>."""
    before_seq = service.find(before).seq if before else None
    listed = service.store.batches(client, limit, before_seq)
    return {"batches": [batch_json(b, status_url(request, b), _failing(request)) for b in listed]}


@router.get("/batches/{batch_id}")
def batch_record(batch_id: str, request: Request, service: BatchService = Depends(batches)) -> dict:
    batch = service.find(batch_id)
    return batch_json(batch, status_url(request, batch), _failing(request))


def _failing(request: Request) -> Failing | None:
    worker = request.app.state.worker
    return worker.failing() if worker else None


@router.get("/batches/{batch_id}/failures")
def batch_failures(
    batch_id: str, limit: int = Query(1000, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
    service: BatchService = Depends(batches),
) -> dict:  # fmt: skip
    batch = service.find(batch_id)
    rows = service.store.failed_rows(batch.seq, limit, offset)
    return {
        "batchId": batch.id,
        "failedUpdates": batch.failed,
        "failedRows": [{"line": r.line, "id": r.id, "reason": r.reason} for r in rows],
    }


@router.get("/batches/{batch_id}/failures.csv")
def batch_failures_csv(
    batch_id: str, variant: str = Query("batch", pattern="^(batch|spreadsheet)$"),
    service: BatchService = Depends(batches),
) -> Response:  # fmt: skip
    """The failed rows as a batch file to fix and resubmit as it is; variant=spreadsheet
    defuses cells a spreadsheet would run as formulas (and cannot be resubmitted as it is)."""
    batch = service.find(batch_id)
    spreadsheet = variant == "spreadsheet"
    name = f"{batch.id}-failed{'-for-spreadsheets' if spreadsheet else ''}.csv"
    return StreamingResponse(
        service.failed_rows_csv(batch, for_spreadsheets=spreadsheet),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/batches/{batch_id}/unprocessed.csv")
def batch_unprocessed_csv(batch_id: str, service: BatchService = Depends(batches)) -> Response:
    """A stuck batch's rows that were never applied, as a batch file to resubmit."""
    batch = service.find(batch_id)
    return Response(
        service.unprocessed_rows_csv(batch),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{batch.id}-unprocessed.csv"'},
    )


@router.post("/clients/{client}/batches/validate")
async def validate_batch(
    client: str, request: Request, version: int = Query(2, ge=1, le=2), service: BatchService = Depends(batches)
) -> dict:
    """A dry run: what the batch file (sent as batchUpdate takes it) would do, storing nothing."""
    settings = service.settings
    async with upload_turn(request, settings.upload_wait_seconds) as turn:
        payload = await read_batch(request, settings.max_batch_bytes, turn)
        result = await run_in_threadpool(dry_run, service.store, service, service.clock, client, version, payload)
    return dry_run_json(result, version)


# -- profiles ---------------------------------------------------------------------------------


def _id_kind(id_kind: str) -> str:
    if id_kind not in ID_KINDS:
        raise NotFound(f"Unknown id kind {id_kind!r}: use one of {', '.join(ID_KINDS)}")
    return id_kind


@router.get("/profiles/{id_kind}/{visitor_id}")
def profile_record(
    id_kind: str, visitor_id: str, client: str, db: Store = Depends(store), config: Settings = Depends(settings),
    at: int = Depends(now),
) -> dict:  # fmt: skip
    """The whole profile with all its ids, which Target's fetch API does not show."""
    return profile_json(live_profile(db, client, _id_kind(id_kind), visitor_id, at, config.lifetime_ms))


@router.delete("/profiles/{id_kind}/{visitor_id}/attributes/{name}")
def delete_attribute(
    id_kind: str, visitor_id: str, name: str, client: str, service: PrivacyService = Depends(privacy)
) -> dict:
    """Delete one attribute (Target has no way to): the profile without it."""
    return profile_json(service.delete_attribute(client, _id_kind(id_kind), visitor_id, name))


@router.get("/clients/{client}/profiles/export")
def profile_export(
    client: str, format: str = "batch", key: str = "thirdPartyId",
    modified_since: str | None = Query(None, alias="modifiedSince"), attributes: str | None = None,
    db: Store = Depends(store), config: Settings = Depends(settings), at: int = Depends(now),
) -> Response:  # fmt: skip
    """The client's live profiles, streamed: a v2 batch file of one key (format=batch) or the
    /api profile records, one JSON object a line (format=ndjson); see export.py."""
    request = export.export_request(client, format, key, modified_since, attributes)
    if request.format == "ndjson":
        pages = export.live_pages(db, request, at, config.lifetime_ms)
        lines = (b"".join(orjson.dumps(profile_json(p)) + b"\n" for p in page) for page in pages)
        return StreamingResponse(lines, media_type="application/x-ndjson")
    name = f"{client}-profiles-{request.key}.txt"
    return StreamingResponse(
        export.batch_file(db, request, at, config.lifetime_ms),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- clients: authentication, quotas, tokens --------------------------------------------------


class ClientChange(BaseModel):
    authRequired: bool | None = None
    dailyRows: int | None = Field(None, ge=0, le=MAX_QUOTA, description="0: no daily limit")
    callsPerMinute: int | None = Field(None, ge=0, le=MAX_QUOTA, description="0: no call rate limit")
    webhookUrl: str | None = Field(None, max_length=2048, description="completion webhooks' URL; null: none")
    newWebhookSecret: bool = Field(False, description="make a new webhook signing secret, shown this once")


class TokenRequest(BaseModel):
    expiresInDays: float | None = Field(None, gt=0, le=MAX_TOKEN_DAYS)
    keepPreviousHours: float = Field(
        0, ge=0, le=MAX_TOKEN_DAYS * 24, description="keep the live tokens this long (rotation)"
    )


@router.get("/clients/{client}")
def client_record(client: str, db: Store = Depends(store), config: Settings = Depends(settings)) -> dict:
    own = db.client_config(client)  # the client code is checked for every route (client_code)
    return {
        "client": client,
        "authRequired": bool(own and own.auth_required),
        "dailyRows": client_limit(config, own, "daily_rows"),
        "callsPerMinute": client_limit(config, own, "calls_per_minute"),
        "webhookUrl": own.webhook_url if own else None,  # never its secret
    }


@router.patch("/clients/{client}")
def change_client(
    client: str, change: ClientChange, service: AuthService = Depends(auth), db: Store = Depends(store),
    config: Settings = Depends(settings),
) -> dict:  # fmt: skip
    """Turn authentication on or off, set the client's own quotas, or its webhook URL (the
    answer then shows a new signing secret, this once)."""
    fields = {"auth_required": change.authRequired, "daily_rows": change.dailyRows,
              "calls_per_minute": change.callsPerMinute}  # fmt: skip
    changes = {k: v for k, v in fields.items() if v is not None}
    url_given = "webhookUrl" in change.model_fields_set
    secret = webhook_changes(config, db.client_config(client), change.webhookUrl, url_given, change.newWebhookSecret)
    service.configure(client, **changes, **secret)
    shown = {"webhookSecret": secret["webhook_secret"]} if secret.get("webhook_secret") else {}
    return {**client_record(client, db, config), **shown}


@router.get("/clients/{client}/webhooks/deliveries")
def webhook_deliveries(client: str, limit: int = Query(100, ge=1, le=1000), db: Store = Depends(store)) -> dict:
    """The client's webhook deliveries, newest first."""
    return {"deliveries": [delivery_json(d) for d in db.deliveries(client, limit)]}


@router.post("/clients/{client}/tokens", status_code=201)
async def create_token(client: str, request: TokenRequest, service: AuthService = Depends(auth)) -> dict:
    """A new token, shown this once; it replaces the client's live tokens unless keepPreviousHours."""
    token, secret = await run_in_threadpool(
        service.create_token, client, request.expiresInDays, request.keepPreviousHours
    )
    return {**token_json(token, service.clock()), "token": secret}


@router.get("/clients/{client}/tokens")
def token_list(client: str, service: AuthService = Depends(auth)) -> dict:
    now = service.clock()
    return {"tokens": [token_json(t, now) for t in service.store.tokens(client)]}


@router.delete("/clients/{client}/tokens/{token_id}")
def revoke_token(client: str, token_id: str, service: AuthService = Depends(auth)) -> dict:
    return token_json(service.revoke(client, token_id), service.clock())


# -- privacy requests -------------------------------------------------------------------------


@router.get("/clients/{client}/privacy/{namespace}/{visitor_id}")
def privacy_access(client: str, namespace: str, visitor_id: str, service: PrivacyService = Depends(privacy)) -> dict:
    """Access request: the whole profile and all its ids (namespace TNTID, THIRDPARTYID or ECID)."""
    profile, merged = service.access(client, namespace, visitor_id)
    return {**profile_json(profile), "mergedTntIds": merged}


@router.delete("/clients/{client}/privacy/{namespace}/{visitor_id}")
def privacy_delete(client: str, namespace: str, visitor_id: str, service: PrivacyService = Depends(privacy)) -> dict:
    """Delete request: the profile, its links, and its lines in failed-row reports."""
    deletion = service.delete(client, namespace, visitor_id)
    return {
        "deleted": {"client": deletion.client, "ids": deletion.ids},
        "profileFound": deletion.profile_found,
        "failedRowsRemoved": deletion.failed_rows_removed,
    }
