"""Target's Single Profile Update API: /m2/{client}/profile/update, GET or POST, in Target's XML."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..errors import BadRequest, TooLarge, UnsupportedMediaType
from ..updates import UpdateService
from . import xml
from .body import read_capped
from .deps import profile_api_token, updates
from .params import parse_params

router = APIRouter(dependencies=[Depends(profile_api_token)])
PROFILE_PREFIX = "profile."
ID_PARAMS = {"mboxPC": "tntId", "mbox3rdPartyId": "thirdPartyId"}
FORM = "application/x-www-form-urlencoded"


@router.api_route("/m2/{client}/profile/update", methods=["GET", "POST"])
async def update(client: str, request: Request, service: UpdateService = Depends(updates)) -> Response:
    params = parse_params(await _request_params(request, service))
    ids = [(ID_PARAMS[name], value) for name, value in params if name in ID_PARAMS]
    if len({kind for kind, _ in ids}) != 1:
        raise BadRequest("Give the visitor as exactly one of mboxPC or mbox3rdPartyId")
    id_kind, visitor_id = ids[-1]
    if not visitor_id:
        raise BadRequest(f"Parameter {'mboxPC' if id_kind == 'tntId' else 'mbox3rdPartyId'} is empty")
    values = {name[len(PROFILE_PREFIX) :]: value for name, value in params if name.startswith(PROFILE_PREFIX)}
    if not values:
        raise BadRequest("No profile.NAME=VALUE parameters: nothing to update")
    await run_in_threadpool(service.update_profile, client, id_kind, visitor_id, values)
    return xml.xml("<response><success>true</success><message>Request successfully submitted</message></response>")


async def _request_params(request: Request, service: UpdateService) -> bytes:
    """The query string, and for POST a form body too, within Target's request size limits."""
    query = request.scope["query_string"]
    is_post = request.method == "POST"
    limit = service.settings.max_update_post_bytes if is_post else service.settings.max_update_get_bytes
    too_large = TooLarge(f"The request is over {limit:,} bytes, the limit for {request.method} requests")
    if len(query) > limit:
        raise too_large
    if not is_post:
        return query
    body = await read_capped(request, limit - len(query) + 1, too_large)
    content_type = request.headers.get("content-type", FORM).split(";")[0].strip().lower()
    if body and content_type != FORM:
        raise UnsupportedMediaType(f"Send the parameters in the query string or as {FORM}, not {content_type}")
    return query + b"&" + body if body else query
