"""Who is asking: login sessions, roles, CSRF tokens and the login rate limit of the dashboard.

* The session cookie (``masar_session``) is HttpOnly and SameSite=Lax (Secure over HTTPS); it
  holds a random token whose hash names a row of ``web_sessions``.
* Every state-changing request of the dashboard carries a CSRF token: a form's hidden ``csrf``
  field or, from scripts, the ``X-CSRF-Token`` header. Signed in, it must equal the session's
  token; before signing in (the login and first-run forms), it must equal the ``masar_pre``
  cookie's (double submit). Anything else is refused with 403.
* Logins are rate-limited in the server's memory: 5 failures for one email, or 20 from one
  client address, in 15 minutes lock further attempts of that email (or address) for the rest of
  the window (429), the right password included.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque

from fastapi import Request

from masar.errors import Forbidden, TooManyRequests, Unauthorized
from masar.store.accounts import User, WebSession

SESSION_COOKIE = "masar_session"
PRE_COOKIE = "masar_pre"
CSRF_HEADER = "x-csrf-token"
LOGIN_FAILURES = 5  # per email
ADDRESS_FAILURES = 20  # per client address (many people may share one)
LOGIN_WINDOW_SECONDS = 15 * 60


def web_session(request: Request) -> WebSession | None:
    cached = getattr(request.state, "web_session", False)
    if cached is not False:
        return cached
    found = request.app.state.store.accounts.session(request.cookies.get(SESSION_COOKIE))
    request.state.web_session = found
    return found


def current_user(request: Request) -> User | None:
    found = web_session(request)
    return found.user if found else None


def require(request: Request, role: str = "viewer") -> User:
    user = current_user(request)
    if user is None:
        raise Unauthorized("sign in first", code="not_signed_in")
    if not user.can(role):
        raise Forbidden(f"this needs the {role} role; you are {user.role}", code="forbidden_role")
    return user


def csrf_token(request: Request) -> str:
    """The token this page must send back: the session's, else the pre-login cookie's (made
    here when missing; the response sets it, see ``pre_cookie``)."""
    found = web_session(request)
    if found is not None:
        return found.csrf
    token = request.cookies.get(PRE_COOKIE) or getattr(request.state, "new_pre", None)
    if token is None:
        token = secrets.token_urlsafe(32)
        request.state.new_pre = token
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    found = web_session(request)
    expected = found.csrf if found is not None else request.cookies.get(PRE_COOKIE)
    sent = sent or request.headers.get(CSRF_HEADER)
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise Forbidden("the form's security token is missing or stale: reload the page and try again",
                        code="csrf_failed")  # fmt: skip


class LoginLimiter:
    """Failed logins per key (an address, an email) in a sliding window."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW_SECONDS,
                 address_failures: int = ADDRESS_FAILURES):  # fmt: skip
        self.failures = failures
        self.address_failures = address_failures
        self.window = window
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= (self.address_failures if key.startswith("ip:") else self.failures):
                    wait = int(times[0] + self.window - now) + 1
                    raise TooManyRequests(
                        f"too many failed sign-ins: try again in {wait // 60 + 1} minutes", code="login_rate_limited"
                    )

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        """A success clears the email's failures (not the address's: one good account must not
        reset a guesser's count)."""
        with self._lock:
            for key in keys:
                if not key.startswith("ip:"):
                    self._seen.pop(key, None)
