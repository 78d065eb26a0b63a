"""JSON and file endpoints the dashboard's scripts use beside ``POST /api/v1/query``: the
sources, a source's event names (the funnel builder's search), and any query's table exported
as CSV or Excel. The same authorisation as the query API (a secret key, or a signed-in session
with its CSRF header)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from masar.api.query import _run, json_body, secret_key
from masar.errors import InvalidInput
from masar.store.base import ApiKey

router = APIRouter(prefix="/api/v1", tags=["dashboard"])
Principal = Annotated[ApiKey, Depends(secret_key)]
EXPORTS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@router.get("/sources", summary="The sources this key or session can read")
async def sources(request: Request, key: Principal) -> list[dict[str, Any]]:
    store = request.app.state.store
    return [
        {"name": s.name, "currency": s.currency, "timezone": s.timezone}
        for s in store.sources()
        if key.source_id is None or s.id == key.source_id
    ]


@router.get("/event-names", summary="A source's event names with their counts, most frequent first")
async def event_names(request: Request, key: Principal, source: str) -> list[dict[str, Any]]:
    store = request.app.state.store
    found = store.source(source)
    if key.source_id is not None and found.id != key.source_id:
        raise InvalidInput(f"this key is for another source, not {source!r}", code="wrong_source")
    counts = await run_in_threadpool(store.event_counts, found)
    return [{"name": name, "count": n} for name, n in counts]


@router.post("/export", summary="Run a query and download its table as CSV or Excel")
async def export(request: Request, key: Principal, format: str = "csv") -> Response:
    if format not in EXPORTS:
        raise InvalidInput(f"export as csv or xlsx, not {format!r}", code="invalid_format")
    data = await json_body(request)
    content = await run_in_threadpool(_export, request.app.state.store, key, data, format)
    kind = data.get("kind", "query") if isinstance(data, dict) else "query"
    return Response(
        content,
        media_type=EXPORTS[format],
        headers={"content-disposition": f'attachment; filename="masar-{kind}.{format}"'},
    )


def _export(store: Any, key: ApiKey, data: Any, format: str) -> bytes:
    from masar.exports import write_table

    result = _run(store, key, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export.{format}"
        write_table(result.table(), path)
        return path.read_bytes()
