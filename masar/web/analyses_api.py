"""The JSON the analysis pages (leaks, journeys) need beside ``POST /api/v1/query``: a source's
funnel templates with their steps, so a page can offer them and turn one into an explicit funnel
(the query the Funnels page is linked with). Same authorisation as the query API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from masar.api.query import secret_key
from masar.engine.templates import templates
from masar.errors import Forbidden
from masar.store.base import ApiKey

router = APIRouter(prefix="/api/v1", tags=["dashboard"])
Principal = Annotated[ApiKey, Depends(secret_key)]


@router.get("/funnel-templates", summary="A source's funnel templates: name, title and steps")
async def funnel_templates(request: Request, key: Principal, source: str) -> list[dict[str, Any]]:
    store = request.app.state.store
    found = store.source(source)
    if key.source_id is not None and found.id != key.source_id:
        raise Forbidden(f"this key is for another source, not {source!r}", code="wrong_source")
    return await run_in_threadpool(templates, store, found)
