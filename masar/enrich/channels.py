"""Default channel grouping: a session's source / medium / campaign and GA4-style channel.

The rule table follows Google Analytics 4's published default channel group so numbers line up
with what merchants already see in GA4. Two deliberate deviations are documented in
``docs/channels.md``: there is no "Paid Other" channel (it becomes "Unassigned"), and ``fbclid``
alone counts as organic social, because Meta appends it to organic links as well as ads.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CHANNELS",
    "CLICK_ID_PARAMS",
    "Attribution",
    "ChannelRules",
    "Touch",
    "click_id_from_query",
    "is_paid_medium",
    "referrer_domain",
]


@dataclass(frozen=True)
class Touch:
    """What a session's landing hit tells us about where the visitor came from."""

    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    # The click-id parameter NAME found on the landing URL ("gclid", "fbclid", ...), not its value:
    # the value is an opaque token and only the name says which ad platform sent the visitor.
    click_id: str | None = None
    # Host of the referrer, lowercased, without "www." (see referrer_domain()).
    referrer_domain: str | None = None


@dataclass(frozen=True)
class Attribution:
    source: str
    medium: str
    campaign: str | None
    channel: str


CHANNELS: tuple[str, ...] = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "Organic Search",
    "Email",
    "Affiliates",
    "Referral",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)

# Click-id parameter -> (source, medium). Insertion order is the priority order: unambiguous paid
# ids first, fbclid last because Meta also puts it on organic links (see _attribute_uncached).
_CLICK_IDS: dict[str, tuple[str, str]] = {
    "gclid": ("google", "cpc"),
    "gbraid": ("google", "cpc"),
    "wbraid": ("google", "cpc"),
    "gad_source": ("google", "cpc"),
    "dclid": ("google", "cpc"),
    "msclkid": ("bing", "cpc"),
    "ttclid": ("tiktok", "cpc"),
    "sccid": ("snapchat", "cpc"),
    "twclid": ("x", "cpc"),
    "li_fat_id": ("linkedin", "cpc"),
    "epik": ("pinterest", "cpc"),
    "rdt_cid": ("reddit", "cpc"),
    "yclid": ("yandex", "cpc"),
    "fbclid": ("facebook", "social"),
}

CLICK_ID_PARAMS: tuple[str, ...] = tuple(_CLICK_IDS)

_SHOPPING, _SEARCH, _SOCIAL, _VIDEO = "shopping", "search", "social", "video"
_CATEGORIES = (_SHOPPING, _SEARCH, _SOCIAL, _VIDEO)

