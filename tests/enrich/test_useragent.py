from __future__ import annotations

import pytest

from masar.enrich.useragent import parse_user_agent

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Mobile/15E148 Safari/604.1")  # fmt: skip
SAMSUNG = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 "
           "Chrome/117.0.0.0 Mobile Safari/537.36")  # fmt: skip
IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
        "Mobile/15E148 Safari/604.1")  # fmt: skip
ANDROID_TABLET = ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/120.0.0.0 Safari/537.36")  # fmt: skip
WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
           "Safari/537.36 Edg/124.0.0.0")  # fmt: skip
MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
       "Safari/605.1.15")  # fmt: skip
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize(
    ("ua", "device", "browser", "os"),
    [
        (IPHONE, "mobile", "Mobile Safari", "iOS"),
        (SAMSUNG, "mobile", "Samsung Internet", "Android"),
        (IPAD, "tablet", "Mobile Safari", "iOS"),
        (ANDROID_TABLET, "tablet", "Chrome", "Android"),
        (WINDOWS, "desktop", "Edge", "Windows"),
        (MAC, "desktop", "Safari", "Mac OS X"),
        (BOT, "bot", "Googlebot", None),
        (None, None, None, None),
        ("", None, None, None),
    ],
)
def test_devices(ua, device, browser, os):
    parsed = parse_user_agent(ua)
    assert (parsed.device_type, parsed.browser, parsed.os) == (device, browser, os)


def test_server_library_is_not_a_device():
    assert parse_user_agent("segment-analytics-python").device_type is None
