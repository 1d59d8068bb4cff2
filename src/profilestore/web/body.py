"""Reading a batch off the wire: a raw body (any content type, never parsed as a form), or a
multipart upload with one file; either may be gzip-compressed. Size limits hold before and
after decompression."""

from __future__ import annotations

import asyncio
import zlib
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..errors import Rejected

GZIP_MAGIC = b"\x1f\x8b"
SMALL_BODY = 1024 * 1024  # a body declared this small is read at once, whatever else is being read


async def read_batch(request: Request, limit: int) -> bytes | bytearray:
    body = await read_capped(request, limit, _too_large("The batch", limit))
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, limit)
    elif encoding not in ("identity", ""):
        raise Rejected(415, f"Unsupported Content-Encoding {encoding!r}: send the batch plain or gzip-compressed")
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        body = await _single_file(request, body)
    # A batch file always starts with `batch=`, so gzip's magic number can only mean a .gz file.
    if body.startswith(GZIP_MAGIC):
        body = _gunzip(body, limit)
    return body


@asynccontextmanager
async def upload_slot(request: Request, slots: int, wait_seconds: float) -> AsyncIterator[None]:
    """A turn to read a large body: each may be 50 MB, so only `slots` are read at once, and
    the others wait unread in their connections. One that waits longer than wait_seconds
    (slow uploads hold the turns) is answered 503, to try again."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) < SMALL_BODY:
        yield
        return
    try:
        await asyncio.wait_for(request.app.state.upload_slots.acquire(), wait_seconds)
    except TimeoutError:
        raise Rejected(503, f"The service is receiving as many large batches as it takes at once ({slots}, "
                            "PROFILESTORE_MAX_CONCURRENT_UPLOADS); try again in a few seconds",
                       {"Retry-After": "5"}) from None  # fmt: skip
    try:
        yield
    finally:
        request.app.state.upload_slots.release()


def _too_large(what: str, limit: int) -> Rejected:
    return Rejected(413, f"{what} is {limit:,} bytes or more; it must be under {limit:,} bytes")


async def read_capped(request: Request, refuse_at: int, refusal: Rejected) -> bytearray:
    """The request body, refused as soon as it reaches `refuse_at` bytes (never read whole).
    Not copied into bytes at the end: that copy of up to 50 MB would hold the event loop."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) >= refuse_at:
        raise refusal
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) >= refuse_at:
            raise refusal
    return body


def _gunzip(data: bytes, limit: int) -> bytes:
    """Every member of the gzip data, as gzip(1) reads them (`cat a.gz b.gz`, pigz and bgzip
    write several); anything after the last member is refused, never silently dropped."""
    members: list[bytes] = []
    size, rest = 0, data
    while rest:
        if members and not rest.startswith(GZIP_MAGIC):
            raise Rejected(400, f"{len(rest):,} bytes follow the end of the gzip data; send the gzip file alone")
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            members.append(inflater.decompress(rest, limit - size))
        except zlib.error as e:
            raise Rejected(400, f"The body is not valid gzip: {e}") from None
        size += len(members[-1])
        if size >= limit:
            raise _too_large("The batch after decompression", limit)
        if not inflater.eof:
            raise Rejected(400, "The gzip stream is truncated")
        rest = inflater.unused_data
    return b"".join(members)


async def _single_file(request: Request, body: bytes) -> bytes:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1).parse()
    except MultiPartException as e:
        raise Rejected(400, f"Multipart upload: {e.message}; send one file part holding the batch") from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise Rejected(400, "Multipart upload has no file part; send the batch as one file, e.g. curl -F file=@batch.txt")
    try:
        return await files[0].read()
    finally:
        await form.close()