# Default site lists: (canonical source name, category, exact source names, domains).
# A domain also matches all its subdomains; "brand.*" matches the brand on any country TLD
# (google.com.sa, google.ae, amazon.eg ...). The canonical name is what a referrer from one of
# the domains becomes as a source, so l.instagram.com and instagram.com both report "instagram".
_DEFAULT_SITES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    # --- search -------------------------------------------------------------------------------
    ("google", _SEARCH, ("google",), ("google.*", "com.google.android.googlequicksearchbox")),
    ("bing", _SEARCH, ("bing",), ("bing.com",)),
    ("yahoo", _SEARCH, ("yahoo",), ("yahoo.*",)),
    ("duckduckgo", _SEARCH, ("duckduckgo",), ("duckduckgo.com",)),
    ("yandex", _SEARCH, ("yandex",), ("yandex.*", "ya.ru")),
    ("baidu", _SEARCH, ("baidu",), ("baidu.com",)),
    ("ecosia", _SEARCH, ("ecosia",), ("ecosia.org",)),
    ("naver", _SEARCH, ("naver",), ("naver.com",)),
    ("ask", _SEARCH, ("ask",), ("ask.com",)),
    ("aol", _SEARCH, ("aol",), ("aol.com",)),
    ("seznam", _SEARCH, ("seznam",), ("seznam.cz",)),
    # Huawei phones ship Petal Search as the default engine, common in the Gulf.
    ("petalsearch", _SEARCH, ("petalsearch", "petal"), ("petalsearch.com",)),
    ("sogou", _SEARCH, ("sogou",), ("sogou.com",)),
    ("qwant", _SEARCH, ("qwant",), ("qwant.com",)),
    ("startpage", _SEARCH, ("startpage",), ("startpage.com",)),
    ("brave", _SEARCH, (), ("search.brave.com",)),
    ("daum", _SEARCH, ("daum",), ("daum.net",)),
    # --- social -------------------------------------------------------------------------------
    # "meta" is not in GA4's list but is what Gulf agencies commonly put in utm_source for
    # Facebook + Instagram ads; without it meta/cpc would fall to Unassigned.
    ("facebook", _SOCIAL, ("facebook", "fb", "meta"),
     ("facebook.com", "fb.com", "fb.me", "com.facebook.katana", "com.facebook.lite")),
    ("messenger", _SOCIAL, ("messenger",), ("messenger.com", "m.me", "com.facebook.orca")),
    ("instagram", _SOCIAL, ("instagram", "ig"), ("instagram.com", "com.instagram.android")),
    ("threads", _SOCIAL, ("threads",), ("threads.net", "threads.com")),
    ("tiktok", _SOCIAL, ("tiktok",),
     ("tiktok.com", "com.zhiliaoapp.musically", "com.ss.android.ugc.trill")),
    ("snapchat", _SOCIAL, ("snapchat", "snap"), ("snapchat.com", "com.snapchat.android")),
    ("x", _SOCIAL, ("x", "twitter"), ("x.com", "twitter.com", "t.co", "com.twitter.android")),
    ("linkedin", _SOCIAL, ("linkedin",), ("linkedin.com", "lnkd.in", "com.linkedin.android")),
    ("pinterest", _SOCIAL, ("pinterest",), ("pinterest.*", "pin.it", "com.pinterest")),
    ("reddit", _SOCIAL, ("reddit",), ("reddit.com", "redd.it", "com.reddit.frontpage")),
    ("whatsapp", _SOCIAL, ("whatsapp",), ("whatsapp.com", "wa.me", "com.whatsapp")),
    ("telegram", _SOCIAL, ("telegram",), ("telegram.org", "telegram.me", "t.me", "org.telegram.messenger")),
    ("tumblr", _SOCIAL, ("tumblr",), ("tumblr.com",)),
    ("quora", _SOCIAL, ("quora",), ("quora.com",)),
    ("vk", _SOCIAL, ("vk",), ("vk.com",)),
    ("discord", _SOCIAL, ("discord",), ("discord.com", "discord.gg")),
    ("line", _SOCIAL, ("line",), ("line.me",)),
    ("wechat", _SOCIAL, ("wechat",), ("wechat.com",)),
    ("weibo", _SOCIAL, ("weibo",), ("weibo.com",)),
    # --- video --------------------------------------------------------------------------------
    ("youtube", _VIDEO, ("youtube",),
     ("youtube.com", "youtu.be", "youtube-nocookie.com", "com.google.android.youtube")),
    ("vimeo", _VIDEO, ("vimeo",), ("vimeo.com",)),
    ("twitch", _VIDEO, ("twitch",), ("twitch.tv",)),
    ("dailymotion", _VIDEO, ("dailymotion",), ("dailymotion.com",)),
    ("shahid", _VIDEO, ("shahid",), ("shahid.mbc.net",)),
    # --- shopping -----------------------------------------------------------------------------
    ("amazon", _SHOPPING, ("amazon",), ("amazon.*",)),
    ("noon", _SHOPPING, ("noon",), ("noon.com",)),
    ("ebay", _SHOPPING, ("ebay",), ("ebay.*",)),
    ("etsy", _SHOPPING, ("etsy",), ("etsy.com",)),
    ("aliexpress", _SHOPPING, ("aliexpress",), ("aliexpress.*",)),
    ("google shopping", _SHOPPING, ("google shopping", "igshopping"), ("shopping.google.com",)),
    ("jumia", _SHOPPING, ("jumia",), ("jumia.*",)),
    ("namshi", _SHOPPING, ("namshi",), ("namshi.com",)),
    ("ounass", _SHOPPING, ("ounass",), ("ounass.ae", "ounass.com", "ounass.sa")),
    ("temu", _SHOPPING, ("temu",), ("temu.com",)),
    ("shein", _SHOPPING, ("shein",), ("shein.*",)),
    ("trendyol", _SHOPPING, ("trendyol",), ("trendyol.com",)),
    ("walmart", _SHOPPING, ("walmart",), ("walmart.com",)),
    ("sivvi", _SHOPPING, ("sivvi",), ("sivvi.com",)),
    ("6thstreet", _SHOPPING, ("6thstreet",), ("6thstreet.com",)),
)  # fmt: skip

