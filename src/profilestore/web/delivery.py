"""The profile part of Target's Delivery API: POST /rest/v1/delivery.

This service decides no activities: it writes the request's profileParameters to the visitor's
profile, links the visitor's ids, and answers a valid Delivery response that echoes every mbox
and view with no offers."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..clients import resolve_client
from ..errors import BadRequest, TooLarge
from ..model import NUL_PROBLEM, Profile, storable
from ..profiles import VisitorIds
from ..updates import UpdateService
from .body import read_capped
from .deps import read, updates

router = APIRouter()
# Where Target takes profileParameters from, and what each section holds.
SECTIONS = {"execute": ("pageLoad", "mboxes"), "prefetch": ("pageLoad", "views", "mboxes")}
MAX_ITEMS = 50  # Target: at most 50 mboxes (or views) per request
SESSION_ID = re.compile(r"[!-~]{1,128}")  # Target: 1-128 printable characters, no space
SESSION_ID_FORBIDDEN = set("?{}/")


@router.post("/rest/v1/delivery")
async def delivery(
    request: Request,
    client: str = "",
    sessionId: str = "",
    imsOrgId: str = "",
    service: UpdateService = Depends(updates),
) -> JSONResponse:
    settings = service.settings
    limit = settings.max_delivery_bytes
    raw = await read_capped(request, limit, TooLarge(f"The request is {limit:,} bytes or more; the limit is {limit:,}"))
    body = _json_object(raw)
    host = request.headers.get("host", "")
    client = await read(request, resolve_client, settings, service.store, client, imsOrgId, host)  # may ask the store
    if not SESSION_ID.fullmatch(sessionId) or SESSION_ID_FORBIDDEN & set(sessionId):
        raise BadRequest("sessionId must be 1 to 128 printable characters without space, '?', '{', '}' or '/'")
    ids = _visitor_ids(body.get("id"))
    values = _profile_parameters(body, settings.max_delivery_params, settings.max_delivery_value)
    profile = await run_in_threadpool(service.update_visitor, client, ids, values)
    edge_host = urlsplit(settings.public_url).netloc or request.headers.get("host", "")
    return JSONResponse(_response(body, client, profile, edge_host))


def _json_object(raw: bytes | bytearray) -> dict:
    try:  # orjson refuses NaN and Infinity (not JSON), lone surrogates, and nesting over 1,024 deep
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"The body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    return body


def _visitor_ids(section) -> VisitorIds:
    section = section or {}
    if not isinstance(section, dict):
        raise BadRequest("id must be an object")
    values = {}
    for name in ("tntId", "thirdPartyId", "marketingCloudVisitorId"):
        value = section.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"id.{name} must be a string")
        if value and not storable(value):
            raise BadRequest(f"id.{name}: {NUL_PROBLEM}")
        values[name] = value or None
    return VisitorIds(values["tntId"], values["thirdPartyId"], values["marketingCloudVisitorId"])


def _items(body: dict):
    """(path, item) for every pageLoad, mbox and view of the request, in request order."""
    for top, keys in SECTIONS.items():
        section = body.get(top) or {}
        if not isinstance(section, dict):
            raise BadRequest(f"{top} must be an object")
        for key in keys:
            value = section.get(key)
            if key == "pageLoad":
                if value is not None:
                    yield f"{top}.pageLoad", value
                continue
            if not isinstance(value or [], list):
                raise BadRequest(f"{top}.{key} must be an array")
            if len(value or []) > MAX_ITEMS:
                raise BadRequest(f"{top}.{key}: size must be between 0 and {MAX_ITEMS}")
            for i, item in enumerate(value or []):
                yield f"{top}.{key}[{i}]", item


def _profile_parameters(body: dict, max_count: int, max_value: int) -> dict[str, str]:
    values: dict[str, str] = {}
    count = 0
    for path, item in _items(body):
        params = item.get("profileParameters") if isinstance(item, dict) else None
        if params is None:
            continue
        if not isinstance(params, dict):
            raise BadRequest(f"{path}.profileParameters must be an object")
        for name, value in params.items():
            where = f"{path}.profileParameters.{name[:60]}"
            if value is None:
                raise BadRequest(f"{where}: the value cannot be null")
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)):
                value = str(value)
            elif not isinstance(value, str):
                raise BadRequest(f"{where}: the value must be a string")
            if len(value) > max_value:
                raise BadRequest(f"{where}: the value is {len(value)} characters, the limit is {max_value}")
            if not (storable(name) and storable(value)):
                raise BadRequest(f"{where}: {NUL_PROBLEM}")
            values[name] = value
            count += 1
    if count > max_count:
        raise BadRequest(f"profileParameters: {count} in this request, the limit is {max_count}")
    return values


def _response(body: dict, client: str, profile: Profile, edge_host: str) -> dict:
    ids = {"tntId": profile.tnt_id}
    if profile.third_party_id:
        ids["thirdPartyId"] = profile.third_party_id
    if profile.mcvid:
        ids["marketingCloudVisitorId"] = profile.mcvid
    if isinstance(body.get("id"), dict) and body["id"].get("customerIds"):
        ids["customerIds"] = body["id"]["customerIds"]
    answer = {
        "status": 200,
        "requestId": body.get("requestId") or uuid.uuid4().hex,
        "client": client,
        "id": ids,
        "edgeHost": edge_host,
    }
    for top, keys in SECTIONS.items():
        section = body.get(top)
        if section:
            answer[top] = {key: _echo(key, section[key]) for key in keys if section.get(key) is not None}
    return answer


def _echo(key: str, value):
    """The answer for a pageLoad, or each mbox or view: named as asked, with no offers."""
    if key == "pageLoad":
        return {}
    return [
        {field: item[field] for field in ("index", "name") if isinstance(item, dict) and field in item}
        for item in value
    ]
