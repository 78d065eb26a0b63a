"""The settings page and its forms: sources with their write keys and install instructions, secret
keys, users and roles, monthly targets, exchange rates, language and digits.

Every form POSTs with the session's CSRF token and is authorised here, on the server, by role:
owner for sources, secret keys and users; analyst for targets, rates and digits. The language is
each person's own (a cookie, as the header's links set it), so anyone signed in may change it.

A form that succeeds redirects to ``/settings?done=CODE#section`` so that reloading the page does
not post again. Two answers cannot travel in a URL and are rendered directly instead: a new secret
key (shown once) and a rates import's line-by-line report. A form that fails renders the page
again with its error, one translated sentence beside the form, and the status of the error.
"""

from __future__ import annotations

import tempfile
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from masar.errors import InvalidInput, MasarError
from masar.store.accounts import ROLES
from masar.store.base import Source
from masar.web import auth
from masar.web.i18n import DIGITS, Lang
from masar.web.pages import env, language, render

router = APIRouter(include_in_schema=False)
RATES_SHOWN = 100
MAX_RATES_UPLOAD = 5 * 1024 * 1024


def _(message: str) -> str:
    """Marks a msgid for extraction; translated when shown."""
    return message


# Choices offered first in the forms (any ISO 4217 code and IANA zone is accepted).
CURRENCIES = ("SAR", "AED", "KWD", "QAR", "BHD", "OMR", "EGP", "JOD", "LBP", "IQD", "USD", "EUR")
ZONES = ("Asia/Riyadh", "Asia/Dubai", "Asia/Kuwait", "Asia/Qatar", "Asia/Bahrain", "Asia/Muscat",
         "Africa/Cairo", "Asia/Amman", "Asia/Beirut", "Asia/Damascus", "Asia/Baghdad", "UTC")  # fmt: skip

# done=CODE after a redirect: (the section it belongs to, what to say).
NOTICES = {
    "source_created": ("install", _("The store was created. Install the snippet below to start sending events.")),
    "key_revoked": ("keys", _("The key was revoked: it no longer opens the query API.")),
    "user_added": ("users", _("The user was added. Give them their password so they can sign in.")),
    "role_changed": ("users", _("The role was changed.")),
    "user_deleted": ("users", _("The user was removed and signed out.")),
    "target_saved": ("targets", _("The target was saved.")),
    "target_cleared": ("targets", _("The target was removed.")),
    "language_saved": ("language", _("The language was saved for this browser.")),
    "digits_saved": ("language", _("The digits were saved for everyone.")),
}

# An error's code → its sentence in the page's language; other errors show their own message.
ERRORS = {
    "invalid_name": _("Give the store a name of at most 200 characters."),
    "invalid_currency": _("A currency is a three-letter ISO 4217 code, such as SAR."),
    "invalid_timezone": _("A time zone is a name such as Asia/Riyadh."),
    "source_exists": _("A store with this name exists already."),
    "not_found": _("That store does not exist."),
    "unknown_key": _("That secret key does not exist."),
    "invalid_email": _("That is not an email address."),
    "weak_password": _("A password needs at least 10 characters."),
    "user_exists": _("A user with this email exists already."),
    "invalid_role": _("Choose a role: viewer, analyst or owner."),
    "unknown_user": _("That user does not exist."),
    "last_owner": _("The last owner cannot be removed or demoted: make another owner first."),
    "invalid_month": _("Choose a month."),
    "invalid_revenue": _("A revenue target is a positive amount."),
    "invalid_orders": _("An orders target is a positive whole number."),
    "no_file": _("Choose a CSV file to import."),
    "missing_columns": _("The file needs the columns date, base, quote and rate."),
    "not_utf8": _("The file is not UTF-8 text: save it as CSV UTF-8 and try again."),
    "file_too_large": _("The file is larger than 5 MB."),
    "invalid_digits": _("Choose Latin or Arabic-Indic digits."),
}