# Hosts that a "brand.*" pattern would catch but that are not the brand's search/shop: a click from
# Gmail or the AWS console is not Organic Search / Organic Shopping.
_BRAND_EXCLUDED = re.compile(
    r"^(?:[\w-]+\.)*(?:mail|accounts|myaccount|docs|drive|calendar|meet|chat|sites|classroom|photos|"
    r"keep|contacts|play|support|ads|analytics|tagmanager|business|marketingplatform)"
    r"\.google\.|"
    r"^(?:[\w-]+\.)*(?:aws|sellercentral|advertising|developer|affiliate-program)\.amazon\."
)

# GA4's regexes, verbatim. DOTALL so arbitrary input with newlines is still judged as a whole.
_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$", re.DOTALL)
_SHOPPING_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$", re.DOTALL)

_DISPLAY_MEDIA = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIA = frozenset(
    {"social", "social-network", "social-media", "sm", "social network", "social media"}
)
_EMAIL = frozenset({"email", "e-mail", "e_mail", "e mail"})
_REFERRAL_MEDIA = frozenset({"referral", "app", "link"})

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_HOST = re.compile(r"^[\w-]+(?:\.[\w-]+)*$")
_SITE_LIST_KEYS = {
    "search_sites": _SEARCH,
    "social_sites": _SOCIAL,
    "video_sites": _VIDEO,
    "shopping_sites": _SHOPPING,
}
_OVERRIDE_KEYS = (*_SITE_LIST_KEYS, "extra", "rules")
_RULE_FIELDS = ("source", "medium", "campaign")
_RULE_KEYS = ("channel", *_RULE_FIELDS, *(f"{f}_regex" for f in _RULE_FIELDS))
CHANNEL_BY_LOWER = {c.lower(): c for c in CHANNELS}


def referrer_domain(url: str | None) -> str | None:
    """Host of a referrer URL, lowercased and without "www."; None for anything unusable.

    Accepts full URLs, protocol-relative URLs, bare hosts and Android app referrers
    (android-app://com.instagram.android/ -> "com.instagram.android"). Never raises: referrers
    are attacker-controlled input and one bad header must not break a session.
    """
    if not isinstance(url, str):
        return None
    s = url.strip()
    if not s:
        return None
    m = _SCHEME.match(s)
    if m is None:
        if not s.startswith("//"):
            s = "//" + s
    elif s[m.end() : m.end() + 2] != "//":
        rest = s[m.end() :]
        # "shop.com:8080/x" parses as scheme "shop.com"; a port right after the colon means it is
        # really a bare host. Anything else (mailto:, javascript:, data:) has no host at all.
        if not rest[:1].isdigit():
            return None
        s = "//" + s
    try:
        host = urlsplit(s).hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if not host:
        return None
    host = host.lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    if len(host) > 253 or not _HOST.match(host):
        return None
    # A single label ("foo") is a typo or junk, never a real referring site; keep localhost for dev.
    if "." not in host and host != "localhost":
        return None
    return host


def click_id_from_query(params: Mapping[str, Any]) -> str | None:
    """The first recognised click-id parameter NAME with a non-empty value, in CLICK_ID_PARAMS order.

    Names match case-insensitively (Snapchat sends "ScCid") and the canonical lowercase name is
    returned. Values may be strings or lists of strings (as parse_qs returns).
    """
    present: set[str] = set()
    try:
        for name, value in params.items():
            if not isinstance(name, str):
                continue
            if isinstance(value, (list, tuple)):
                value = next((v for v in value if isinstance(v, str) and v.strip()), "")
            if isinstance(value, str) and value.strip():
                present.add(name.strip().lower())
    except (AttributeError, TypeError):
        return None
    for name in CLICK_ID_PARAMS:
        if name in present:
            return name
    return None


