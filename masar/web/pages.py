"""The dashboard's pages: server-rendered shells (Jinja2, every label through the catalogues)
whose scripts ask the engine for data through ``POST /api/v1/query``, as the CLI does. No SQL
and no numbers are computed here.

Each page is a template ``pages/<name>.html`` extending ``base.html``; ``PAGES`` is the
navigation, in order. Every page's state (source, dates, the analysis) lives in its URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from masar import __version__
from masar.enrich.channels import CHANNELS
from masar.errors import MasarError
from masar.web import auth
from masar.web.i18n import COOKIE, DIGITS, LANGUAGES, Lang, catalog, choose

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


@dataclass(frozen=True)
class Page:
    name: str
    label: str  # a msgid
    icon: str


def _(message: str) -> str:
    """Marks a msgid for extraction where it is not translated at once (the labels below)."""
    return message


# The navigation; the labels are msgids (translated when rendered).
PAGES = (
    Page("overview", _("Overview"), "◧"),
    Page("funnels", _("Funnels"), "▾"),
    Page("leaks", _("Leaks"), "◔"),
    Page("journeys", _("Journeys"), "⇶"),
    Page("customers", _("Customers"), "☺"),
    Page("cohorts", _("Cohorts"), "▦"),
    Page("channels", _("Channels"), "⌁"),
    Page("settings", _("Settings"), "⚙"),
)


def language(request: Request) -> Lang:
    code = choose(request.query_params.get("lang"), request.cookies.get(COOKIE), request.headers.get("accept-language"))
    store = request.app.state.store
    digits = store.accounts.setting("digits", "latn")
    return Lang(code, digits if digits in DIGITS else "latn")


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = language(request)
    store = request.app.state.store
    user = auth.current_user(request)
    sources = [s.name for s in store.sources()] if user else []
    source = request.query_params.get("source")
    if source not in sources:
        source = sources[0] if sources else None
    body = env.get_template(template).render(
        _=lang.gettext,
        ngettext=lang.ngettext,
        lang=lang,
        languages=LANGUAGES,
        user=user,
        pages=PAGES,
        sources=sources,
        source=source,
        csrf=auth.csrf_token(request),
        version=__version__,
        request=request,
        page_config=orjson.dumps(
            {
                "lang": lang.code, "intl": lang.intl, "dir": lang.dir, "source": source,
                "role": user.role if user else None, "t": catalog(lang.code),
                "currency": store.source(source).currency if source else None,
            }  # fmt: skip
        ).decode(),
        **context,
    )
    response = HTMLResponse(body, status_code=status)
    _remember(request, response, lang)
    return response


def _remember(request: Request, response: Response, lang: Lang) -> None:
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(COOKIE, lang.code, max_age=365 * 86400, samesite="lax", httponly=True)
    new_pre = getattr(request.state, "new_pre", None)
    if new_pre:
        response.set_cookie(auth.PRE_COOKIE, new_pre, max_age=86400, samesite="strict", httponly=True,
                            secure=request.url.scheme == "https")  # fmt: skip


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _signed_in(response: Response, request: Request, token: str) -> None:
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=14 * 86400, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")  # fmt: skip
    response.delete_cookie(auth.PRE_COOKIE)


# -- first run, sign in, sign out -----------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    if not request.app.state.store.accounts.has_users():
        return _redirect("/setup")
    if auth.current_user(request) is None:
        return _redirect("/login")
    return _redirect("/overview" + (f"?{request.url.query}" if request.url.query else ""))


@router.get("/setup")
async def setup_form(request: Request) -> Response:
    if request.app.state.store.accounts.has_users():
        return _redirect("/login")
    return render(request, "setup.html")


@router.post("/setup")
async def setup(
    request: Request, email: str = Form(""), password: str = Form(""), csrf: str = Form("")
) -> Response:
    accounts = request.app.state.store.accounts
    if accounts.has_users():
        return _redirect("/login")
    auth.check_csrf(request, csrf)
    try:
        user = await run_in_threadpool(accounts.create_user, email, password, "owner")
    except MasarError as exc:
        return render(request, "setup.html", status=exc.status, error=exc, email=email)
    token, _session = await run_in_threadpool(accounts.start_session, user)
    response = _redirect("/overview")
    _signed_in(response, request, token)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if not request.app.state.store.accounts.has_users():
        return _redirect("/setup")
    if auth.current_user(request) is not None:
        return _redirect("/overview")
    return render(request, "login.html", next=request.query_params.get("next", "/overview"))


@router.post("/login")
async def login(
    request: Request, email: str = Form(""), password: str = Form(""), csrf: str = Form(""),
    next: str = Form("/overview"),
) -> Response:  # fmt: skip
    auth.check_csrf(request, csrf)
    limiter: auth.LoginLimiter = request.app.state.login_limiter
    keys = (f"ip:{request.client.host if request.client else '?'}", f"email:{email.strip().lower()}")
    accounts = request.app.state.store.accounts
    try:
        limiter.check(*keys)
    except MasarError as exc:
        return render(request, "login.html", status=exc.status, error=exc, email=email, next=next)
    user = await run_in_threadpool(accounts.authenticate, email, password)
    if user is None:
        limiter.failed(*keys)
        lang = language(request)
        return render(request, "login.html", status=401, error_text=lang.gettext("Wrong email or password."),
                      email=email, next=next)  # fmt: skip
    limiter.succeeded(*keys)
    token, _session = await run_in_threadpool(accounts.start_session, user)
    response = _redirect(next if next.startswith("/") and not next.startswith("//") else "/overview")
    _signed_in(response, request, token)
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    auth.check_csrf(request, csrf)
    request.app.state.store.accounts.end_session(request.cookies.get(auth.SESSION_COOKIE))
    response = _redirect("/login")
    response.delete_cookie(auth.SESSION_COOKIE)
    return response


# -- pages ------------------------------------------------------------------------------------------


def _page(name: str):
    async def page(request: Request) -> Response:
        if not request.app.state.store.accounts.has_users():
            return _redirect("/setup")
        if auth.current_user(request) is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return _redirect("/login?next=" + quote(target, safe=""))
        return render(request, f"pages/{name}.html", page=name)

    page.__name__ = f"page_{name}"
    return page


for _p in PAGES:
    if (HERE / "templates" / "pages" / f"{_p.name}.html").exists():
        router.add_api_route(f"/{_p.name}", _page(_p.name), methods=["GET"])


def available_pages() -> list[Page]:
    """The pages that have a template (the navigation shows only these)."""
    return [p for p in PAGES if (HERE / "templates" / "pages" / f"{p.name}.html").exists()]


env.globals["available_pages"] = available_pages
env.globals["channel_groups"] = CHANNELS  # the channel pickers' options (msgids)
