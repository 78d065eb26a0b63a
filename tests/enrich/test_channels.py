"""Channel grouping: GA4 rule table, source/medium derivation, referrer parsing and overrides."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masar.enrich.channels import (
    CHANNELS,
    CLICK_ID_PARAMS,
    Attribution,
    ChannelRules,
    Touch,
    click_id_from_query,
    is_paid_medium,
    referrer_domain,
)

RULES = ChannelRules.default()
OWN = ("mystore.com", "mystore.sa")


def test_channel_names_are_the_18_product_channels() -> None:
    assert len(CHANNELS) == 18
    assert len(set(CHANNELS)) == 18
    assert "Paid Other" not in CHANNELS
    assert CHANNELS[0] == "Direct" and CHANNELS[-1] == "Unassigned"


def test_click_id_params_cover_every_platform() -> None:
    for name in (
        "gclid", "gbraid", "wbraid", "gad_source", "dclid", "msclkid", "ttclid",
        "sccid", "twclid", "li_fat_id", "epik", "fbclid",
    ):  # fmt: skip
        assert name in CLICK_ID_PARAMS
    # fbclid is ambiguous (organic shares carry it too), so any real ad id takes priority.
    assert CLICK_ID_PARAMS[-1] == "fbclid"


# --- referrer_domain --------------------------------------------------------------------------------

REFERRER_CASES = [
    ("https://www.Google.com.sa/search?q=x", "google.com.sa"),
    ("https://l.instagram.com/?u=https%3A%2F%2Fmystore.com", "l.instagram.com"),
    ("http://m.facebook.com/", "m.facebook.com"),
    ("https://t.co/AbC123", "t.co"),
    ("https://wa.me/966500000000", "wa.me"),
    ("https://t.me/mystore", "t.me"),
    ("https://www.snapchat.com/add/x", "snapchat.com"),
    ("android-app://com.google.android.gm/", "com.google.android.gm"),
    ("//cdn.example.org/path", "cdn.example.org"),
    ("google.ae", "google.ae"),
    ("shop.com:8080/x", "shop.com"),
    ("https://user:pw@WWW.Example.COM:443/a?b#c", "example.com"),
    ("https://example.com./", "example.com"),
    ("https://مثال.السعودية/", "مثال.السعودية"),
    ("http://localhost:8000/", "localhost"),
    (None, None),
    ("", None),
    ("   ", None),
    ("not a url", None),
    ("garbage", None),
    ("http://", None),
    ("https://", None),
    ("javascript:alert(1)", None),
    ("mailto:x@example.com", None),
    ("http://[::1", None),
    ("%%%", None),
    (":::", None),
]


@pytest.mark.parametrize(("url", "expected"), REFERRER_CASES)
def test_referrer_domain(url: str | None, expected: str | None) -> None:
    assert referrer_domain(url) == expected


# --- click_id_from_query --------------------------------------------------------------------------

CLICK_QUERY_CASES = [
    ({"gclid": "abc"}, "gclid"),
    ({"utm_source": "x", "fbclid": "IwAR"}, "fbclid"),
    ({"fbclid": "IwAR", "gclid": "abc"}, "gclid"),  # a real ad id beats fbclid
    ({"ScCid": "123"}, "sccid"),  # Snapchat's spelling, matched case-insensitively
    ({"gad_source": "1", "gclid": "x"}, "gclid"),
    ({"gclid": ""}, None),  # present but empty
    ({"gclid": "   "}, None),
    ({"ttclid": ["", "E.C.P"]}, "ttclid"),  # parse_qs-style lists
    ({"q": "shoes"}, None),
    ({}, None),
]


@pytest.mark.parametrize(("params", "expected"), CLICK_QUERY_CASES)
def test_click_id_from_query(params: dict[str, object], expected: str | None) -> None:
    assert click_id_from_query(params) == expected  # type: ignore[arg-type]


# --- classify: the GA4 table ---------------------------------------------------------------------

CLASSIFY_CASES = [
    # Direct
    ("(direct)", "(none)", None, "Direct"),
    ("(direct)", "(not set)", None, "Direct"),
    ("(Direct)", "(NONE)", None, "Direct"),
    # Cross-network beats everything after Direct, even a paid search source
    ("google", "cpc", "PMax Cross-Network Ramadan", "Cross-network"),
    # Paid Shopping: shopping site or shop campaign + paid medium
    ("amazon.sa", "cpc", None, "Paid Shopping"),
    ("google", "cpc", "eshop_ramadan", "Paid Shopping"),
    ("shopping.google.com", "ppc", None, "Paid Shopping"),
    ("igshopping", "paid", None, "Paid Shopping"),
    # Paid Search
    ("google", "cpc", "brand", "Paid Search"),
    ("Bing", "CPC", None, "Paid Search"),
    ("google.com.eg", "ppc", None, "Paid Search"),
    ("petalsearch.com", "paid_search", None, "Paid Search"),
    # Paid Social
    ("facebook", "paid_social", None, "Paid Social"),
    ("ig", "cpc", None, "Paid Social"),
    ("tiktok", "cpc", None, "Paid Social"),
    ("snapchat", "retargeting", None, "Paid Social"),
    ("meta", "cpm", None, "Paid Social"),  # cpm is paid before it is Display
    ("x", "cpc", None, "Paid Social"),
    # Paid Video
    ("youtube", "cpv", None, "Paid Video"),
    ("youtube.com", "paid", None, "Paid Video"),
    # Display
    ("dv360", "display", None, "Display"),
    ("news-site", "banner", None, "Display"),
    ("gdn", "cpm", None, "Display"),
    # GA4's "Paid Other" -> Unassigned (and it must not fall through to Email / Referral)
    ("newsletter", "cpc", None, "Unassigned"),
    ("email", "paid", None, "Unassigned"),
    # Organic Shopping
    ("noon.com", "referral", None, "Organic Shopping"),
    ("partner", "referral", "shopping_week", "Organic Shopping"),
    # Organic Social: by source list or by medium
    ("instagram", "influencer", None, "Organic Social"),
    ("whatsapp", "(not set)", None, "Organic Social"),
    ("wa.me", "referral", None, "Organic Social"),
    ("telegram", "broadcast", None, "Organic Social"),
    ("unknown-forum", "social-network", None, "Organic Social"),
    ("unknown-forum", "Social Media", None, "Organic Social"),
    ("lm.facebook.com", "referral", None, "Organic Social"),
    # Organic Video
    ("youtube", "referral", None, "Organic Video"),
    ("some-blog", "video_review", None, "Organic Video"),
    # Organic Search
    ("google", "organic", None, "Organic Search"),
    ("duckduckgo.com", "referral", None, "Organic Search"),
    ("my-engine", "organic", None, "Organic Search"),
    ("yandex.ru", "referral", None, "Organic Search"),
    # Email
    ("newsletter", "email", None, "Email"),
    ("e-mail", "whatever", None, "Email"),
    ("klaviyo", "E_Mail", None, "Email"),
    # Affiliates
    ("cashback-site", "affiliate", None, "Affiliates"),
    # Referral
    ("blog.example.com", "referral", None, "Referral"),
    ("partner", "app", None, "Referral"),
    ("partner", "link", None, "Referral"),
    ("mail.google.com", "referral", None, "Referral"),  # Gmail is not Google Search
    # Audio
    ("anghami", "audio", None, "Audio"),
    # SMS
    ("sms", "(not set)", None, "SMS"),
    ("unifonic", "sms", None, "SMS"),
    # Mobile Push Notifications
    ("onesignal", "web_push", None, "Mobile Push Notifications"),
    ("app", "mobile_banner", None, "Mobile Push Notifications"),
    ("app", "notification", None, "Mobile Push Notifications"),
    ("firebase", "(not set)", None, "Mobile Push Notifications"),
    # Unassigned
    ("newsletter", "(not set)", None, "Unassigned"),
    ("(direct)", "organic_typo", None, "Unassigned"),
    (None, None, None, "Unassigned"),
    ("", "", "", "Unassigned"),
    # Look-alikes must not match a listed site
    ("notgoogle.com", "cpc", None, "Unassigned"),
    ("google.evil.example", "referral", None, "Referral"),
]


@pytest.mark.parametrize(("source", "medium", "campaign", "channel"), CLASSIFY_CASES)
def test_classify(source: str | None, medium: str | None, campaign: str | None, channel: str) -> None:
    assert RULES.classify(source, medium, campaign) == channel


# --- attribute: source / medium derivation -------------------------------------------------------

ATTRIBUTE_CASES = [
    # 1. UTM tags win and are normalised
    (Touch(utm_source=" Instagram ", utm_medium="Paid_Social", utm_campaign=" Eid "), (), ("instagram", "paid_social", "Eid", "Paid Social")),
    (Touch(utm_source="snapchat", utm_medium="influencer"), (), ("snapchat", "influencer", None, "Organic Social")),
    (Touch(utm_source="google"), (), ("google", "(not set)", None, "Organic Search")),
    (Touch(utm_medium="email"), (), ("(not set)", "email", None, "Email")),
    (Touch(utm_source="google", utm_medium="cpc", click_id="fbclid"), (), ("google", "cpc", None, "Paid Search")),
    (Touch(utm_source="klaviyo", utm_medium="email", referrer_domain="mail.google.com"), (), ("klaviyo", "email", None, "Email")),
    (Touch(utm_source="   ", utm_medium="", referrer_domain="t.co"), (), ("x", "referral", None, "Organic Social")),
    # 2. Every click id
    (Touch(click_id="gclid"), (), ("google", "cpc", None, "Paid Search")),
    (Touch(click_id="gad_source"), (), ("google", "cpc", None, "Paid Search")),
    (Touch(click_id="gbraid"), (), ("google", "cpc", None, "Paid Search")),
    (Touch(click_id="wbraid"), (), ("google", "cpc", None, "Paid Search")),
    (Touch(click_id="dclid"), (), ("google", "cpc", None, "Paid Search")),
    (Touch(click_id="msclkid"), (), ("bing", "cpc", None, "Paid Search")),
    (Touch(click_id="ttclid"), (), ("tiktok", "cpc", None, "Paid Social")),
    (Touch(click_id="sccid"), (), ("snapchat", "cpc", None, "Paid Social")),
    (Touch(click_id="ScCid"), (), ("snapchat", "cpc", None, "Paid Social")),
    (Touch(click_id="twclid"), (), ("x", "cpc", None, "Paid Social")),
    (Touch(click_id="li_fat_id"), (), ("linkedin", "cpc", None, "Paid Social")),
    (Touch(click_id="epik"), (), ("pinterest", "cpc", None, "Paid Social")),
    (Touch(click_id="GCLID", utm_campaign="PMax cross-network"), (), ("google", "cpc", "PMax cross-network", "Cross-network")),
    (Touch(click_id="gclid", utm_campaign="shopping_ramadan"), (), ("google", "cpc", "shopping_ramadan", "Paid Shopping")),
    (Touch(click_id="gclid", referrer_domain="mystore.com"), OWN, ("google", "cpc", None, "Paid Search")),
    # fbclid is organic social; the referrer only picks facebook vs instagram
    (Touch(click_id="fbclid"), (), ("facebook", "social", None, "Organic Social")),
    (Touch(click_id="fbclid", referrer_domain="l.instagram.com"), (), ("instagram", "social", None, "Organic Social")),
    (Touch(click_id="fbclid", referrer_domain="lm.facebook.com"), (), ("facebook", "social", None, "Organic Social")),
    (Touch(click_id="fbclid", referrer_domain="google.com"), (), ("facebook", "social", None, "Organic Social")),
    (Touch(click_id="unknown_id", referrer_domain="bing.com"), (), ("bing", "organic", None, "Organic Search")),
    # 3. Referrers, including the platforms stores in the region live on
    (Touch(referrer_domain="google.com.sa"), (), ("google", "organic", None, "Organic Search")),
    (Touch(referrer_domain="google.ae"), (), ("google", "organic", None, "Organic Search")),
    (Touch(referrer_domain="google.com.eg"), (), ("google", "organic", None, "Organic Search")),
    (Touch(referrer_domain="google.com.kw"), (), ("google", "organic", None, "Organic Search")),
    (Touch(referrer_domain="google.jo"), (), ("google", "organic", None, "Organic Search")),
    (Touch(referrer_domain="com.google.android.googlequicksearchbox"), (), ("google", "organic", None, "Organic Search")),
    (Touch(referrer_domain="search.yahoo.com"), (), ("yahoo", "organic", None, "Organic Search")),
    (Touch(referrer_domain="petalsearch.com"), (), ("petalsearch", "organic", None, "Organic Search")),
    (Touch(referrer_domain="l.instagram.com"), (), ("instagram", "referral", None, "Organic Social")),
    (Touch(referrer_domain="m.facebook.com"), (), ("facebook", "referral", None, "Organic Social")),
    (Touch(referrer_domain="t.co"), (), ("x", "referral", None, "Organic Social")),
    (Touch(referrer_domain="wa.me"), (), ("whatsapp", "referral", None, "Organic Social")),
    (Touch(referrer_domain="web.whatsapp.com"), (), ("whatsapp", "referral", None, "Organic Social")),
    (Touch(referrer_domain="t.me"), (), ("telegram", "referral", None, "Organic Social")),
    (Touch(referrer_domain="snapchat.com"), (), ("snapchat", "referral", None, "Organic Social")),
    (Touch(referrer_domain="vm.tiktok.com"), (), ("tiktok", "referral", None, "Organic Social")),
    (Touch(referrer_domain="lnkd.in"), (), ("linkedin", "referral", None, "Organic Social")),
    (Touch(referrer_domain="youtu.be"), (), ("youtube", "referral", None, "Organic Video")),
    (Touch(referrer_domain="m.youtube.com"), (), ("youtube", "referral", None, "Organic Video")),
    (Touch(referrer_domain="amazon.ae"), (), ("amazon.ae", "referral", None, "Organic Shopping")),
    (Touch(referrer_domain="shopping.google.com"), (), ("shopping.google.com", "referral", None, "Organic Shopping")),
    (Touch(referrer_domain="jumia.com.eg"), (), ("jumia.com.eg", "referral", None, "Organic Shopping")),
    (Touch(referrer_domain="blog.example.com"), (), ("blog.example.com", "referral", None, "Referral")),
    (Touch(referrer_domain="https://www.Example.com/post"), (), ("example.com", "referral", None, "Referral")),
    (Touch(referrer_domain="L.Instagram.COM"), (), ("instagram", "referral", None, "Organic Social")),
    # own domains (and their subdomains) are not referrers
    (Touch(referrer_domain="mystore.com"), OWN, ("(direct)", "(none)", None, "Direct")),
    (Touch(referrer_domain="checkout.mystore.sa"), OWN, ("(direct)", "(none)", None, "Direct")),
    (Touch(referrer_domain="mystore.com"), ("https://www.MyStore.com/",), ("(direct)", "(none)", None, "Direct")),
    (Touch(referrer_domain="notmystore.com"), OWN, ("notmystore.com", "referral", None, "Referral")),
    # 4. Nothing
    (Touch(), (), ("(direct)", "(none)", None, "Direct")),
    (Touch(referrer_domain=""), (), ("(direct)", "(none)", None, "Direct")),
    (Touch(referrer_domain="not a url"), (), ("(direct)", "(none)", None, "Direct")),
    (Touch(utm_campaign="eid_sale"), (), ("(direct)", "(none)", "eid_sale", "Direct")),
]  # fmt: skip


@pytest.mark.parametrize(("touch", "own", "expected"), ATTRIBUTE_CASES)
def test_attribute(touch: Touch, own: tuple[str, ...], expected: tuple[str, str, str | None, str]) -> None:
    assert RULES.attribute(touch, own) == Attribution(*expected)


def test_attribute_accepts_any_iterable_of_own_domains() -> None:
    touch = Touch(referrer_domain="mystore.com")
    assert RULES.attribute(touch, ["mystore.com"]).channel == "Direct"
    assert RULES.attribute(touch, {"mystore.com"}).channel == "Direct"
    assert RULES.attribute(touch, (d for d in ["mystore.com"])).channel == "Direct"
    assert RULES.attribute(touch).channel == "Referral"


def test_attribute_is_cached() -> None:
    rules = ChannelRules.from_overrides({"search_sites": ["cache-test-engine.example"]})
    touch = Touch(referrer_domain="cache-test-engine.example")
    first = rules.attribute(touch, OWN)
    assert rules.attribute(touch, OWN) is first


# --- overrides -----------------------------------------------------------------------------------

INFLUENCER = {"rules": [{"channel": "Affiliates", "medium": "influencer"}]}

OVERRIDE_CASES = [
    # custom rule beats the GA4 table (instagram/influencer would be Organic Social)
    (INFLUENCER, Touch(utm_source="instagram", utm_medium="Influencer"), "Affiliates"),
    (INFLUENCER, Touch(utm_source="instagram", utm_medium="story"), "Organic Social"),
    ({"rules": [{"channel": "Paid Social", "source": ["snapchat", "tiktok"], "medium_regex": "influenc.*"}]},
     Touch(utm_source="TikTok", utm_medium="influencer_q2"), "Paid Social"),
    ({"rules": [{"channel": "Email", "campaign_regex": ".*newsletter.*"}]},
     Touch(utm_source="mailchimp", utm_medium="(not set)", utm_campaign="Weekly-Newsletter"), "Email"),
    ({"rules": [{"channel": "sms", "source": "unifonic"}]}, Touch(utm_source="unifonic", utm_medium="blast"), "SMS"),
    # regexes are full matches, like GA4's "matches regex"
    ({"rules": [{"channel": "Affiliates", "medium_regex": "influenc"}]},
     Touch(utm_source="blogger", utm_medium="influencer"), "Unassigned"),
    # first matching custom rule wins
    ({"rules": [{"channel": "Audio", "medium": "podcast"}, {"channel": "Affiliates", "medium": "podcast"}]},
     Touch(utm_source="anghami", utm_medium="podcast"), "Audio"),
    # list additions add to the defaults
    ({"search_sites": ["haraj.com.sa"]}, Touch(referrer_domain="haraj.com.sa"), "Organic Search"),
    ({"search_sites": ["haraj.com.sa"]}, Touch(referrer_domain="google.com.sa"), "Organic Search"),
    ({"social_sites": ["mastodon.social"]}, Touch(referrer_domain="ar.mastodon.social"), "Organic Social"),
    ({"social_sites": ["Linktree"]}, Touch(utm_source="linktree", utm_medium="cpc"), "Paid Social"),
    ({"video_sites": ["www.tod.tv"]}, Touch(referrer_domain="tod.tv"), "Organic Video"),
    ({"shopping_sites": ["salla.*"]}, Touch(utm_source="salla.sa", utm_medium="cpc"), "Paid Shopping"),
    ({"shopping_sites": ["*.souq.com"]}, Touch(referrer_domain="egypt.souq.com"), "Organic Shopping"),
    # extra: referrer host -> source name
    ({"extra": {"linktr.ee": "instagram"}}, Touch(referrer_domain="linktr.ee"), "Organic Social"),
    ({"extra": {"https://www.startpage.example/": "mysearch"}, "search_sites": ["mysearch"]},
     Touch(referrer_domain="startpage.example"), "Organic Search"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "touch", "channel"), OVERRIDE_CASES)
def test_overrides(overrides: dict[str, object], touch: Touch, channel: str) -> None:
    assert ChannelRules.from_overrides(overrides).attribute(touch).channel == channel


def test_extra_alias_sets_the_source_and_medium() -> None:
    rules = ChannelRules.from_overrides({"extra": {"linktr.ee": "Instagram", "mysearch.example": "google"}})
    assert rules.attribute(Touch(referrer_domain="linktr.ee")) == Attribution(
        "instagram", "referral", None, "Organic Social"
    )
    assert rules.attribute(Touch(referrer_domain="mysearch.example")).medium == "organic"


def test_additions_do_not_leak_into_defaults() -> None:
    ChannelRules.from_overrides({"search_sites": ["leak-check.example"]})
    assert ChannelRules.default().classify("leak-check.example", "referral", None) == "Referral"


INVALID_OVERRIDES = [
    ({"socials": ["x.com"]}, "socials"),
    ({"rules": [{"channel": "Paid Other", "medium": "cpc"}]}, "Paid Other"),
    ({"rules": [{"channel": "Affiliates", "medium_regex": "(influencer"}]}, "medium_regex"),
    ({"rules": [{"channel": "Affiliates"}]}, "at least one condition"),
    ({"rules": [{"medium": "influencer"}]}, "unknown channel None"),
    ({"rules": [{"channel": "Affiliates", "mediums": "x"}]}, "mediums"),
    ({"rules": [{"channel": "Affiliates", "medium": 3}]}, "medium"),
    ({"rules": {"channel": "Affiliates"}}, "'rules' must be a list"),
    ({"rules": ["Affiliates"]}, "rules[0]"),
    ({"search_sites": "google.com"}, "search_sites"),
    ({"social_sites": ["ok.com", ""]}, "social_sites[1]"),
    ({"shopping_sites": ["am*zon.com"]}, "shopping_sites[0]"),
    ({"extra": ["linktr.ee"]}, "extra"),
    ({"extra": {"linktr.ee": ""}}, "extra['linktr.ee']"),
    ({"extra": {"not a domain": "instagram"}}, "not a domain"),
    (["search_sites"], "must be an object"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID_OVERRIDES)
def test_invalid_overrides_raise_value_error_naming_the_problem(overrides: object, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        ChannelRules.from_overrides(overrides)  # type: ignore[arg-type]
    assert message in str(excinfo.value)


def test_rules_are_shared_and_hashable() -> None:
    assert ChannelRules.from_overrides(None) is ChannelRules.default()
    assert ChannelRules.from_overrides({}) is ChannelRules.default()
    a = ChannelRules.from_overrides(
        {"rules": [{"channel": "Affiliates", "medium": "influencer"}], "search_sites": []}
    )
    b = ChannelRules.from_overrides(
        {"search_sites": [], "rules": [{"medium": "influencer", "channel": "Affiliates"}]}
    )
    assert a is b  # same JSON -> built once
    assert a == b and hash(a) == hash(b)
    assert a != ChannelRules.default()
    assert len({a, b, ChannelRules.default()}) == 2


# --- properties ----------------------------------------------------------------------------------

_text = (
    st.none()
    | st.text(max_size=40)
    | st.sampled_from(["gclid", "fbclid", "ScCid", "google.com.sa", "(direct)"])
)


@settings(max_examples=300, deadline=None)
@given(
    touch=st.builds(
        Touch,
        utm_source=_text,
        utm_medium=_text,
        utm_campaign=_text,
        click_id=_text,
        referrer_domain=_text,
    ),
    own=st.lists(st.text(max_size=20), max_size=3),
)
def test_attribute_never_raises_and_returns_a_known_channel(touch: Touch, own: list[str]) -> None:
    result = RULES.attribute(touch, own)
    assert result.channel in CHANNELS
    assert result.source and result.medium


@settings(max_examples=300, deadline=None)
@given(url=st.none() | st.text(max_size=60) | st.builds("https://{}/x".format, st.text(max_size=30)))
def test_referrer_domain_never_raises(url: str | None) -> None:
    host = referrer_domain(url)
    assert host is None or (host == host.lower() and not host.startswith("www.") and " " not in host)


@settings(max_examples=300, deadline=None)
@given(source=_text, medium=_text, campaign=_text)
def test_classify_always_returns_a_known_channel(
    source: str | None, medium: str | None, campaign: str | None
) -> None:
    assert RULES.classify(source, medium, campaign) in CHANNELS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("instagram", ("instagram", "social")), ("IG", ("instagram", "social")), ("l.instagram.com", ("instagram", "social")),
        ("meta", ("facebook", "social")), ("twitter", ("x", "social")), ("t.co", ("x", "social")),
        ("www.google.com.sa", ("google", "search")), ("shopping.google.com", ("google shopping", "shopping")),
        ("amazon.sa", ("amazon", "shopping")), ("m.youtube.com", ("youtube", "video")), ("wa.me", ("whatsapp", "social")),
        ("mail.google.com", None), ("newsletter", None), ("(direct)", None), ("", None), (None, None),
    ],
)  # fmt: skip
def test_site_names_the_list_entry(value: str | None, expected: tuple[str, str] | None) -> None:
    assert ChannelRules.default().site(value) == expected


@pytest.mark.parametrize(
    ("source", "click_id", "referrer", "expected"),
    [
        ("tiktok", None, None, ("tiktok", "social")),
        # A UTM source no list knows: the click id, else the referrer, names the platform.
        ("summer_promo", "ttclid", None, ("tiktok", "social")),
        ("summer_promo", "fbclid", "l.instagram.com", ("instagram", "social")),
        ("summer_promo", None, "snapchat.com", ("snapchat", "social")),
        ("summer_promo", None, "blog.example.com", None),
        ("(direct)", None, None, None),
    ],
)
def test_platform_of_a_session(source: str, click_id: str | None, referrer: str | None,
                               expected: tuple[str, str] | None) -> None:  # fmt: skip
    assert ChannelRules.default().platform(source, click_id, referrer) == expected


@pytest.mark.parametrize(
    ("medium", "paid"),
    [("cpc", True), ("PPC", True), ("paid_social", True), ("retargeting", True), ("cpm", True), ("banner", True),
     ("social", False), ("organic", False), ("referral", False), ("influencer", False), (None, False)],
)  # fmt: skip
def test_is_paid_medium(medium: str | None, paid: bool) -> None:
    assert is_paid_medium(medium) is paid