def is_paid_medium(medium: str | None) -> bool:
    """Whether a medium says the click was bought: GA4's paid-medium regex or a display medium,
    the mediums that stop ``classify`` before its organic rows (custom rules do not change it)."""
    m = _clean(medium)
    return _PAID_MEDIUM.match(m) is not None or m in _DISPLAY_MEDIA


def _clean(value: object) -> str:
    """Lowercased, stripped text; '' for None so rules can compare without None checks."""
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value)).strip().lower()


def _suffixes(host: str) -> Iterable[str]:
    """Every parent of a host that is still a domain: a.b.c -> a.b.c, b.c (never the bare TLD)."""
    while "." in host:
        yield host
        host = host.split(".", 1)[1]


def _normalize_site(entry: str) -> str:
    s = entry.strip().lower()
    if "://" in s:
        s = referrer_domain(s) or s
    if s.startswith("*."):
        s = s[2:]  # subdomains always match; accept the wildcard spelling people expect
    if s.startswith("www."):
        s = s[4:]
    return s


class _SiteSet:
    """One category's sites: exact names, domains (+ subdomains) and "brand.*" families."""

    __slots__ = ("names", "domains", "brands", "brand_re")

    def __init__(self, entries: Iterable[tuple[str, str]]):
        # entries: (canonical name, normalized entry)
        self.names: dict[str, str] = {}
        self.domains: dict[str, str] = {}
        self.brands: dict[str, str] = {}
        for name, entry in entries:
            if entry.endswith(".*"):
                self.brands.setdefault(entry[:-2], name)
            elif "." in entry:
                self.domains.setdefault(entry, name)
            else:
                self.names.setdefault(entry, name)
        self.brand_re = None
        if self.brands:
            alternatives = "|".join(re.escape(b) for b in sorted(self.brands, key=len, reverse=True))
            # brand + optional second-level (com., co., ...) + a 2-3 letter TLD: google.com.sa,
            # google.ae, amazon.co.uk, but not google.evil.example.
            self.brand_re = re.compile(
                rf"(?:^|\.)({alternatives})\.(?:(?:com?|org|net|gov|edu|ac|ne|or|go)\.)?[a-z]{{2,3}}$"
            )

    def lookup(self, value: str) -> str | None:
        """The canonical site name if `value` (a source name or a host) is on this list."""
        if not value:
            return None
        hit = self.names.get(value) or self.domains.get(value)
        if hit:
            return hit
        for suffix in _suffixes(value):
            hit = self.domains.get(suffix)
            if hit:
                return hit
        if self.brand_re is not None:
            m = self.brand_re.search(value)
            if m and not _BRAND_EXCLUDED.match(value):
                return self.brands[m.group(1)]
        return None


@dataclass(frozen=True)
class _Rule:
    channel: str
    exact: tuple[tuple[int, frozenset[str]], ...]  # (field index, accepted values)
    regex: tuple[tuple[int, re.Pattern[str]], ...]

    def matches(self, values: tuple[str, str, str]) -> bool:
        return all(values[i] in accepted for i, accepted in self.exact) and all(
            p.fullmatch(values[i]) for i, p in self.regex
        )


