"""The HTTP application: capture API, health, status page. Built from settings by a factory."""

from __future__ import annotations

import contextlib
import html
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from masar import __version__
from masar.api.capture import capture_asgi
from masar.api.capture import router as capture_router
from masar.api.query import router as query_router
from masar.capture.ingestor import Ingestor, hold_ingest_lock, run_ingestor_process
from masar.capture.service import WAL_NAME, CaptureService
from masar.config import Settings
from masar.errors import MasarError
from masar.web.analyses_api import router as analyses_api
from masar.web.api import router as dashboard_api
from masar.web.auth import LoginLimiter, require
from masar.web.customers_api import router as customers_api
from masar.web.funnels_api import router as funnels_api
from masar.web.pages import render
from masar.web.pages import router as pages_router
from masar.web.settings import router as settings_router
from masar.web.snippet import router as snippet_router

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def _wants_html(request: Request) -> bool:
    """A page a browser navigated to (not the API, not a script's fetch)."""
    path = request.url.path
    if path.startswith(("/api/", "/v1/")):
        return False
    return "text/html" in request.headers.get("accept", "")

_CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, Authorization, Content-Encoding"),
    (b"access-control-max-age", b"86400"),
]


class CaptureCors:
    """CORS for the capture endpoints only (browsers post events from the store's own domain), and
    the capture POSTs served directly (``capture_asgi``)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": _CORS_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _CORS_HEADERS[:1]
            await send(message)

        if not await capture_asgi(scope, receive, send_with_cors):
            await self.app(scope, receive, send_with_cors)


def create_app(settings: Settings | None = None, *, store: Any = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from masar.store.open import open_store

        owned = store is None
        app.state.store = store if store is not None else open_store(settings)
        capture = CaptureService(app.state.store, settings)
        capture.open()
        # Replay what a previous run acknowledged but had not stored, before serving anything.
        lock = hold_ingest_lock(capture.wal.directory)
        try:
            Ingestor(
                app.state.store,
                capture.wal.directory,
                name=WAL_NAME,
                session_gap_seconds=settings.session_timeout_seconds,
                durable_position=lambda: capture.wal.position,
            ).drain()
        finally:
            lock.close()
        ingestor: Any
        if app.state.store.ingest_in_process:
            # chdb serves one process per data directory: the ingestor is a thread of this one.
            stop: Any = threading.Event()
            ingestor = threading.Thread(
                target=Ingestor(
                    app.state.store,
                    capture.wal.directory,
                    name=WAL_NAME,
                    session_gap_seconds=settings.session_timeout_seconds,
                    interval=settings.flush_interval_seconds,
                    durable_position=lambda: capture.wal.position,
                ).run,
                args=(stop,),
                name="masar-ingestor",
                daemon=True,
            )
        else:
            context = multiprocessing.get_context("spawn")
            stop = context.Event()
            data = settings.model_dump(mode="json") | {"data_dir": str(settings.resolved_data_dir())}
            ingestor = context.Process(
                target=run_ingestor_process, args=(data, WAL_NAME, stop, os.getpid()), name="masar-ingestor", daemon=True
            )
        ingestor.start()
        app.state.capture = capture
        app.state.ingestor = ingestor
        try:
            yield
        finally:
            capture.close()  # no more appends; the ingestor drains up to the last durable record
            stop.set()
            ingestor.join(timeout=120)
            if ingestor.is_alive() and isinstance(ingestor, multiprocessing.process.BaseProcess):
                ingestor.terminate()
            if owned:
                app.state.store.close()

    app = FastAPI(title="Masar", version=__version__, lifespan=lifespan)
    app.include_router(capture_router)
    app.include_router(query_router)
    app.include_router(dashboard_api)
    app.include_router(analyses_api)
    app.include_router(snippet_router)
    app.include_router(settings_router)  # before pages_router: its GET /settings gives the page its data
    app.include_router(customers_api)
    app.include_router(funnels_api)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.login_limiter = LoginLimiter()

    @app.exception_handler(MasarError)
    async def masar_error(request: Request, exc: MasarError) -> Response:
        if _wants_html(request):
            return render(request, "error.html", status=exc.status, error=exc)
        return Response(orjson.dumps(exc.to_dict()), status_code=exc.status, media_type="application/json")

    @app.get("/health", tags=["meta"])
    async def health(request: Request) -> dict[str, Any]:
        capture: CaptureService = request.app.state.capture
        applied = request.app.state.store.segments.checkpoint(WAL_NAME)
        alive = request.app.state.ingestor.is_alive()
        return {
            "status": "ok" if alive else "degraded",
            "version": __version__,
            "wal_position": [capture.wal.position.file_seq, capture.wal.position.offset],
            "applied_position": list(applied),
            "ingestor_alive": alive,
            "ingestor_errors": 0 if alive else 1,
        }

    @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
    async def status_page(request: Request) -> str:
        require(request, "viewer")
        return render_status(request.app.state.store)

    app.add_middleware(CaptureCors)
    return app


def render_status(store: Any) -> str:
    """A plain status page until the dashboard lands: sources, counts, latest events, rejects."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Masar status</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2rem;color:#1f2933}table{border-collapse:collapse;"
        "margin:.5rem 0 1.5rem}td,th{border-bottom:1px solid #e4e7eb;padding:.3rem .8rem;text-align:left}"
        "th{background:#f5f7fa}code{background:#f5f7fa;padding:.1rem .3rem}</style></head><body>",
        f"<h1>Masar <small>{esc(__version__)}</small></h1>",
    ]
    sources = store.sources()
    if not sources:
        parts.append("<p>No sources yet. Create one with <code>masar sources create \"My Store\"</code>.</p>")
    for source in sources:
        total = store.count_events(source)
        parts.append(f"<h2>{esc(source.name)}</h2><p>{total:,} events · write key <code>{esc(source.write_key)}</code>"
                     f" · currency {esc(source.currency)}</p>")  # fmt: skip
        counts = store.event_counts(source)
        if counts:
            parts.append("<table><tr><th>Event</th><th>Count</th></tr>")
            parts += [f"<tr><td>{esc(name)}</td><td>{n:,}</td></tr>" for name, n in counts[:50]]
            parts.append("</table>")
        latest = store.tail(source, limit=15)
        if latest:
            parts.append("<h3>Latest events</h3><table><tr><th>Time</th><th>Event</th><th>Person</th>"
                         "<th>Channel</th><th>Device</th></tr>")  # fmt: skip
            parts += [
                f"<tr><td>{esc(str(e['ts']))}</td><td>{esc(e['event'])}</td><td>{e['person_id']}</td>"
                f"<td>{esc(e['channel'] or '')}</td><td>{esc(e['device_type'] or '')}</td></tr>"
                for e in latest
            ]
            parts.append("</table>")
        rejects = store.rejected(source, limit=15)
        if rejects:
            parts.append("<h3>Rejected messages</h3><table><tr><th>Received</th><th>Code</th><th>Reason</th></tr>")
            parts += [
                f"<tr><td>{esc(str(r['received_at']))}</td><td>{esc(r['code'])}</td><td>{esc(r['message'])}</td></tr>"
                for r in rejects
            ]
            parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
