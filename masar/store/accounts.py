"""Dashboard accounts: users and their roles, login sessions, app-wide settings.

Passwords are hashed with argon2id (argon2-cffi's defaults, rehashed when those change); a login
session is a random token whose SHA-256 alone is stored, so a copy of the metadata database
opens no session. Each session carries its own CSRF token. Roles, least to most:

* ``viewer`` — reads every page and runs queries;
* ``analyst`` — also saves funnels and audiences, imports spend and rates, sets targets;
* ``owner`` — also manages sources, secret keys and users.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from masar.errors import Conflict, InvalidInput, NotFound
from masar.store.metadata import app_settings, users, web_sessions

ROLES = ("viewer", "analyst", "owner")
SESSION_DAYS = 14
MIN_PASSWORD = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str
    created_at: datetime

    def can(self, role: str) -> bool:
        """Whether this user's role is at least ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "role": self.role, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class WebSession:
    user: User
    csrf: str
    expires_at: datetime


def _user(row: Any) -> User:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return User(id=int(row.id), email=row.email, role=row.role, created_at=created)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: use one of {', '.join(ROLES)}", code="invalid_role")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters", code="weak_password")
    return password


class Accounts:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- users ------------------------------------------------------------------------------------

    def create_user(self, email: str, password: str, role: str) -> User:
        email = email.strip().lower()
        if not _EMAIL.match(email) or len(email) > 320:
            raise InvalidInput(f"{email!r} is not an email address", code="invalid_email")
        check_role(role)
        check_password(password)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first() is not None:
                raise Conflict(f"a user {email} exists already", code="user_exists")
            now = datetime.now(UTC)
            result = conn.execute(
                users.insert().values(email=email, password_hash=_hasher.hash(password), role=role, created_at=now)
            )
            return User(id=int(result.inserted_primary_key[0]), email=email, role=role, created_at=now)

    def users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.id))]

    def has_users(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(users.c.id).limit(1)).first() is not None

    def user(self, email: str) -> User:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.email == email.strip().lower())).first()
        if row is None:
            raise NotFound(f"no user {email}", code="unknown_user")
        return _user(row)

    def set_role(self, email: str, role: str) -> User:
        check_role(role)
        user = self.user(email)
        with self.engine.begin() as conn:
            if user.role == "owner" and role != "owner":
                self._keep_an_owner(conn, user.id)
            conn.execute(users.update().where(users.c.id == user.id).values(role=role))
        return User(user.id, user.email, role, user.created_at)

    def set_password(self, email: str, password: str) -> None:
        check_password(password)
        user = self.user(email)
        with self.engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == user.id).values(password_hash=_hasher.hash(password)))
            conn.execute(web_sessions.delete().where(web_sessions.c.user_id == user.id))

    def delete_user(self, email: str) -> None:
        user = self.user(email)
        with self.engine.begin() as conn:
            if user.role == "owner":
                self._keep_an_owner(conn, user.id)
            conn.execute(web_sessions.delete().where(web_sessions.c.user_id == user.id))
            conn.execute(users.delete().where(users.c.id == user.id))

    def _keep_an_owner(self, conn: Any, leaving: int) -> None:
        others = conn.execute(
            sa.select(sa.func.count()).select_from(users).where(users.c.role == "owner", users.c.id != leaving)
        ).scalar_one()
        if not others:
            raise Conflict("the last owner cannot be removed or demoted", code="last_owner")

    def authenticate(self, email: str, password: str) -> User | None:
        """The user when the password is theirs, else None (the same work either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.email == email.strip().lower())).first()
        if row is None:
            _hasher.hash(password)  # as slow as a real check: no timing hint that the email is unknown
            return None
        try:
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if _hasher.check_needs_rehash(row.password_hash):
            with self.engine.begin() as conn:
                conn.execute(users.update().where(users.c.id == row.id).values(password_hash=_hasher.hash(password)))
        return _user(row)

    # -- sessions ---------------------------------------------------------------------------------

    def start_session(self, user: User, days: int = SESSION_DAYS) -> tuple[str, WebSession]:
        """A new login session: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expires = now + timedelta(days=days)
        with self.engine.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))
            conn.execute(
                web_sessions.insert().values(
                    token_hash=_digest(token), user_id=user.id, csrf=csrf, created_at=now, expires_at=expires
                )
            )
        return token, WebSession(user, csrf, expires)

    def session(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(web_sessions.c.csrf, web_sessions.c.expires_at, users)
                .join(users, users.c.id == web_sessions.c.user_id)
                .where(web_sessions.c.token_hash == _digest(token))
            ).first()
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires < datetime.now(UTC):
            return None
        return WebSession(_user(row), row.csrf, expires)

    def end_session(self, token: str | None) -> None:
        if token:
            with self.engine.begin() as conn:
                conn.execute(web_sessions.delete().where(web_sessions.c.token_hash == _digest(token)))

    # -- settings ---------------------------------------------------------------------------------

    def setting(self, name: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(app_settings.c.value).where(app_settings.c.name == name)).first()
        return default if row is None else row.value

    def set_setting(self, name: str, value: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(app_settings.delete().where(app_settings.c.name == name))
            conn.execute(app_settings.insert().values(name=name, value=value))