class ChannelRules:
    """Site lists + rule order; overridable per store (source).

    Build with default() or from_overrides(); both return shared, immutable instances so the
    per-instance result caches stay warm across sessions. Instances compare and hash by their
    configuration.
    """

    __slots__ = (
        "_sites",
        "_aliases",
        "_rules",
        "_key",
        "_attribute_cached",
        "_classify_cached",
        "__weakref__",
    )

    def __init__(
        self,
        additions: Mapping[str, tuple[str, ...]] | None = None,
        aliases: Mapping[str, str] | None = None,
        rules: tuple[_Rule, ...] = (),
        key: tuple[Any, ...] = (),
    ):
        additions = additions or {}
        sites: dict[str, _SiteSet] = {}
        for category in _CATEGORIES:
            entries = [
                (name, _normalize_site(e))
                for name, cat, names, domains in _DEFAULT_SITES
                if cat == category
                for e in (*names, *domains)
            ]
            # A store's own additions name themselves: "haraj.com.sa" reports as "haraj.com.sa".
            entries += [(e.removesuffix(".*"), e) for e in additions.get(category, ())]
            sites[category] = _SiteSet(entries)
        self._sites = sites
        self._aliases: dict[str, str] = dict(aliases or {})
        self._rules = rules
        self._key = key
        # Per-instance caches (not lru_cache on the methods, which would key on self and keep
        # every instance alive). Sizes bound memory for a long-running ingestor.
        self._attribute_cached = functools.lru_cache(maxsize=16384)(self._attribute_uncached)
        self._classify_cached = functools.lru_cache(maxsize=4096)(self._classify_uncached)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def default(cls) -> ChannelRules:
        return _default_rules()

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None) -> ChannelRules:
        """Rules with a store's overrides applied; ValueError naming the bad key if invalid."""
        if not overrides:
            if overrides is None or isinstance(overrides, Mapping):
                return cls.default()
            raise ValueError(f"channel overrides must be an object, got {type(overrides).__name__}")
        if not isinstance(overrides, Mapping):
            raise ValueError(f"channel overrides must be an object, got {type(overrides).__name__}")
        try:
            # Overrides come from JSON stored per source, so the canonical JSON text is a cheap,
            # hashable cache key: a store's rules are built once, not once per session.
            text = json.dumps(overrides, sort_keys=True)
        except (TypeError, ValueError):
            return _build_from_overrides(overrides)
        return _from_overrides_json(text)

    # -- public API -------------------------------------------------------------------------------

    def attribute(self, touch: Touch, own_domains: Iterable[str] = ()) -> Attribution:
        """Source / medium / campaign / channel of a session's first touch (see docs/channels.md)."""
        own = own_domains if isinstance(own_domains, (tuple, frozenset)) else tuple(own_domains)
        try:
            return self._attribute_cached(touch, own)
        except TypeError:  # unhashable junk in a field; still answer, just without the cache
            return self._attribute_uncached(touch, own)

    def classify(self, source: str | None, medium: str | None, campaign: str | None) -> str:
        """GA4's default channel group for a source / medium / campaign (custom rules first)."""
        try:
            return self._classify_cached(source, medium, campaign)
        except TypeError:
            return self._classify_uncached(source, medium, campaign)

    def site(self, value: str | None) -> tuple[str, str] | None:
        """(name, category) of the site list ``value`` is on, or None.

        ``value`` is a source name (``ig``, ``twitter``, ``meta``) or a host (``l.instagram.com``,
        ``google.com.sa``, ``amazon.sa``); the name is the list's own (``instagram``, ``x``,
        ``facebook``, ``google``, ``amazon``) and the category one of shopping, search, social,
        video. Shopping is looked up first, as for referrers, so ``shopping.google.com`` is Google
        Shopping, not Google Search.
        """
        clean = _clean(value)
        clean = clean[4:] if clean.startswith("www.") else clean
        for category in _CATEGORIES:
            name = self._site(category, clean)
            if name:
                return name, category
        return None

    def platform(
        self, source: str | None, click_id: str | None = None, referrer: str | None = None
    ) -> tuple[str, str] | None:
        """(name, category) of the platform a session came from, or None (direct, email, a plain
        referral): its source when that is on a site list, else what its click id or referrer
        alone would make the source. The fallback matters when UTM tags win with a source no list
        knows (``utm_source=summer_promo`` on a landing URL with a ``ttclid``: TikTok)."""
        found = self.site(source)
        if found is None and (click_id or referrer):
            found = self.site(self.attribute(Touch(click_id=click_id, referrer_domain=referrer)).source)
        return found

    # -- internals --------------------------------------------------------------------------------

    def _site(self, category: str, value: str) -> str | None:
        return self._sites[category].lookup(value)

    def _attribute_uncached(self, touch: Touch, own_domains: Iterable[str]) -> Attribution:
        source_raw = _clean(touch.utm_source)
        medium_raw = _clean(touch.utm_medium)
        campaign = touch.utm_campaign.strip() if isinstance(touch.utm_campaign, str) else None
        campaign = campaign or None
        source, medium = self._source_medium(touch, source_raw, medium_raw, own_domains)
        return Attribution(source, medium, campaign, self.classify(source, medium, campaign))

    def _source_medium(
        self, touch: Touch, source: str, medium: str, own_domains: Iterable[str]
    ) -> tuple[str, str]:
        # 1. Explicit tagging wins: the marketer told us.
        if source or medium:
            return source or "(not set)", medium or "(not set)"

        referrer = referrer_domain(touch.referrer_domain) if touch.referrer_domain else None

        # 2. Ad-platform click ids: ad clicks often arrive with the referrer stripped by in-app
        # browsers, so the id is the strongest remaining signal.
        click_id = _clean(touch.click_id)
        if click_id == "fbclid":
            # Meta appends fbclid to organic shares too, so it cannot prove an ad click.
            if referrer and self._site(_SOCIAL, referrer) == "instagram":
                return "instagram", "social"
            return "facebook", "social"
        if click_id in _CLICK_IDS:
            return _CLICK_IDS[click_id]

        # 3. The referrer.
        if referrer:
            own = {d for d in (referrer_domain(o) for o in own_domains if isinstance(o, str)) if d}
            if not any(s in own for s in (referrer, *_suffixes(referrer))):
                return self._referrer_source_medium(referrer)

        # 4. Nothing at all.
        return "(direct)", "(none)"

    def _referrer_source_medium(self, host: str) -> tuple[str, str]:
        for suffix in _suffixes(host):
            alias = self._aliases.get(suffix)
            if alias:
                return alias, "organic" if self._site(_SEARCH, alias) else "referral"
        # Shopping before search so shopping.google.com is not mistaken for Google Search. Shops
        # keep the full domain (amazon.sa vs amazon.ae is worth seeing).
        if self._site(_SHOPPING, host):
            return host, "referral"
        name = self._site(_SEARCH, host)
        if name:
            return name, "organic"
        # Social and video referrers keep GA4's "referral" medium; classify() still puts them in
        # Organic Social / Organic Video because the source is on those lists.
        name = self._site(_SOCIAL, host) or self._site(_VIDEO, host)
        if name:
            return name, "referral"
        return host, "referral"

    def _classify_uncached(self, source: str | None, medium: str | None, campaign: str | None) -> str:
        s, m, c = _clean(source), _clean(medium), _clean(campaign)
        for rule in self._rules:
            if rule.matches((s, m, c)):
                return rule.channel
        site = s[4:] if s.startswith("www.") else s

        if s == "(direct)" and m in ("(none)", "(not set)"):
            return "Direct"
        if "cross-network" in c:
            return "Cross-network"
        paid = _PAID_MEDIUM.match(m) is not None
        shopping = self._site(_SHOPPING, site) is not None or _SHOPPING_CAMPAIGN.match(c) is not None
        search = self._site(_SEARCH, site) is not None
        social = self._site(_SOCIAL, site) is not None
        video = self._site(_VIDEO, site) is not None
        if paid:
            if shopping:
                return "Paid Shopping"
            if search:
                return "Paid Search"
            if social:
                return "Paid Social"
            if video:
                return "Paid Video"
        if m in _DISPLAY_MEDIA:
            return "Display"
        if paid:
            # GA4 calls this "Paid Other"; the product has no such channel, so it is Unassigned
            # here - it must still stop here rather than fall through to the organic rules.
            return "Unassigned"
        if shopping:
            return "Organic Shopping"
        if social or m in _SOCIAL_MEDIA:
            return "Organic Social"
        if video or "video" in m:
            return "Organic Video"
        if search or m == "organic":
            return "Organic Search"
        if s in _EMAIL or m in _EMAIL:
            return "Email"
        if m == "affiliate":
            return "Affiliates"
        if m in _REFERRAL_MEDIA:
            return "Referral"
        if m == "audio":
            return "Audio"
        if s == "sms" or m == "sms":
            return "SMS"
        if m.endswith("push") or "mobile" in m or "notification" in m or s == "firebase":
            return "Mobile Push Notifications"
        return "Unassigned"

    # -- identity ---------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChannelRules) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return "ChannelRules.default()" if not self._key else f"ChannelRules(overrides={self._key!r})"


