"""Target's Profile Fetch API, in Target's JSON."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..profiles import live_profile, target_json
from .deps import profile_api_token

router = APIRouter(dependencies=[Depends(profile_api_token)])


@router.get("/rest/v1/profiles/thirdPartyId/{visitor_id}")
async def fetch_by_third_party_id(visitor_id: str, request: Request, client: str = "") -> Response:
    return _fetch(request, client, "thirdPartyId", visitor_id)


@router.get("/rest/v1/profiles/marketingCloudVisitorId/{visitor_id}")
async def fetch_by_mcvid(visitor_id: str, request: Request, client: str = "") -> Response:
    return _fetch(request, client, "marketingCloudVisitorId", visitor_id)


@router.get("/rest/v1/profiles/{visitor_id}")
async def fetch_by_tnt_id(visitor_id: str, request: Request, client: str = "") -> Response:
    return _fetch(request, client, "tntId", visitor_id)


def _fetch(request: Request, client: str, id_kind: str, visitor_id: str) -> Response:
    """Runs on the event loop, not in a thread: the read is one indexed SQLite lookup of a few
    microseconds, which costs less than handing it to a thread and back."""
    if not client:
        return Response(orjson.dumps({"status": 400, "message": "The client query parameter is required"}), 400,
                        media_type="application/json")  # fmt: skip
    state = request.app.state
    profile = live_profile(state.store, client, id_kind, visitor_id, state.clock(), state.settings.lifetime_ms)
    return Response(orjson.dumps(target_json(profile, visitor_id)), media_type="application/json")
