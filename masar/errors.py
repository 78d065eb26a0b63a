"""One error tree. Every error a user can cause has a stable ``code`` and an HTTP ``status``."""

from __future__ import annotations

from typing import Any


class MasarError(Exception):
    """Base of every error Masar raises on purpose; the message is one clear sentence."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class InvalidInput(MasarError):
    code = "invalid_input"
    status = 400


class Unauthorized(MasarError):
    code = "unauthorized"
    status = 401


class Forbidden(MasarError):
    code = "forbidden"
    status = 403


class NotFound(MasarError):
    code = "not_found"
    status = 404


class Conflict(MasarError):
    code = "conflict"
    status = 409


class PayloadTooLarge(MasarError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(MasarError):
    code = "unsupported_media_type"
    status = 415


class TooManyRequests(MasarError):
    code = "rate_limited"
    status = 429


class Unavailable(MasarError):
    code = "unavailable"
    status = 503