@functools.cache
def _default_rules() -> ChannelRules:
    return ChannelRules()


@functools.lru_cache(maxsize=256)
def _from_overrides_json(text: str) -> ChannelRules:
    return _build_from_overrides(json.loads(text))


def _build_from_overrides(overrides: Mapping[str, Any]) -> ChannelRules:
    for key in overrides:
        if key not in _OVERRIDE_KEYS:
            raise ValueError(
                f"unknown channel override key {key!r}; allowed keys: {', '.join(_OVERRIDE_KEYS)}"
            )
    additions: dict[str, tuple[str, ...]] = {}
    for key, category in _SITE_LIST_KEYS.items():
        if key in overrides:
            additions[category] = _parse_site_list(key, overrides[key])
    aliases = _parse_extra(overrides.get("extra"))
    rules = _parse_rules(overrides.get("rules"))
    if not additions and not aliases and not rules:
        return _default_rules()
    key = (
        tuple((c, tuple(sorted(set(additions.get(c, ()))))) for c in _CATEGORIES),
        tuple(sorted(aliases.items())),
        tuple(
            (
                r.channel,
                tuple((i, tuple(sorted(v))) for i, v in r.exact),
                tuple((i, p.pattern) for i, p in r.regex),
            )
            for r in rules
        ),
    )
    return ChannelRules(additions, aliases, rules, key)


