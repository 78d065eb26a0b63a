"""Device type, browser and OS from the user agent, with ua-parser's maintained regexes.

Parsing costs ~20 µs, but a store sees few distinct user agents, so results are cached.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from ua_parser import parse

_TABLET = re.compile(r"iPad|Tablet|Tab(?!le)|Kindle|Silk|PlayBook|Nexus (7|9|10)", re.IGNORECASE)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android.*Mobile|Windows Phone|BlackBerry|Opera Mini", re.IGNORECASE)
_BOT = re.compile(r"bot|crawl|spider|slurp|facebookexternalhit|headless|lighthouse", re.IGNORECASE)


class Device(NamedTuple):
    device_type: str | None  # mobile, tablet, desktop, bot, or None when unknown
    browser: str | None
    os: str | None


UNKNOWN = Device(None, None, None)


@functools.lru_cache(maxsize=65_536)
def parse_user_agent(user_agent: str | None) -> Device:
    if not user_agent:
        return UNKNOWN
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    os_name = result.os.family if result.os else None
    device_family = result.device.family if result.device else None
    if device_family == "Spider" or _BOT.search(user_agent):
        kind = "bot"
    elif _TABLET.search(user_agent) or (os_name == "Android" and "Mobile" not in user_agent):
        kind = "tablet"
    elif _MOBILE.search(user_agent):
        kind = "mobile"
    elif os_name in ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora") or (
        result.user_agent is not None
    ):
        kind = "desktop"
    else:
        kind = None
    return Device(kind, browser if browser != "Other" else None, os_name if os_name != "Other" else None)
