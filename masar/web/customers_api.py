"""JSON endpoints of the Customers and Channels pages beside ``POST /api/v1/query``: saved
audiences (list, the built-in examples, save, delete), the spend and exchange-rate CSV imports,
and one list of a query's result (beside its main table) as CSV or Excel.

Thin like the rest of the API: each handler checks who asks, calls one store method or importer,
and shapes the answer. Member counts and every figure of the pages come from the query API.

Reading needs what the query API needs (a secret key, or a signed-in session with its CSRF
header). Writing needs a signed-in analyst or owner and the CSRF token (the ``X-CSRF-Token``
header, or a form's ``csrf`` field); a viewer is refused with 403.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from masar.api.query import _run, json_body, secret_key
from masar.errors import Forbidden, InvalidInput, PayloadTooLarge
from masar.store.base import ApiKey
from masar.web import auth
from masar.web.api import EXPORTS

router = APIRouter(prefix="/api/v1", tags=["dashboard"])
Principal = Annotated[ApiKey, Depends(secret_key)]
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_LINE = re.compile(r"line (\d+): (.*)", re.DOTALL)


def _source(request: Request, key: ApiKey, name: str) -> Any:
    found = request.app.state.store.source(name)
    if key.source_id is not None and found.id != key.source_id:
        raise Forbidden(f"this key is for another source, not {name!r}", code="wrong_source")
    return found


def _writer(request: Request, form_token: str | None = None) -> auth.User:
    """A signed-in analyst (or owner) whose request carries the session's CSRF token."""
    user = auth.require(request, "analyst")
    auth.check_csrf(request, form_token)
    return user


# -- audiences --------------------------------------------------------------------------------------


@router.get("/audiences", summary="A source's saved audiences (name, definition, when saved)")
async def saved_audiences(request: Request, key: Principal, source: str) -> list[dict[str, Any]]:
    found = _source(request, key, source)
    saved = await run_in_threadpool(request.app.state.store.audiences, found)
    return [a.to_dict() for a in saved]


@router.get("/audience-examples", summary="The built-in audience examples and their parameters")
async def audience_examples(key: Principal) -> list[dict[str, Any]]:
    from masar.engine.audience_examples import EXAMPLES

    return [e.to_dict() for e in EXAMPLES.values()]


@router.post("/audiences", status_code=201, summary="Save an audience by name (analyst or owner)")
async def save_audience(request: Request) -> dict[str, Any]:
    """Body: ``{"source", "name", "example", "params"}`` (a built-in example with its parameter
    values) or ``{"source", "name", "definition"}``. A name already saved is replaced."""
    _writer(request)
    data = await json_body(request, "an audience")
    if not isinstance(data, dict):
        raise InvalidInput("send a JSON object with source, name and an example or a definition")
    store = request.app.state.store
    found = store.source(str(data.get("source") or ""))
    definition = _definition(data)
    saved = await run_in_threadpool(store.save_audience, found, data.get("name"), definition)
    return saved.to_dict()


def _definition(data: dict[str, Any]) -> dict[str, Any]:
    example, definition = data.get("example"), data.get("definition")
    if (example is None) == (definition is None):
        raise InvalidInput("give the audience as an example or as a definition: one of the two")
    if example is None:
        return definition  # the store checks it
    from masar.engine.audience_examples import example_definition

    params = data.get("params") or {}
    if not isinstance(example, str) or not isinstance(params, dict):
        raise InvalidInput("example is an example's key and params an object of its parameter values")
    return example_definition(example, **params)


@router.delete("/audiences", summary="Delete a saved audience (analyst or owner)")
async def delete_audience(request: Request, source: str, name: str) -> dict[str, Any]:
    _writer(request)
    store = request.app.state.store
    await run_in_threadpool(store.delete_audience, store.source(source), name)
    return {"deleted": name.strip()}


# -- a list of a result as a table ------------------------------------------------------------------


@router.post("/export-rows", summary="Run a query and download one list of its result as CSV or Excel")
async def export_rows(request: Request, key: Principal, part: str, format: str = "csv") -> Response:
    """``/api/v1/export`` downloads a result's main table; this one a list beside it, named by
    ``part`` (the email report's ``by_hour`` and ``by_weekday``): a list of flat objects."""
    if format not in EXPORTS:
        raise InvalidInput(f"export as csv or xlsx, not {format!r}", code="invalid_format")
    data = await json_body(request)
    content = await run_in_threadpool(_export_rows, request.app.state.store, key, data, part, format)
    kind = data.get("kind", "query") if isinstance(data, dict) else "query"
    return Response(content, media_type=EXPORTS[format],
                    headers={"content-disposition": f'attachment; filename="masar-{kind}-{part}.{format}"'})  # fmt: skip


def _export_rows(store: Any, key: ApiKey, data: Any, part: str, format: str) -> bytes:
    import pyarrow as pa

    from masar.exports import write_table

    rows = _run(store, key, data).to_dict().get(part)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidInput(f"the result has no list of rows named {part!r}", code="invalid_part")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export.{format}"
        write_table(pa.Table.from_pylist(rows) if rows else pa.table({}), path)
        return path.read_bytes()


# -- spend and exchange rates -----------------------------------------------------------------------


@router.post("/spend", summary="Import ad spend from CSV: date,channel,campaign,spend[,currency]")
async def import_spend(
    request: Request, source: Annotated[str, Form()], file: Annotated[UploadFile, File()],
    csrf: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:  # fmt: skip
    """The good rows are kept (a day, channel and campaign imported again is replaced); each bad
    row is reported with its line number and reason."""
    _writer(request, csrf)
    from masar.importers.sales import read_spend

    store = request.app.state.store
    found = store.source(source)
    parsed = await _parse(file, lambda path: read_spend(path, found.currency))
    written = await run_in_threadpool(store.set_ad_spend, found, parsed.rows)
    return _imported(written, parsed.errors)


@router.post("/rates", summary="Import exchange rates from CSV: date,base,quote,rate")
async def import_rates(
    request: Request, file: Annotated[UploadFile, File()], csrf: Annotated[str | None, Form()] = None
) -> dict[str, Any]:
    """Rates are the store's, for every source; a day and pair imported again is replaced."""
    _writer(request, csrf)
    from masar.importers.sales import read_rates

    parsed = await _parse(file, read_rates)
    written = await run_in_threadpool(request.app.state.store.set_exchange_rates, parsed.rows)
    return _imported(written, parsed.errors)


async def _parse(upload: UploadFile, read: Any) -> Any:
    """The importers read files: the upload goes to a private temporary file under its own name
    (their messages name the file)."""
    content = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(
            f"a CSV file is at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB", code="file_too_large"
        )
    if not content.strip():
        raise InvalidInput("the file is empty", code="empty_file")
    name = Path(upload.filename or "upload.csv").name or "upload.csv"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        return await run_in_threadpool(read, path)


def _imported(written: int, errors: list[str]) -> dict[str, Any]:
    rows = []
    for error in errors:
        found = _LINE.fullmatch(error)
        rows.append({"line": int(found.group(1)), "reason": found.group(2)} if found else
                    {"line": None, "reason": error})  # fmt: skip
    return {"written": written, "rejected": len(errors), "errors": rows}
