"""Target's Profile Fetch API, in Target's JSON."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..config import Settings
from ..profiles import live_profile, target_json
from ..store.base import Store
from .deps import now, profile_api_token, settings, store

router = APIRouter(dependencies=[Depends(profile_api_token)])


@router.get("/rest/v1/profiles/thirdPartyId/{third_party_id}")
def fetch_by_third_party_id(third_party_id: str, client: str = "", db: Store = Depends(store), config: Settings = Depends(settings), at: int = Depends(now)) -> JSONResponse:
    return _fetch(db, config, at, client, "thirdPartyId", third_party_id)


@router.get("/rest/v1/profiles/marketingCloudVisitorId/{mcvid}")
def fetch_by_mcvid(mcvid: str, client: str = "", db: Store = Depends(store), config: Settings = Depends(settings), at: int = Depends(now)) -> JSONResponse:
    return _fetch(db, config, at, client, "marketingCloudVisitorId", mcvid)


@router.get("/rest/v1/profiles/{tnt_id}")
def fetch_by_tnt_id(tnt_id: str, client: str = "", db: Store = Depends(store), config: Settings = Depends(settings), at: int = Depends(now)) -> JSONResponse:
    return _fetch(db, config, at, client, "tntId", tnt_id)


def _fetch(db: Store, config: Settings, at: int, client: str, id_kind: str, visitor_id: str) -> JSONResponse:
    if not client:
        return JSONResponse({"status": 400, "message": "The client query parameter is required"}, 400)
    profile = live_profile(db, client, id_kind, visitor_id, at, config.lifetime_ms)
    return JSONResponse(target_json(profile, visitor_id))
