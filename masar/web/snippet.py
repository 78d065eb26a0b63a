"""``GET /masar.js``: the storefront snippet (docs/snippet.md), from ``static/masar.js``.

Served at the root rather than under ``/static/`` so the install line stays short and stable.
Stores cache it for a week; the ETag lets a browser check for a new version cheaply after that.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

SNIPPET = Path(__file__).parent / "static" / "masar.js"
CACHE_SECONDS = 7 * 86400

router = APIRouter(include_in_schema=False)


@cache
def _snippet() -> tuple[bytes, str]:
    body = SNIPPET.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.api_route("/masar.js", methods=["GET", "HEAD"])
async def snippet(request: Request) -> Response:
    body, etag = _snippet()
    headers = {
        "cache-control": f"public, max-age={CACHE_SECONDS}",
        "etag": etag,
        # Lets a store pin the file with Subresource Integrity (crossorigin="anonymous").
        "access-control-allow-origin": "*",
        "x-content-type-options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
