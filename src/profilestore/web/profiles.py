"""Target's Profile Fetch API, in Target's JSON.

These are plain Starlette routes, not FastAPI ones: a fetch is one indexed SQLite read of a few
microseconds, and FastAPI's per-request parameter and dependency machinery cost several times
that (bench/reads: about a quarter of each request). They go through the same middleware and
error handlers. They never hop to a thread for the read: SQLite's runs on the event loop (see
deps.read), PostgreSQL's is awaited there on asyncio connections (Store.profile_async), since
a hop to a thread and back through the GIL cost more than the read itself."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..profiles import live_profile_async
from .deps import check_caller
from .wire import target_json

PATHS = {
    "/rest/v1/profiles/thirdPartyId/{visitor_id}": "thirdPartyId",
    "/rest/v1/profiles/marketingCloudVisitorId/{visitor_id}": "marketingCloudVisitorId",
    "/rest/v1/profiles/{visitor_id}": "tntId",
}


def _json(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _fetcher(id_kind: str):
    async def fetch(request: Request) -> Response:
        client = request.query_params.get("client", "")
        if not client:
            return _json({"status": 400, "message": "The client query parameter is required"}, 400)
        state = request.app.state
        await check_caller(request, client)
        visitor_id = request.path_params["visitor_id"]
        profile = await live_profile_async(
            state.store, client, id_kind, visitor_id, state.clock(), state.settings.lifetime_ms
        )
        return _json(target_json(profile, visitor_id))

    return fetch


routes = [Route(path, _fetcher(kind), methods=["GET"]) for path, kind in PATHS.items()]
