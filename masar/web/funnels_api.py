"""JSON endpoints of the Funnels page beside ``POST /api/v1/query`` (its templates come from
``GET /api/v1/funnel-templates``, masar/web/analyses_api.py): a source's saved funnels (list, save,
delete) and a funnel's trend or time-to-convert table as CSV or Excel. The same authorisation
as the query API (a secret key, or a signed-in session with its CSRF header); saving and deleting
a funnel from the dashboard needs the analyst role."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from masar.api.query import _run, json_body, secret_key
from masar.engine.funnels import FUNNEL_TABLES
from masar.errors import Forbidden, InvalidInput
from masar.store.base import ApiKey, Source
from masar.web import auth
from masar.web.api import EXPORTS

router = APIRouter(prefix="/api/v1", tags=["dashboard"])
Principal = Annotated[ApiKey, Depends(secret_key)]


def _(message: str) -> str:
    """Marks a msgid for extraction: values the page shows through its catalogue."""
    return message


# Device types (masar/enrich/useragent.py), shown in breakdowns and people's journeys.
DEVICE_TYPES = (_("mobile"), _("tablet"), _("desktop"), _("bot"))


def _source(request: Request, key: ApiKey, name: str) -> Source:
    found = request.app.state.store.source(name)
    if key.source_id is not None and found.id != key.source_id:
        raise Forbidden(f"this key is for another source, not {name!r}", code="wrong_source")
    return found


def _editor(request: Request) -> str | None:
    """Who saves: a dashboard user needs the analyst role; a secret key may (it was made by the
    owner on the command line). The email is kept with the funnel."""
    if request.headers.get("authorization"):
        return None
    return auth.require(request, "analyst").email


@router.get("/saved-funnels", summary="A source's saved funnels, by name")
async def saved_funnels(request: Request, key: Principal, source: str) -> list[dict[str, Any]]:
    found = _source(request, key, source)
    return [f.to_dict() for f in await run_in_threadpool(request.app.state.store.saved_funnels, found)]


@router.post("/saved-funnels", summary="Save a funnel by name (replacing one of that name)", status_code=201)
async def save_funnel(request: Request, key: Principal, source: str) -> dict[str, Any]:
    found = _source(request, key, source)
    saved_by = _editor(request)
    data = await json_body(request, "a request")
    if not isinstance(data, dict) or set(data) != {"name", "definition"}:
        raise InvalidInput('send {"name": ..., "definition": {...the funnel...}}', code="invalid_input")
    store = request.app.state.store
    saved = await run_in_threadpool(store.save_funnel, found, data["name"], data["definition"], saved_by=saved_by)
    return saved.to_dict()


@router.delete("/saved-funnels", summary="Delete a saved funnel", status_code=204)
async def delete_saved_funnel(request: Request, key: Principal, source: str, name: str) -> Response:
    found = _source(request, key, source)
    _editor(request)
    await run_in_threadpool(request.app.state.store.delete_saved_funnel, found, name)
    return Response(status_code=204)


@router.post("/funnels/export", summary="Run a funnel and download one of its tables as CSV or Excel")
async def export_funnel(request: Request, key: Principal, format: str = "csv", part: str = "steps") -> Response:
    if format not in EXPORTS:
        raise InvalidInput(f"export as csv or xlsx, not {format!r}", code="invalid_format")
    if part not in FUNNEL_TABLES:
        raise InvalidInput(f"a funnel's tables are {', '.join(FUNNEL_TABLES)}, not {part!r}", code="invalid_table")
    data = await json_body(request, "a request")
    if not isinstance(data, dict) or data.get("kind") != "funnel":
        raise InvalidInput("send a funnel query (kind funnel)", code="invalid_query")
    content = await run_in_threadpool(_export, request.app.state.store, key, data, format, part)
    return Response(content, media_type=EXPORTS[format],
                    headers={"content-disposition": f'attachment; filename="masar-funnel-{part}.{format}"'})  # fmt: skip



def _export(store: Any, key: ApiKey, data: dict[str, Any], format: str, part: str) -> bytes:
    from masar.exports import write_table

    result = _run(store, key, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export.{format}"
        write_table(result.table(part), path)
        return path.read_bytes()
