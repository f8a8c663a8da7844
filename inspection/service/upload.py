"""Read an image upload (multipart field or raw body) with a hard size limit and a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from inspection.service.errors import RequestError

FILE_FIELDS = ("image", "file")
TEXT_FIELDS = ("product", "part_id", "request_id")
_MULTIPART_OVERHEAD = 64 * 1024
_RAW_TYPES = ("application/octet-stream",)


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload(request: Request, max_bytes: int, timeout_s: float = 30.0) -> Upload:
    """The image bytes and any form fields; 413/415/400/422 with a clear message otherwise.

    The whole body must arrive within ``timeout_s`` (slow clients get 408).
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_upload(request, max_bytes)
    except TimeoutError as exc:
        raise RequestError(
            408, f"the upload did not arrive within {timeout_s:g} s; send it again"
        ) from exc


async def _read_upload(request: Request, max_bytes: int) -> Upload:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        body = await _read_limited(request, max_bytes + _MULTIPART_OVERHEAD, max_bytes)
        return await _parse_multipart(request, body, max_bytes)
    if not _is_image_type(content_type):
        shown = content_type or "none"
        raise RequestError(
            415,
            f"unsupported content type {shown[:80]!r}: send multipart/form-data with an "
            "'image' file field, or the raw image with an image/* or "
            "application/octet-stream content type",
        )
    body = await _read_limited(request, max_bytes, max_bytes)
    return Upload(body)


async def _read_limited(request: Request, limit: int, max_bytes: int) -> bytes:
    too_big = RequestError(413, f"upload too large: the limit is {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


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
            raise RequestError(413, f"upload too large: the limit is {max_bytes} bytes")
        fields = {k: v for k in TEXT_FIELDS if isinstance(v := form.get(k), str) and v}
        return Upload(data, _clean_name(upload.filename), fields)
    finally:
        await form.close()


def _is_image_type(content_type: str) -> bool:
    return content_type.startswith("image/") or content_type in _RAW_TYPES


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    name = "".join(c for c in name if c.isprintable())
    return name.replace("\\", "/").rsplit("/", 1)[-1][:200] or None