def _parse_site_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"channel override {key!r} must be a list of site names or domains")
    out: list[str] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"channel override {key}[{i}] must be a non-empty string, got {entry!r}")
        site = _normalize_site(entry)
        if "*" in site.removesuffix(".*") or site in ("", "*"):
            raise ValueError(
                f"channel override {key}[{i}] {entry!r}: '*' is only allowed as 'brand.*' (any country TLD)"
            )
        out.append(site)
    return tuple(out)


def _parse_extra(value: Any) -> dict[str, str]:
    """extra: {referrer host: source name}, e.g. {"linktr.ee": "instagram"}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            "channel override 'extra' must be an object mapping a referrer domain to a source name"
        )
    aliases: dict[str, str] = {}
    for host, name in value.items():
        domain = referrer_domain(host) if isinstance(host, str) else None
        if domain is None:
            raise ValueError(f"channel override extra: {host!r} is not a domain")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"channel override extra[{host!r}] must be a non-empty source name, got {name!r}"
            )
        aliases[domain] = name.strip().lower()
    return aliases


def _parse_rules(value: Any) -> tuple[_Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("channel override 'rules' must be a list of rule objects")
    rules: list[_Rule] = []
    for i, raw in enumerate(value):
        where = f"channel override rules[{i}]"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be an object, got {raw!r}")
        for k in raw:
            if k not in _RULE_KEYS:
                raise ValueError(f"{where}: unknown key {k!r}; allowed keys: {', '.join(_RULE_KEYS)}")
        channel = raw.get("channel")
        if not isinstance(channel, str) or channel.strip().lower() not in CHANNEL_BY_LOWER:
            raise ValueError(f"{where}: unknown channel {channel!r}; expected one of: {', '.join(CHANNELS)}")
        exact: list[tuple[int, frozenset[str]]] = []
        regex: list[tuple[int, re.Pattern[str]]] = []
        for idx, field in enumerate(_RULE_FIELDS):
            if field in raw:
                v = raw[field]
                values = [v] if isinstance(v, str) else v
                if (
                    not isinstance(values, (list, tuple))
                    or not values
                    or not all(isinstance(x, str) for x in values)
                ):
                    raise ValueError(f"{where}[{field!r}] must be a string or a non-empty list of strings")
                exact.append((idx, frozenset(_clean(x) for x in values)))
            rkey = f"{field}_regex"
            if rkey in raw:
                pattern = raw[rkey]
                if not isinstance(pattern, str):
                    raise ValueError(f"{where}[{rkey!r}] must be a string")
                try:
                    regex.append((idx, re.compile(pattern, re.IGNORECASE | re.DOTALL)))
                except re.error as e:
                    raise ValueError(
                        f"{where}[{rkey!r}]: invalid regular expression {pattern!r}: {e}"
                    ) from None
        if not exact and not regex:
            raise ValueError(f"{where} needs at least one condition: {', '.join(_RULE_KEYS[1:])}")
        rules.append(_Rule(CHANNEL_BY_LOWER[channel.strip().lower()], tuple(exact), tuple(regex)))
    return tuple(rules)
