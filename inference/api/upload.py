"""Reading an inspection request: the image bytes (multipart or raw body, within the size
limit) and the part's metadata (form fields or query parameters), checked field by field.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from defectlens.errors import InputError, TooLarge, UnsupportedFormat
from defectlens.inference.api.guard import MULTIPART_SLACK, too_large
from defectlens.inference.service import PartMetadata

METADATA_FIELDS = tuple(PartMetadata.model_fields)
FILE_FIELDS = ("file", "image")


def part_metadata(
    form: Mapping[str, str], query: Mapping[str, str], idempotency_key: str | None = None
) -> PartMetadata:
    """Metadata from form fields, else query parameters (the `Idempotency-Key` header, when
    given, is the part's idempotency key); an `InputError` naming the field."""
    values: dict[str, str] = {}
    if idempotency_key is not None:
        values["idempotency_key"] = idempotency_key
    for name in METADATA_FIELDS:
        value = form.get(name) or query.get(name)
        if value is not None and value.strip() != "":
            if len(value) > 256:
                raise InputError(f"part metadata: {name} is {len(value)} characters, too long")
            values[name] = value.strip()
    if "station" not in values:
        raise InputError(
            "station is required: send it as a form field or query parameter "
            "(e.g. /v1/inspect?station=line1-cam1)"
        )
    try:
        return PartMetadata.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(item) for item in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise InputError(f"part metadata: {problems}") from None


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole request body, or `TooLarge` as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """(image bytes, form fields) of an inspection request.

    Accepts `multipart/form-data` with the image in a `file` (or `image`) part, or the image
    itself as the body with `Content-Type: image/*` or `application/octet-stream`.
    """
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        body = await read_limited(request, max_bytes + MULTIPART_SLACK)
        return await _parse_multipart(request, body, max_bytes)
    if media_type.startswith("image/") or media_type == "application/octet-stream":
        return await read_limited(request, max_bytes), {}
    raise UnsupportedFormat(
        f"Content-Type {content_type or '(none)'!r} is not accepted: send the image as "
        "multipart/form-data (field 'file') or as the body with Content-Type image/* or "
        "application/octet-stream"
    )


async def _parse_multipart(
    request: Request, body: bytes, max_bytes: int
) -> tuple[bytes, dict[str, str]]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=2, max_fields=20)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError(f"multipart body: {exc.message}") from None
    try:
        fields: dict[str, str] = {}
        image: bytes | None = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name in FILE_FIELDS and image is None:
                    image = await value.read()
            else:
                fields[name] = value
    finally:
        await form.close()
    if image is None:
        raise InputError("multipart body has no image: put it in a file field named 'file'")
    if len(image) > max_bytes:
        raise TooLarge(too_large(len(image), max_bytes))
    return image, fields
