"""The Segment Tracking API: /v1/track, /identify, /page, /screen, /group, /alias, /batch."""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from masar.capture.service import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, CaptureService
from masar.errors import InvalidInput, MasarError, PayloadTooLarge, UnsupportedMediaType
from masar.model.events import BatchRequest, CaptureResponse, TrackMessage

router = APIRouter(tags=["capture"])

_JSON_TYPES = ("application/json", "text/plain", "")  # text/plain: sendBeacon without a CORS preflight


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _write_key(request: Request, body: dict[str, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput("the Authorization header is not valid Basic auth", code="invalid_authorization") from None
        key = decoded.split(":", 1)[0]
        if key:
            return key
    key = body.get("writeKey")
    return key if isinstance(key, str) and key else None


async def _read_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise UnsupportedMediaType(f"send JSON (Content-Type: application/json), not {content_type!r}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit * 4:
        raise PayloadTooLarge(f"the request is larger than {limit // 1024} KB", code="request_too_large")
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)  # bounded: a zip bomb stops here
        except zlib.error:
            raise InvalidInput("the gzip body could not be decompressed", code="invalid_gzip") from None
        if not inflater.eof and len(raw) <= limit:  # cut off before the end (and its CRC check)
            raise InvalidInput("the gzip body is truncated", code="invalid_gzip")
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    if len(raw) > limit:
        raise PayloadTooLarge(f"the request is larger than {limit // 1024} KB", code="request_too_large")
    return raw


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    return body


async def _capture(request: Request, *, batch: bool, forced_type: str | None) -> Response:
    service: CaptureService = request.app.state.capture
    raw = await _read_body(request, MAX_REQUEST_BYTES if batch else MAX_MESSAGE_BYTES)
    body = _parse(raw)
    source = service.source_for_key(_write_key(request, body))
    try:
        if batch:
            messages = body.get("batch")
            if not isinstance(messages, list):
                raise InvalidInput("a batch request needs a `batch` list of messages", code="invalid_batch")
            if len(messages) > MAX_BATCH_MESSAGES:
                raise PayloadTooLarge(
                    f"a batch may hold at most {MAX_BATCH_MESSAGES} messages, got {len(messages)}",
                    code="batch_too_large",
                )
            defaults = {k: body[k] for k in ("context", "integrations", "sentAt") if k in body}
        else:
            messages = [body]
            defaults = {}
    except MasarError as exc:
        service.store.quarantine(
            source.id, [{"code": exc.code, "message": exc.message, "payload": raw[:65536].decode("utf-8", "replace")}],
            origin=request.url.path,
        )
        raise
    service.check_rate(source, len(messages))
    client_ip = request.client.host if request.client else None
    record, rejected = service.normalize(
        source, messages, defaults=defaults, request_ip=client_ip, body_bytes=len(raw), forced_type=forced_type
    )
    result = await service.capture(record, rejected)
    if messages and len(rejected) == len(messages):
        only = rejected[0] if len(rejected) == 1 else None
        error = {
            "code": only["code"] if only else "all_messages_rejected",
            "message": only["message"] if only else f"all {len(rejected)} messages were rejected",
            "rejected": result.rejected,
        }
        return _json(400, {"error": error})
    return _json(200, result.to_dict())


_KINDS = ("track", "identify", "page", "screen", "group", "alias")
_TARGETS: dict[str, tuple[bool, str | None]] = {"/v1/batch": (True, None)} | {f"/v1/{k}": (False, k) for k in _KINDS}


async def capture_asgi(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """Serve a capture POST straight from the ASGI scope; False if the request is not one.

    The same ``_capture`` as the routes below, without the framework's routing, dependency and
    wrapper layers between the middleware and the endpoint: they were about an eighth of the
    server's time per request, and capture is the path that has to be fast. The routes stay for
    the OpenAPI document (and serve if this is not installed); ``app.CaptureCors`` installs it.
    """
    target = _TARGETS.get(scope["path"]) if scope["method"] == "POST" else None
    if target is None:
        return False
    try:
        response = await _capture(Request(scope, receive), batch=target[0], forced_type=target[1])
    except MasarError as exc:  # as the app's MasarError handler answers it
        response = _json(exc.status, exc.to_dict())
    await response(scope, receive, send)
    return True


_RESPONSES = {200: {"model": CaptureResponse}, 400: {}, 401: {}, 413: {}, 415: {}, 429: {}}


@router.post("/v1/batch", responses=_RESPONSES, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}})  # fmt: skip
async def capture_batch(request: Request) -> Response:
    """Up to 2,500 messages (500 KB) in one request; bad messages are rejected one by one."""
    return await _capture(request, batch=True, forced_type=None)


def _single(kind: str):
    async def endpoint(request: Request) -> Response:
        return await _capture(request, batch=False, forced_type=kind)

    endpoint.__name__ = f"capture_{kind}"
    endpoint.__doc__ = f"One `{kind}` message (at most {MAX_MESSAGE_BYTES // 1024} KB)."
    return endpoint


for _kind in _KINDS:
    router.add_api_route(
        f"/v1/{_kind}",
        _single(_kind),
        methods=["POST"],
        responses=_RESPONSES,
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}
        if _kind != "track"
        else {"requestBody": {"content": {"application/json": {"schema": TrackMessage.model_json_schema()}}}},
    )