def format_code(text: Markup, **codes: str) -> Markup:
    """A translated sentence with code put in its placeholders, each in ``<code>`` (isolated from
    the Arabic around it, so ``2026-01-31,USD,SAR,3.75`` keeps its order)."""
    return text % {name: Markup("<code>%s</code>") % value for name, value in codes.items()}


env.filters["format_code"] = format_code


def _gate(request: Request) -> Response | None:
    """As every page: first run → /setup; signed out → /login, back here after."""
    if not request.app.state.store.accounts.has_users():
        return RedirectResponse("/setup", status_code=303)
    if auth.current_user(request) is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
    return None


def _authorise(request: Request, role: str, csrf: str) -> None:
    """The token first (a forged request learns nothing), then the role."""
    auth.check_csrf(request, csrf)
    auth.require(request, role)


def _done(request: Request, code: str, source: str | None = None) -> RedirectResponse:
    params = {"source": source or request.query_params.get("source") or "", "done": code}
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(f"/settings?{query}#{NOTICES[code][0]}", status_code=303)


def _base_url(request: Request) -> str:
    """This server as the storefront reaches it (uvicorn applies X-Forwarded-* from trusted proxies)."""
    return str(request.base_url).rstrip("/")


def install(source: Source, base_url: str, lang: Lang) -> dict[str, str]:
    """Copy-paste instructions for ``source``: the storefront snippet, Segment's Python library,
    curl. Code stays code in either language; only its comments are translated."""
    key, currency = source.write_key, source.currency
    on_add = lang.gettext("For example, when a product is added to the cart:")
    on_sign_in = lang.gettext("And once the customer signs in:")
    before_exit = lang.gettext("send before the program exits")
    snippet = (
        f'<script src="{base_url}/masar.js" data-write-key="{key}" defer></script>\n'
        "<script>\n"
        f"  // {on_add}\n"
        f'  // masar.track("Product Added", {{ product_id: "SKU-1", price: 120, currency: "{currency}" }});\n'
        f"  // {on_sign_in}\n"
        '  // masar.identify("customer-1001", { email: "sara@example.com" });\n'
        "</script>"
    )
    python = (
        "import segment.analytics as analytics\n\n"
        f'analytics.write_key = "{key}"\n'
        f'analytics.host = "{base_url}"\n\n'
        'analytics.identify("customer-1001", {"email": "sara@example.com"})\n'
        'analytics.track("customer-1001", "Order Completed", {\n'
        f'    "order_id": "1001", "total": 115, "revenue": 100, "currency": "{currency}",\n'
        "})\n"
        f"analytics.flush()  # {before_exit}"
    )
    curl = (
        f'curl -X POST "{base_url}/v1/track" \\\n'
        f'  -u "{key}:" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        '  -d \'{"userId": "customer-1001", "event": "Order Completed", '
        f'"properties": {{"order_id": "1001", "total": 115, "currency": "{currency}"}}}}\''
    )
    return {"snippet": snippet, "python": python, "curl": curl}


