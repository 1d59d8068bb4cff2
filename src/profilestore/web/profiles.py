"""Target's Profile Fetch API, in Target's JSON."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..profiles import not_found_json, target_json
from ..store.base import Store
from .deps import store

router = APIRouter()


@router.get("/rest/v1/profiles/thirdPartyId/{third_party_id}")
def fetch_by_third_party_id(third_party_id: str, client: str = "", db: Store = Depends(store)) -> JSONResponse:
    return _fetch(db, client, "thirdPartyId", third_party_id)


@router.get("/rest/v1/profiles/marketingCloudVisitorId/{mcvid}")
def fetch_by_mcvid(mcvid: str, client: str = "", db: Store = Depends(store)) -> JSONResponse:
    return _fetch(db, client, "marketingCloudVisitorId", mcvid)


@router.get("/rest/v1/profiles/{tnt_id}")
def fetch_by_tnt_id(tnt_id: str, client: str = "", db: Store = Depends(store)) -> JSONResponse:
    return _fetch(db, client, "tntId", tnt_id)


def _fetch(db: Store, client: str, id_kind: str, visitor_id: str) -> JSONResponse:
    if not client:
        return JSONResponse({"status": 400, "message": "The client query parameter is required"}, 400)
    profile = db.profile(client, id_kind, visitor_id)
    if profile is None:
        return JSONResponse(not_found_json(client, id_kind, visitor_id), 404)
    return JSONResponse(target_json(profile, visitor_id))
