"""Read an image upload (multipart field or raw body) with a hard size limit and deadlines.

Each connection has its own read deadlines (``ReadDeadlines``: total, idle gap, minimum rate
after a grace period), so a slow client is closed (408) without holding up anyone else; bytes
held while arriving count against the station's ``UploadBudget`` (503 when full).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from inspection.service.errors import RequestError
from inspection.station.limits import ReadDeadlines, UploadBudget

FILE_FIELDS = ("image", "file")
TEXT_FIELDS = ("product", "part_id", "request_id")
_MULTIPART_OVERHEAD = 64 * 1024
_RAW_TYPES = ("application/octet-stream",)


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


_CLOSED = {
    "deadline": "the upload did not arrive within {total:g} s; send it again",
    "idle": "no upload bytes arrived for {idle:g} s; connection closed",
    "slow": "the upload arrived slower than {rate:.0f} bytes/s; connection closed",
}


async def read_upload(
    request: Request,
    max_bytes: int,
    deadlines: ReadDeadlines | None = None,
    *,
    budget: UploadBudget | None = None,
    on_closed: Callable[[str], None] | None = None,
) -> Upload:
    """The image bytes and any form fields; 413/415/400/422 with a clear message otherwise. A body
    that misses its ``deadlines`` gets 408 (``Connection: close``), one that would overflow
    ``budget`` 503; ``on_closed`` is told why ("deadline", "idle", "slow", "memory")."""
    deadlines = deadlines or ReadDeadlines()
    reader = _BodyReader(request, deadlines, budget or UploadBudget(1 << 62))
    try:
        return await _read_upload(request, max_bytes, reader)
    except UploadClosed as exc:
        if on_closed is not None:
            on_closed(exc.reason)
        raise
    finally:
        reader.release()


class _BodyReader:
    """Reads a request body chunk by chunk under its deadlines and the upload budget."""

    def __init__(self, request: Request, deadlines: ReadDeadlines, budget: UploadBudget) -> None:
        self.request, self.deadlines, self.budget = request, deadlines, budget
        self.held = 0

    async def read(self, limit: int, max_bytes: int) -> bytes:
        too_big = RequestError(413, _too_large(max_bytes))
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = bytearray()
        chunks = self.request.stream().__aiter__()
        while True:
            by, reason = self.deadlines.next_chunk_by(started, loop.time(), len(body))
            try:
                async with asyncio.timeout_at(by):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return bytes(body)
            except TimeoutError as exc:
                raise self._closed(reason) from exc
            if len(body) + len(chunk) > limit:
                raise too_big
            if not self.budget.take(len(chunk)):
                raise UploadClosed(
                    503,
                    "the station's upload memory is full; retry shortly with the same request_id",
                    "memory",
                    {"Retry-After": "1"},
                )
            self.held += len(chunk)
            body += chunk

    def release(self) -> None:
        self.budget.release(self.held)
        self.held = 0

    def _closed(self, reason: str) -> UploadClosed:
        d = self.deadlines
        message = _CLOSED[reason].format(total=d.total_s, idle=d.idle_s, rate=d.min_rate)
        return UploadClosed(408, message, reason, {"Connection": "close"})


class UploadClosed(RequestError):
    """An upload refused while arriving; ``reason``: "deadline", "idle", "slow" or "memory"."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str]) -> None:
        super().__init__(status, message, headers)
        self.reason = reason


async def _read_upload(request: Request, max_bytes: int, reader: _BodyReader) -> Upload:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        body = await reader.read(max_bytes + _MULTIPART_OVERHEAD, max_bytes)
        return await _parse_multipart(request, body, max_bytes)
    if not _is_image_type(content_type):
        shown = content_type or "none"
        raise RequestError(
            415,
            f"unsupported content type {shown[:80]!r}: send multipart/form-data with an "
            "'image' file field, or the raw image with an image/* or "
            "application/octet-stream content type",
        )
    body = await reader.read(max_bytes, max_bytes)
    return Upload(body)


async def _parse_multipart(request: Request, body: bytes, max_bytes: int) -> Upload:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(
        request.headers, stream(), max_files=4, max_fields=16, max_part_size=4096
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(400, f"malformed multipart body: {exc.message}") from exc
    try:
        files = [form.get(name) for name in FILE_FIELDS]
        upload = next((f for f in files if isinstance(f, UploadFile)), None)
        if upload is None:
            raise RequestError(422, "multipart upload has no file field named 'image'")
        part_type = (upload.content_type or "").split(";", 1)[0].strip().lower()
        if part_type and not _is_image_type(part_type):
            raise RequestError(
                415,
                f"the 'image' part has content type {part_type[:80]!r}; "
                "expected image/* or application/octet-stream",
            )
        data = await upload.read()
        if len(data) > max_bytes:
            raise RequestError(413, _too_large(max_bytes))
        fields = {k: v for k in TEXT_FIELDS if isinstance(v := form.get(k), str) and v}
        return Upload(data, _clean_name(upload.filename), fields)
    finally:
        await form.close()


def _too_large(max_bytes: int) -> str:
    """The 413 message: the limit and the key that raises it."""
    return (
        f"upload too large: the limit is {max_bytes} bytes; raise max_upload_bytes in the "
        "station config to accept larger images"
    )


def _is_image_type(content_type: str) -> bool:
    return content_type.startswith("image/") or content_type in _RAW_TYPES


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    name = "".join(c for c in name if c.isprintable())
    return name.replace("\\", "/").rsplit("/", 1)[-1][:200] or None
