"""Reading a batch off the wire: a raw body (any content type, never parsed as a form), or a
multipart upload with one file; either may be gzip-compressed. Size limits hold before and
after decompression."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..errors import BadRequest, Busy, Refused, TooLarge, UnsupportedMediaType
from .errors import RETRY_AFTER_SECONDS

GZIP_MAGIC = b"\x1f\x8b"
SMALL_BODY = 1024 * 1024  # a body declared this small is read at once, whatever else is being read


async def read_batch(request: Request, limit: int, turn: UploadTurn) -> bytes | bytearray:
    body: bytes | bytearray = await read_capped(request, limit, _too_large("The batch", limit))
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = await _gunzip(body, limit, turn)
    elif encoding not in ("identity", ""):
        raise UnsupportedMediaType(
            f"Unsupported Content-Encoding {encoding!r}: send the batch plain or gzip-compressed"
        )
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        body = await _single_file(request, body)
    # A batch file always starts with `batch=`, so gzip's magic number can only mean a .gz file.
    if body.startswith(GZIP_MAGIC):
        body = await _gunzip(body, limit, turn)
    return body


class UploadTurn:
    """A request's turn at reading and storing a large batch body. Each may be 50 MB, or inflate
    to that, so only `slots` turns run at once, and the others wait unread in their connections;
    one that waits longer than wait_seconds (slow uploads can hold the turns) is refused as
    Busy, to try again. A body declared under SMALL_BODY takes a turn only if it turns out compressed."""

    def __init__(self, slots: asyncio.Semaphore, wait_seconds: float):
        self.slots, self.wait_seconds = slots, wait_seconds
        self.held = False

    async def take(self) -> None:
        if self.held:
            return
        try:
            await asyncio.wait_for(self.slots.acquire(), self.wait_seconds)
        except TimeoutError:
            raise Busy(
                "The service is receiving as many large batches as it takes at once "
                "(PROFILESTORE_MAX_CONCURRENT_UPLOADS); try again in a few seconds",
                retry_after=RETRY_AFTER_SECONDS,
            ) from None
        self.held = True

    def release(self) -> None:
        if self.held:
            self.slots.release()
            self.held = False


@asynccontextmanager
async def upload_turn(request: Request, wait_seconds: float) -> AsyncIterator[UploadTurn]:
    """The request's UploadTurn, taken at once unless its body is declared small."""
    turn = UploadTurn(request.app.state.upload_slots, wait_seconds)
    declared = request.headers.get("content-length", "")
    if not (declared.isdigit() and int(declared) < SMALL_BODY):
        await turn.take()
    try:
        yield turn
    finally:
        turn.release()


def _too_large(what: str, limit: int) -> TooLarge:
    return TooLarge(f"{what} is {limit:,} bytes or more; it must be under {limit:,} bytes")


async def read_capped(request: Request, refuse_at: int, refusal: Refused) -> bytearray:
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


async def _gunzip(data: bytes | bytearray, limit: int, turn: UploadTurn) -> bytes:
    """Every member of the gzip data, as gzip(1) reads them (`cat a.gz b.gz`, pigz and bgzip
    write several), inflated in the request's turn; anything after the last member is refused,
    never silently dropped."""
    await turn.take()
    members: list[bytes] = []
    size, rest = 0, data
    while rest:
        if members and not rest.startswith(GZIP_MAGIC):
            raise BadRequest(f"{len(rest):,} bytes follow the end of the gzip data; send the gzip file alone")
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            members.append(inflater.decompress(rest, limit - size))
        except zlib.error as e:
            raise BadRequest(f"The body is not valid gzip: {e}") from None
        size += len(members[-1])
        if size >= limit:
            raise _too_large("The batch after decompression", limit)
        if not inflater.eof:
            raise BadRequest("The gzip stream is truncated")
        rest = inflater.unused_data
    return members[0] if len(members) == 1 else b"".join(members)


async def _single_file(request: Request, body: bytes | bytearray) -> bytes:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1).parse()
    except MultiPartException as e:
        raise BadRequest(f"Multipart upload: {e.message}; send one file part holding the batch") from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise BadRequest("Multipart upload has no file part; send the batch as one file, e.g. curl -F file=@batch.txt")
    try:
        return await files[0].read()
    finally:
        await form.close()