def _page(request: Request, status: int = 200, *, section: str | None = None, error: MasarError | None = None,
          form: dict[str, Any] | None = None, notice: str | None = None, **extra: Any) -> Response:  # fmt: skip
    store = request.app.state.store
    lang = language(request)
    everything = store.sources()
    chosen = request.query_params.get("source")
    current = next((s for s in everything if s.name == chosen), everything[0] if everything else None)
    done = request.query_params.get("done")
    if section is None and done in NOTICES:
        section, notice = NOTICES[done][0], lang.gettext(NOTICES[done][1])
    names = {s.id: s.name for s in everything}
    rates = sorted(store.exchange_rates(), key=lambda r: (r.day, r.base, r.quote), reverse=True)
    shown = [
        # Every digit of the rate as given (a number format would round 0.266667 to 0.267).
        {"day": lang.date(r.day), "base": r.base, "quote": r.quote,
         "rate": lang.number(r.rate, max(0, -int(r.rate.normalize().as_tuple().exponent)))}
        for r in rates[:RATES_SHOWN]
    ]  # fmt: skip
    targets = [
        {**t, "label": lang.date(date.fromisoformat(t["month"] + "-01"), "MMMM y")}
        for t in (store.targets(current) if current else [])
    ]
    base_url = _base_url(request)
    return render(
        request,
        "pages/settings.html",
        status=status,
        page="settings",
        all_sources=everything,
        current=current,
        install=install(current, base_url, lang) if current else None,
        keys=[(k, names.get(k.source_id)) for k in reversed(store.api_keys())],
        users=store.accounts.users(),
        targets=targets,
        rates=shown,
        rate_count=len(rates),
        digits=store.accounts.setting("digits", "latn"),
        roles=ROLES,
        currencies=CURRENCIES,
        zones=ZONES,
        section=section,
        notice=notice,
        error_text=lang.gettext(ERRORS.get(error.code, error.message)) if error else None,
        form=form or {},
        **extra,
    )


async def _failed(request: Request, section: str, error: MasarError, form: dict[str, Any]) -> Response:
    return await run_in_threadpool(_page, request, error.status, section=section, error=error, form=form)


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    return _gate(request) or await run_in_threadpool(_page, request)


@router.get("/settings/{form:path}")
async def settings_form_address(request: Request, form: str) -> Response:
    """A form's answer is shown at the form's address; a link made from it (the language links,
    the store picker) comes back to the page."""
    return RedirectResponse("/settings" + (f"?{request.url.query}" if request.url.query else ""), status_code=303)


# -- sources (owner) --------------------------------------------------------------------------------


@router.post("/settings/sources")
async def create_source(
    request: Request, name: str = Form(""), currency: str = Form(""), timezone: str = Form(""),
    domains: str = Form(""), csrf: str = Form(""),
) -> Response:  # fmt: skip
    _authorise(request, "owner", csrf)
    own = tuple(d.strip().lower() for d in domains.replace("،", ",").split(",") if d.strip())
    store = request.app.state.store
    try:
        source = await run_in_threadpool(store.create_source, name, currency=currency, timezone=timezone,
                                         own_domains=own)  # fmt: skip
    except MasarError as exc:
        form = {"name": name, "currency": currency, "timezone": timezone, "domains": domains}
        return await _failed(request, "sources", exc, form)
    return _done(request, "source_created", source.name)


# -- secret keys (owner) ----------------------------------------------------------------------------


@router.post("/settings/keys")
async def create_key(request: Request, name: str = Form(""), scope: str = Form(""), csrf: str = Form("")) -> Response:
    _authorise(request, "owner", csrf)
    store = request.app.state.store
    label = name.strip()[:200] or "default"
    try:
        key, secret = await run_in_threadpool(store.create_api_key, source=scope or None, name=label)
    except MasarError as exc:
        return await _failed(request, "keys", exc, {"key_name": name})
    lang = language(request)
    # Rendered, not redirected: the secret must not travel in a URL, and it is never shown again.
    return await run_in_threadpool(
        _page, request, section="keys", new_key=key, secret=secret,
        notice=lang.gettext("Copy the key now: it will not be shown again."),
    )  # fmt: skip


@router.post("/settings/keys/revoke")
async def revoke_key(request: Request, key_id: int = Form(0), csrf: str = Form("")) -> Response:
    _authorise(request, "owner", csrf)
    try:
        await run_in_threadpool(request.app.state.store.revoke_api_key, key_id)
    except MasarError as exc:
        return await _failed(request, "keys", exc, {})
    return _done(request, "key_revoked")


# -- users (owner) ----------------------------------------------------------------------------------


