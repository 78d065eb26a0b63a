"""The login limiter's window, per email and per address (monotonic time, moved by hand)."""

from __future__ import annotations

import pytest

from masar.errors import TooManyRequests
from masar.web import auth


def test_limits_per_email_and_per_address_in_a_sliding_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    limiter = auth.LoginLimiter(failures=3, window=60, address_failures=5)
    for _ in range(3):
        limiter.check("ip:a", "email:x")
        limiter.failed("ip:a", "email:x")
    with pytest.raises(TooManyRequests):
        limiter.check("ip:a", "email:x")
    limiter.check("ip:a", "email:y")  # another email from the same address: 3 of 5
    limiter.failed("ip:a", "email:y")
    limiter.failed("ip:a", "email:y")
    with pytest.raises(TooManyRequests):
        limiter.check("ip:a", "email:z")  # the address has 5 failures now
    limiter.check("ip:b", "email:z")
    now[0] += 61  # the window slides past every failure
    limiter.check("ip:a", "email:x")
    limiter.failed("ip:a", "email:x")
    limiter.succeeded("ip:a", "email:x")  # clears the email, not the address
    assert len(limiter._recent("email:x", now[0])) == 0 and len(limiter._recent("ip:a", now[0])) == 1
