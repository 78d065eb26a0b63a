"""``POST /api/v1/query``: any analysis as its query JSON, authorised by a secret key.

Thin on purpose: authenticate, parse, hand the query to the store's engine, return its
``to_dict()``. Errors are MasarErrors, shaped by the app's one handler.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from masar.engine import parse_query
from masar.engine.templates import expand_template
from masar.errors import Forbidden, InvalidInput, Unauthorized
from masar.store.base import ApiKey
from masar.web import auth

router = APIRouter(prefix="/api/v1", tags=["query"])
MAX_QUERY_BYTES = 256 * 1024


def secret_key(request: Request) -> ApiKey:
    """A secret key (``Authorization: Bearer KEY``), or the dashboard's signed-in session with its
    CSRF header: a session reads every source, as a key made without ``--source`` does."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header and request.cookies.get(auth.SESSION_COOKIE):
        user = auth.require(request, "viewer")
        if request.method != "GET":
            auth.check_csrf(request, None)
        return ApiKey(id=0, name=f"session of {user.email}", prefix="", source_id=None)
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send a secret key as 'Authorization: Bearer KEY' (`masar keys create` makes one)",
                           code="missing_api_key")  # fmt: skip
    key = request.app.state.store.verify_api_key(secret.strip())
    if key is None:
        raise Unauthorized("the secret key is not valid or was revoked", code="invalid_api_key")
    return key


SecretKey = Annotated[ApiKey, Depends(secret_key)]


async def json_body(request: Request, what: str = "a query") -> Any:
    """The request's JSON body, at most MAX_QUERY_BYTES, with one clear error otherwise."""
    body = await request.body()
    if len(body) > MAX_QUERY_BYTES:
        raise InvalidInput(f"{what} is at most {MAX_QUERY_BYTES} bytes", code="query_too_large")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None


@router.post("/query", summary="Run an analysis (funnel, funnel_people, ...) given as its query JSON")
async def query(request: Request, key: SecretKey) -> Response:
    data = await json_body(request)
    result = await run_in_threadpool(_run, request.app.state.store, key, data)
    return Response(orjson.dumps(result.to_dict(), default=str), media_type="application/json")


def _run(store, key: ApiKey, data):
    """Authorise the key for the query's source before anything of that source is read."""
    name = data.get("source") if isinstance(data, dict) else None
    if isinstance(name, str) and key.source_id is not None and store.source(name).id != key.source_id:
        raise Forbidden(f"this key is for another source, not {name!r}", code="wrong_source")
    parsed = parse_query(expand_template(store, data) if isinstance(data, dict) else data)
    if key.source_id is not None and store.source(parsed.source).id != key.source_id:
        raise Forbidden(f"this key is for another source, not {parsed.source!r}", code="wrong_source")
    return store.run(parsed)