@router.post("/settings/users")
async def add_user(
    request: Request, email: str = Form(""), password: str = Form(""), role: str = Form("viewer"),
    csrf: str = Form(""),
) -> Response:  # fmt: skip
    _authorise(request, "owner", csrf)
    accounts = request.app.state.store.accounts
    try:
        await run_in_threadpool(accounts.create_user, email, password, role)
    except MasarError as exc:
        return await _failed(request, "users", exc, {"email": email, "role": role})
    return _done(request, "user_added")


@router.post("/settings/users/role")
async def change_role(request: Request, email: str = Form(""), role: str = Form(""), csrf: str = Form("")) -> Response:
    _authorise(request, "owner", csrf)
    try:
        await run_in_threadpool(request.app.state.store.accounts.set_role, email, role)
    except MasarError as exc:
        return await _failed(request, "users", exc, {})
    return _done(request, "role_changed")


@router.post("/settings/users/delete")
async def delete_user(request: Request, email: str = Form(""), csrf: str = Form("")) -> Response:
    _authorise(request, "owner", csrf)
    try:
        await run_in_threadpool(request.app.state.store.accounts.delete_user, email)
    except MasarError as exc:
        return await _failed(request, "users", exc, {})
    return _done(request, "user_deleted")


# -- targets, rates, digits (analyst) ---------------------------------------------------------------


def _amount(text: str, code: str) -> Decimal | None:
    text = text.strip().replace(",", "").replace("٬", "").translate(str.maketrans("٠١٢٣٤٥٦٧٨٩٫", "0123456789."))
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"{text!r} is not a number", code=code) from None


@router.post("/settings/targets")
async def set_target(
    request: Request, source: str = Form(""), month: str = Form(""), revenue: str = Form(""),
    orders: str = Form(""), csrf: str = Form(""),
) -> Response:  # fmt: skip
    _authorise(request, "analyst", csrf)
    store = request.app.state.store
    try:
        found = store.source(source)
        amount = _amount(revenue, "invalid_revenue")
        count = _amount(orders, "invalid_orders")
        if count is not None and count != count.to_integral_value():
            raise InvalidInput("an orders target is a whole number", code="invalid_orders")
        await run_in_threadpool(store.set_target, found, month, revenue=amount,
                                orders=int(count) if count is not None else None)  # fmt: skip
    except MasarError as exc:
        return await _failed(request, "targets", exc, {"month": month, "revenue": revenue, "orders": orders})
    return _done(request, "target_saved" if amount is not None or count is not None else "target_cleared", source)


@router.post("/settings/rates")
async def import_rates(request: Request, file: UploadFile | None = File(None), csrf: str = Form("")) -> Response:
    _authorise(request, "analyst", csrf)
    try:
        if file is None or not file.filename:
            raise InvalidInput("choose a CSV file", code="no_file")
        content = await file.read(MAX_RATES_UPLOAD + 1)
        if len(content) > MAX_RATES_UPLOAD:
            raise InvalidInput("the file is larger than 5 MB", code="file_too_large")
        parsed = await run_in_threadpool(_read_rates, Path(file.filename).name or "rates.csv", content)
        written = await run_in_threadpool(request.app.state.store.set_exchange_rates, parsed.rows)
    except MasarError as exc:
        return await _failed(request, "currencies", exc, {})
    lang = language(request)
    notice = lang.gettext("Exchange rates loaded: %(num)s.", num=lang.number(written))
    # Rendered, not redirected: the report names each row left out.
    return await run_in_threadpool(_page, request, section="currencies", notice=notice, rate_errors=parsed.errors)


def _read_rates(name: str, content: bytes) -> Any:
    from masar.importers.sales import read_rates

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        return read_rates(path)


@router.post("/settings/digits")
async def set_digits(request: Request, digits: str = Form(""), csrf: str = Form("")) -> Response:
    _authorise(request, "analyst", csrf)
    if digits not in DIGITS:
        return await _failed(request, "language", InvalidInput("choose latn or arab", code="invalid_digits"), {})
    await run_in_threadpool(request.app.state.store.accounts.set_setting, "digits", digits)
    return _done(request, "digits_saved")
