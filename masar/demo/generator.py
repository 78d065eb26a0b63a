"""A believable, deterministic demo online store, emitted as Segment Tracking API messages.

The store sells abayas, perfumes, electronics accessories, skincare, dates, home goods and kids'
clothes to shoppers in Saudi Arabia, the UAE, Egypt, Kuwait and Jordan. Three problems are planted
in otherwise stable behaviour so that the leak finder can be tested against known answers; they
are described in ``PLANTED`` / ``DemoStore.planted`` and in docs/demo.md.

Design notes:

* Everything static (catalogue, visitors, the planned sessions, ad spend) is drawn with numpy in
  ``build_demo``, vectorised, from the seed. The messages themselves are produced lazily by
  ``DemoStore.messages()``, one day at a time, from a ``random.Random`` seeded from the same seed,
  so iterating twice gives identical output and memory stays flat.
* Only ``Random.random()`` and ``Random.getrandbits()`` are used in the stream: their output is
  stable across Python versions, unlike ``choice``/``randrange`` whose algorithms have changed.
* Funnel outcomes of a session are decided up front from calibrated probabilities, then an event
  sequence consistent with them is written. That keeps the funnel ratios controllable while the
  clickstream still looks organic.
"""

from __future__ import annotations

import base64
import bisect
import datetime
import gc
import heapq
import itertools
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import quote

import numpy as np

__all__ = [
    "CURRENCY_RATES",
    "DOMAIN",
    "PAID_CHANNELS",
    "PLANTED",
    "DemoConfig",
    "DemoStore",
    "build_demo",
]

DOMAIN = "https://demo.masar.shop"
STORE_NAME = "Masar Demo Store"
_AJS_VERSION = "next-1.70.0"
_SERVER_LIBRARY = {"name": "analytics-python", "version": "2.3.3"}
_DAY_MS = 86_400_000
_MINUTE_MS = 60_000

# ---------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------

# Fixed display rates from SAR. SAR and AED are both pegged to the dollar, KWD and JOD are
# managed pegs; EGP floats, so one fixed rate for 90 days is a simplification (docs/demo.md).
CURRENCY_RATES: dict[str, Decimal] = {
    "SAR": Decimal("1"),
    "AED": Decimal("0.98"),
    "EGP": Decimal("13.0"),
    "KWD": Decimal("0.082"),
    "JOD": Decimal("0.189"),
}
_DECIMALS = {"SAR": 2, "AED": 2, "EGP": 2, "KWD": 3, "JOD": 3}
_QUANTUM = {2: Decimal("0.01"), 3: Decimal("0.001")}


def _q(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(_QUANTUM[_DECIMALS[currency]], rounding=ROUND_HALF_EVEN)


# ---------------------------------------------------------------------------------------------
# Geography
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Country:
    code: str
    weight: float
    currency: str
    vat: Decimal  # added on top of goods + shipping
    timezone: str
    utc_offset: int  # hours; only shapes the time-of-day curve, so DST is ignored
    locales: tuple[tuple[str, float], ...]
    cities: tuple[tuple[str, float], ...]
    google: str  # the country's Google domain, as organic/paid search referrer
    shipping: Decimal  # standard delivery fee, local currency
    free_from: Decimal  # standard delivery is free from this subtotal
    express: Decimal
    payments: tuple[tuple[str, float], ...]
    last_names: tuple[str, ...]
    # Operator address blocks (network, prefix length) the visitors' public IPs come from.
    ip_blocks: tuple[tuple[str, int], ...]
    # Relative shares of the device families in _DEVICES (same order).
    devices: tuple[float, ...]


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "SA", 0.52, "SAR", Decimal("0.15"), "Asia/Riyadh", 3,
        (("ar-SA", 0.8), ("en-SA", 0.2)),
        (("Riyadh", 0.38), ("Jeddah", 0.26), ("Dammam", 0.10), ("Mecca", 0.08), ("Medina", 0.06),
         ("Khobar", 0.06), ("Abha", 0.03), ("Tabuk", 0.03)),
        "https://www.google.com.sa/", Decimal("25"), Decimal("200"), Decimal("45"),
        (("mada", 0.34), ("apple_pay", 0.26), ("credit_card", 0.18), ("tabby", 0.1), ("tamara", 0.07),
         ("cash_on_delivery", 0.05)),
        ("Al-Otaibi", "Al-Qahtani", "Al-Ghamdi", "Al-Harbi", "Al-Shehri", "Al-Mutairi", "Al-Dosari",
         "Al-Zahrani", "Al-Anazi", "Al-Shammari"),
        (("2.88.0.0", 13), ("188.48.0.0", 13), ("37.104.0.0", 14), ("94.96.0.0", 14)),
        (0.37, 0.05, 0.20, 0.08, 0.03, 0.16, 0.05, 0.04, 0.02),
    ),
    _Country(
        "AE", 0.22, "AED", Decimal("0.05"), "Asia/Dubai", 4,
        (("en-AE", 0.55), ("ar-AE", 0.45)),
        (("Dubai", 0.45), ("Abu Dhabi", 0.25), ("Sharjah", 0.18), ("Al Ain", 0.07), ("Ajman", 0.05)),
        "https://www.google.ae/", Decimal("20"), Decimal("200"), Decimal("35"),
        (("credit_card", 0.42), ("apple_pay", 0.28), ("tabby", 0.16), ("cash_on_delivery", 0.14)),
        ("Al-Mansouri", "Al-Nuaimi", "Al-Ketbi", "Al-Hammadi", "Al-Marzouqi", "Al-Shamsi", "Al-Suwaidi",
         "Al-Mazrouei"),
        (("94.200.0.0", 13), ("2.48.0.0", 14), ("86.96.0.0", 13), ("92.96.0.0", 13)),
        (0.40, 0.05, 0.17, 0.06, 0.03, 0.17, 0.07, 0.03, 0.02),
    ),
    _Country(
        "EG", 0.13, "EGP", Decimal("0.14"), "Africa/Cairo", 2,
        (("ar-EG", 0.85), ("en-EG", 0.15)),
        (("Cairo", 0.48), ("Alexandria", 0.22), ("Giza", 0.18), ("Mansoura", 0.06), ("Hurghada", 0.06)),
        "https://www.google.com.eg/", Decimal("75"), Decimal("2500"), Decimal("120"),
        (("cash_on_delivery", 0.52), ("credit_card", 0.3), ("valu", 0.1), ("apple_pay", 0.08)),
        ("Hassan", "Ibrahim", "Mahmoud", "El-Sayed", "Abdelrahman", "Mostafa", "Fathy", "Soliman"),
        (("41.32.0.0", 12), ("197.32.0.0", 12), ("156.192.0.0", 11)),
        (0.17, 0.03, 0.38, 0.13, 0.02, 0.20, 0.02, 0.03, 0.02),
    ),
    _Country(
        "KW", 0.08, "KWD", Decimal("0"), "Asia/Kuwait", 3,
        (("ar-KW", 0.7), ("en-KW", 0.3)),
        (("Kuwait City", 0.5), ("Hawalli", 0.2), ("Salmiya", 0.18), ("Al Ahmadi", 0.12)),
        "https://www.google.com.kw/", Decimal("2"), Decimal("15"), Decimal("3.5"),
        (("knet", 0.55), ("credit_card", 0.22), ("apple_pay", 0.23)),
        ("Al-Ajmi", "Al-Enezi", "Al-Rashidi", "Al-Azmi", "Al-Mutawa", "Al-Kandari", "Al-Hajri"),
        (("37.36.0.0", 14), ("62.150.0.0", 16), ("188.236.0.0", 15)),
        (0.42, 0.05, 0.16, 0.05, 0.03, 0.15, 0.08, 0.04, 0.02),
    ),
    _Country(
        "JO", 0.05, "JOD", Decimal("0.16"), "Asia/Amman", 3,
        (("ar-JO", 0.8), ("en-JO", 0.2)),
        (("Amman", 0.65), ("Irbid", 0.15), ("Zarqa", 0.12), ("Aqaba", 0.08)),
        "https://www.google.jo/", Decimal("3.5"), Decimal("40"), Decimal("6"),
        (("credit_card", 0.5), ("cash_on_delivery", 0.42), ("apple_pay", 0.08)),
        ("Haddad", "Khoury", "Nasser", "Al-Majali", "Al-Khatib", "Obeidat", "Al-Zoubi"),
        (("92.253.0.0", 17), ("46.185.128.0", 17), ("176.28.128.0", 17)),
        (0.25, 0.04, 0.30, 0.09, 0.03, 0.19, 0.05, 0.03, 0.02),
    ),
)  # fmt: skip

_FEMALE_NAMES = (
    "Noura", "Sara", "Fatimah", "Aisha", "Reem", "Lama", "Hessa", "Maha", "Dana", "Layan", "Joud",
    "Shahad", "Mariam", "Huda", "Yasmin", "Nour", "Salma", "Rana", "Dalia", "Hala",
)  # fmt: skip
_MALE_NAMES = (
    "Mohammed", "Abdullah", "Fahad", "Khalid", "Faisal", "Omar", "Ahmed", "Saud", "Sultan", "Yousef",
    "Ali", "Hamad", "Turki", "Majed", "Tariq", "Karim", "Mostafa", "Hassan", "Ziad", "Rami",
)  # fmt: skip
_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
_AGE_WEIGHTS = (0.22, 0.38, 0.24, 0.11, 0.05)
_FEMALE_SHARE = 0.6
# RFC 2606 reserved domains: the demo must never hold an address that could reach a real person.
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

# Local-time hour weights: Gulf shoppers browse late in the evening.
_HOUR_WEIGHTS = (
    3.0, 1.8, 1.0, 0.6, 0.4, 0.4, 0.6, 1.0, 1.6, 2.2, 2.8, 3.2,
    3.4, 3.4, 3.5, 3.6, 3.8, 4.0, 4.3, 4.8, 5.6, 6.2, 6.0, 4.6,
)  # fmt: skip
# Monday..Sunday. The Saudi weekend is Friday-Saturday: Friday (prayers, family) dips, Thursday
# evening and Saturday are busy.
_WEEKDAY_WEIGHTS = (1.00, 0.98, 1.01, 1.07, 0.86, 1.05, 1.04)

# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

# (family, device type, apple, user agents). Order matches _Country.devices.
_DEVICES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("iphone_safari", "mobile", True, (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_10 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    )),
    ("iphone_chrome", "mobile", True, (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/130.0.6723.90 Mobile/15E148 Safari/604.1",
    )),
    ("android_chrome", "mobile", False, (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.179 Mobile Safari/537.36",
    )),
    ("samsung_internet", "mobile", False, (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    )),
    ("ipad_safari", "tablet", True, (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    )),
    ("windows_chrome", "desktop", False, (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    )),
    ("mac_safari", "desktop", True, (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    )),
    ("windows_edge", "desktop", False, (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    )),
    ("mac_chrome", "desktop", True, (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    )),
)  # fmt: skip
_IPHONE_SAFARI = 0
# Desktop shoppers convert a little better than phone shoppers, as in most stores.
_DEVICE_MULT = {"mobile": 0.95, "tablet": 1.0, "desktop": 1.15}

# ---------------------------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------------------------

_CategorySpec = tuple[
    str, str, str, str, int, tuple[str, ...],
    tuple[tuple[str, str, int, int], ...], tuple[tuple[str, str, float], ...],
    tuple[tuple[str, str], ...],
]  # fmt: skip

# slug, name, Arabic name, SKU prefix, product count, brands, bases (en, ar, low, high SAR),
# variants (en, ar, price factor), search queries (en, ar).
_CATEGORIES: tuple[_CategorySpec, ...] = (
    ("abayas", "Abayas", "عبايات", "ABY", 20, ("Lamsa", "Dar Al Abaya", "Hayat Modest", "Nawal Couture"),
     (("Classic Abaya", "عباية كلاسيكية", 189, 290), ("Embroidered Abaya", "عباية مطرزة", 320, 560),
      ("Kimono Abaya", "عباية كيمونو", 260, 420), ("Linen Open Abaya", "عباية كتان مفتوحة", 240, 380),
      ("Crepe Daily Abaya", "عباية كريب يومية", 160, 240), ("Bisht Abaya", "عباية بشت", 420, 780),
      ("Butterfly Abaya", "عباية فراشة", 280, 450)),
     (("Black", "أسود", 1.0), ("Navy", "كحلي", 1.0), ("Beige", "بيج", 1.05)),
     (("black abaya", "عباية سوداء"), ("embroidered abaya", "عباية مطرزة"), ("abaya", "عبايات"))),
    ("perfumes", "Perfumes", "عطور", "PRF", 24, ("Oud Al Layl", "Dar Al Misk", "Anbar", "Bukhoor House"),
     (("Royal Oud Eau de Parfum", "عطر العود الملكي", 280, 480), ("Musk Tahara", "مسك الطهارة", 45, 95),
      ("Amber Nights Eau de Parfum", "عطر ليالي العنبر", 190, 320),
      ("Cambodi Dehn Al Oud 3 ml", "دهن عود كمبودي 3 مل", 450, 1100),
      ("Bakhoor Maattar 50 g", "بخور معطر 50 جم", 60, 140), ("Taif Rose Eau de Parfum", "عطر الورد الطائفي", 220, 380),
      ("Saffron Oud Mist", "بخاخ العود بالزعفران", 95, 160), ("White Musk Body Mist", "بخاخ المسك الأبيض", 55, 90),
      ("Muattar Oud Chips 25 g", "عود معطر 25 جم", 150, 380), ("Arabian Sandal Eau de Parfum", "عطر الصندل العربي", 160, 260),
      ("Jasmine Attar 12 ml", "دهن الياسمين 12 مل", 85, 150), ("Oud Gift Set", "طقم هدايا العود", 390, 690)),
     (("Classic", "كلاسيك", 1.0), ("Intense", "إنتنس", 1.3)),
     (("oud", "عود"), ("musk", "مسك"), ("oud perfume", "عطر عود"), ("bakhoor", "بخور"))),
    ("electronics", "Electronics", "إلكترونيات", "ELC", 20, ("Voltiq", "Najm Tech", "Sahm"),
     (("Fast Charger 30W", "شاحن سريع 30 واط", 59, 99), ("Power Bank 20000mAh", "باور بانك 20000 مللي أمبير", 99, 179),
      ("USB-C Cable 2 m", "كيبل USB-C بطول 2 م", 29, 49), ("Wireless Earbuds", "سماعات لاسلكية", 149, 349),
      ("MagSafe Phone Case", "جراب ماغ سيف", 69, 129), ("Car Phone Holder", "حامل جوال للسيارة", 45, 89),
      ("Smart Watch Strap", "سوار ساعة ذكية", 39, 79), ("Bluetooth Speaker", "سماعة بلوتوث", 129, 299),
      ("Tempered Glass Screen Protector", "واقي شاشة زجاجي", 29, 59), ("Wireless Charging Pad", "شاحن لاسلكي", 79, 149)),
     (("Black", "أسود", 1.0), ("White", "أبيض", 1.0)),
     (("power bank", "باور بانك"), ("charger", "شاحن"), ("earbuds", "سماعات"))),
    ("skincare", "Skincare", "العناية بالبشرة", "SKN", 18, ("Nuqa", "Sidr Botanicals", "Zahra Skin"),
     (("Vitamin C Serum", "سيروم فيتامين سي", 89, 159), ("Sidr Honey Face Mask", "ماسك عسل السدر", 59, 99),
      ("Argan Oil Hair Serum", "سيروم زيت الأرغان للشعر", 69, 119), ("Sunscreen SPF 50", "واقي شمس SPF 50", 59, 109),
      ("Hyaluronic Moisturiser", "مرطب الهيالورونيك", 99, 179), ("Rose Water Toner", "تونر ماء الورد", 39, 69),
      ("Black Seed Soap", "صابون حبة البركة", 30, 45), ("Oud Body Lotion", "لوشن الجسم بالعود", 69, 129),
      ("Lip Care Set", "مجموعة العناية بالشفاه", 45, 85)),
     (("Regular", "عادي", 1.0), ("Value Pack", "عبوة توفير", 1.7)),
     (("vitamin c", "فيتامين سي"), ("sunscreen", "واقي شمس"), ("serum", "سيروم"))),
    ("dates-sweets", "Dates & Sweets", "تمور وحلويات", "DAT", 16, ("Tamr Al Qassim", "Ajwa Farms", "Halawa Co"),
     (("Ajwa Dates 1 kg", "تمر عجوة 1 كجم", 89, 149), ("Sukkari Dates 3 kg", "تمر سكري 3 كجم", 75, 120),
      ("Medjool Dates 1 kg", "تمر مجدول 1 كجم", 79, 129), ("Stuffed Dates Box", "علبة تمر محشي", 120, 260),
      ("Maamoul Assortment", "تشكيلة معمول", 65, 110), ("Kunafa Chocolate Box", "علبة شوكولاتة الكنافة", 85, 160),
      ("Saudi Coffee Blend 500 g", "قهوة سعودية 500 جم", 55, 95), ("Date Spread with Tahini", "دبس التمر بالطحينة", 35, 60)),
     (("Standard", "عادي", 1.0), ("Gift Edition", "إصدار الهدايا", 1.45)),
     (("ajwa", "عجوة"), ("sukkari dates", "تمر سكري"), ("maamoul", "معمول"))),
    ("home", "Home", "المنزل", "HOM", 14, ("Bayt", "Majlis Living"),
     (("Electric Mabkhara", "مبخرة كهربائية", 89, 199), ("Dallah Coffee Pot", "دلة قهوة", 120, 290),
      ("Prayer Mat", "سجادة صلاة", 59, 149), ("Majlis Cushion Set", "طقم مساند مجلس", 249, 650),
      ("Finjan Cup Set", "طقم فناجين", 69, 159), ("Scented Candle", "شمعة معطرة", 45, 99),
      ("Brass Lantern", "فانوس نحاسي", 99, 229)),
     (("Gold", "ذهبي", 1.0), ("Silver", "فضي", 0.95)),
     (("mabkhara", "مبخرة"), ("dallah", "دلة"), ("prayer mat", "سجادة صلاة"))),
    ("kids", "Kids", "أطفال", "KID", 8, ("Saghir", "Little Falcon"),
     (("Kids Thobe", "ثوب أطفال", 69, 129), ("Girls Jalabiya", "جلابية بنات", 79, 149),
      ("Arabic Alphabet Puzzle", "بزل الحروف العربية", 39, 69), ("Eid Gift Box", "صندوق هدايا العيد", 89, 179)),
     (("Ages 3-6", "من 3 إلى 6 سنوات", 1.0), ("Ages 7-10", "من 7 إلى 10 سنوات", 1.15)),
     (("kids thobe", "ثوب اطفال"), ("eid gift", "هدية العيد"))),
)  # fmt: skip
_CAT_INDEX = {spec[0]: i for i, spec in enumerate(_CATEGORIES)}
_PERFUMES = _CAT_INDEX["perfumes"]
# Category interest by gender (female, male), in _CATEGORIES order.
_CATEGORY_INTEREST = (
    (0.24, 0.24, 0.08, 0.18, 0.08, 0.10, 0.08),
    (0.04, 0.30, 0.30, 0.05, 0.12, 0.12, 0.07),
)
_LIST_SIZE = 8  # products shown on a category page / in Product List Viewed

# ---------------------------------------------------------------------------------------------
# Channels and campaigns
# ---------------------------------------------------------------------------------------------

# Ad platforms with a spend row per campaign per day. Influencers are paid per post instead.
PAID_CHANNELS = ("facebook_ads", "instagram_ads", "tiktok_ads", "snapchat_ads", "google_ads")

# Share of first (acquisition) sessions per channel. TikTok's is high because it is the planted
# heavy-traffic / poor-conversion channel; return visits come mostly from direct and search.
_ACQUISITION_SHARE = {
    "tiktok_ads": 0.30, "facebook_ads": 0.10, "instagram_ads": 0.11, "snapchat_ads": 0.08,
    "influencer": 0.06, "google_ads": 0.09, "organic_search": 0.12, "direct": 0.14, "referral": 0.07,
}  # fmt: skip
_RETURN_SHARE = {
    "direct": 0.40, "organic_search": 0.22, "google_ads:gads_brand": 0.09,
    "facebook_ads:fb_retargeting_cart": 0.10, "instagram_ads": 0.04, "referral": 0.04,
    "tiktok_ads": 0.08, "snapchat_ads": 0.03, "influencer": 0.02,
}  # fmt: skip
_SAME_CAMPAIGN_ON_RETURN = 0.2


@dataclass(slots=True)
class _Campaign:
    channel: str
    name: str | None  # utm_campaign
    source: str | None
    medium: str | None
    click_id: str | None  # query parameter carrying the ad click id
    referrers: tuple[str, ...]  # "" = no referrer (in-app browsers, direct); "google" = country's Google
    style: str  # where sessions land: product, category or home
    focus: int  # category index the creative is about, -1 for none
    conversion: float  # relative purchase propensity of its visitors
    share: float  # share within its channel
    cpc: float = 0.0  # SAR per session (paid channels)
    contents: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    coupon: str | None = None
    coupon_pct: int = 0
    fee: float = 0.0  # influencer fee per post, SAR at 50,000 visitors
    query: str = ""  # static utm part of the landing query string
    terms_q: tuple[str, ...] = ()  # url-encoded terms


def _campaigns() -> list[_Campaign]:
    perf, aby, elc, skn, dat, hom = (
        _CAT_INDEX[k] for k in ("perfumes", "abayas", "electronics", "skincare", "dates-sweets", "home")
    )
    tt_ref = ("https://www.tiktok.com/", "")
    fb_ref = ("https://l.facebook.com/", "https://m.facebook.com/")
    ig_ref = ("https://l.instagram.com/", "https://www.instagram.com/")
    sc_ref = ("", "https://www.snapchat.com/")
    ga = ("google",)
    # TikTok's conversion factor is the planted problem: see PLANTED[1].
    # fmt: off
    camps = [
        _Campaign("tiktok_ads", "tt_oud_trend", "tiktok", "cpc", "ttclid", tt_ref, "product", perf, 0.21, 0.45, 1.9,
                  ("ugc_oud_unboxing", "creator_duet_15s")),
        _Campaign("tiktok_ads", "tt_gadgets_viral", "tiktok", "cpc", "ttclid", tt_ref, "product", elc, 0.21, 0.30, 1.7,
                  ("gadget_haul_15s", "car_holder_demo")),
        _Campaign("tiktok_ads", "tt_abaya_lookbook", "tiktok", "cpc", "ttclid", tt_ref, "category", aby, 0.21, 0.25, 2.0,
                  ("lookbook_reel", "eid_outfits")),
        _Campaign("facebook_ads", "fb_prospecting_abayas", "facebook", "paid_social", "fbclid", fb_ref, "category", aby, 0.9,
                  0.4, 2.6, ("carousel_new_in", "video_30s")),
        _Campaign("facebook_ads", "fb_retargeting_cart", "facebook", "paid_social", "fbclid", fb_ref, "product", -1, 1.3,
                  0.35, 3.2, ("dpa_cart_reminder",)),
        _Campaign("facebook_ads", "fb_dates_gifting", "facebook", "cpc", "fbclid", fb_ref, "category", dat, 1.0, 0.25, 2.4,
                  ("gift_box_static",)),
        _Campaign("instagram_ads", "ig_reels_oud", "instagram", "paid_social", "fbclid", ig_ref, "product", perf, 0.95,
                  0.45, 2.4, ("reel_oud_ritual", "reel_bakhoor")),
        _Campaign("instagram_ads", "ig_stories_skincare", "instagram", "paid_social", "fbclid", ig_ref, "product", skn,
                  0.9, 0.35, 2.2, ("story_routine",)),
        _Campaign("instagram_ads", "ig_home_majlis", "instagram", "paid_social", "fbclid", ig_ref, "category", hom, 0.9,
                  0.2, 2.5, ("story_majlis",)),
        _Campaign("snapchat_ads", "snap_ksa_youth", "snapchat", "paid_social", "ScCid", sc_ref, "product", elc, 0.9, 0.55,
                  1.7, ("snap_ad_gadgets",)),
        _Campaign("snapchat_ads", "snap_perfume_gifts", "snapchat", "paid_social", "ScCid", sc_ref, "product", perf, 0.9,
                  0.45, 1.8, ("snap_ad_gift",)),
        _Campaign("influencer", "noura_style", "instagram", "influencer", None, ("https://l.instagram.com/",), "category",
                  aby, 1.2, 0.30, coupon="NOURA15", coupon_pct=15, fee=1200),
        _Campaign("influencer", "dana_beauty", "instagram", "influencer", None, ("https://l.instagram.com/",), "product",
                  skn, 1.2, 0.25, coupon="DANA20", coupon_pct=20, fee=1000),
        _Campaign("influencer", "lama_home", "instagram", "influencer", None, ("https://l.instagram.com/",), "category",
                  hom, 1.1, 0.15, coupon="LAMA10", coupon_pct=10, fee=600),
        _Campaign("influencer", "abu_fahad_reviews", "snapchat", "influencer", None, ("",), "product", elc, 1.1, 0.2,
                  coupon="FAHAD10", coupon_pct=10, fee=900),
        _Campaign("influencer", "um_sultan_kitchen", "snapchat", "influencer", None, ("",), "category", dat, 1.2, 0.1,
                  coupon="SULTAN15", coupon_pct=15, fee=500),
        _Campaign("google_ads", "gads_brand", "google", "cpc", "gclid", ga, "home", -1, 1.6, 0.25, 1.2, (),
                  terms=("masar", "مسار", "masar shop", "متجر مسار")),
        _Campaign("google_ads", "gads_perfume_generic", "google", "cpc", "gclid", ga, "product", perf, 1.2, 0.35, 3.6, (),
                  terms=("oud perfume", "عطر عود", "best oud online", "دهن عود")),
        _Campaign("google_ads", "gads_abayas_generic", "google", "cpc", "gclid", ga, "category", aby, 1.15, 0.25, 3.1, (),
                  terms=("abaya online", "عبايات", "عباية سوداء")),
        _Campaign("google_ads", "gads_electronics_generic", "google", "cpc", "gclid", ga, "product", elc, 1.1, 0.15, 2.4,
                  (), terms=("power bank", "شاحن ايفون")),
        _Campaign("organic_search", None, None, None, None, ga, "product", -1, 1.25, 1.0),
        _Campaign("direct", None, None, None, None, ("",), "home", -1, 1.35, 1.0),
        _Campaign("referral", None, None, None, None,
                  ("https://www.sayidaty.net/node/1554201/fashion/best-abaya-brands",), "category", aby, 1.0, 0.3),
        _Campaign("referral", None, None, None, None,
                  ("https://www.hiamag.com/beauty/skincare/vitamin-c-serums-review",), "product", skn, 1.0, 0.25),
        _Campaign("referral", None, None, None, None,
                  ("https://www.tech-wd.com/wd/2024/power-banks-compared/",), "product", elc, 1.0, 0.25),
        _Campaign("referral", None, None, None, None,
                  ("https://www.hawaaworld.com/showthread.php?t=3319874",), "category", hom, 1.0, 0.2),
    ]
    # fmt: on
    for c in camps:
        if c.name is not None:
            c.query = f"utm_source={c.source}&utm_medium={c.medium}&utm_campaign={quote(c.name)}"
        c.terms_q = tuple(quote(t) for t in c.terms)
    return camps


# Coupons besides the influencers' (code → percent off).
_WELCOME = ("WELCOME10", 10)
_SALE = ("WHITEFRIDAY", 20)
_BAD_CODES = ("FREESHIP", "SAVE50", "RAMADAN20", "EID30")

_SUBJECTS = {
    _CAT_INDEX["perfumes"]: ("New oud arrivals for the weekend", "وصل العود الجديد لعطلة نهاية الأسبوع"),
    _CAT_INDEX["abayas"]: ("This week's abaya edit", "تشكيلة العبايات لهذا الأسبوع"),
    _CAT_INDEX["dates-sweets"]: ("Fresh Ajwa and Sukkari are in", "وصل تمر العجوة والسكري الطازج"),
    _CAT_INDEX["skincare"]: ("Your skincare routine, simplified", "روتين العناية بالبشرة ببساطة"),
    _CAT_INDEX["electronics"]: ("Gadgets we love this week", "إكسسوارات إلكترونية نحبها هذا الأسبوع"),
    _CAT_INDEX["home"]: ("Make your majlis shine", "جدّد مجلسك"),
    _CAT_INDEX["kids"]: ("Little outfits for big occasions", "إطلالات للصغار في المناسبات"),
}
_SALE_SUBJECTS = (
    ("White Friday starts tomorrow", "الجمعة البيضاء تبدأ غداً"),
    ("White Friday: 20% off everything", "الجمعة البيضاء: خصم 20% على كل شيء"),
)

# ---------------------------------------------------------------------------------------------
# Funnel model
# ---------------------------------------------------------------------------------------------

# Per-session probabilities before the intent multiplier (calibrated so the store-wide funnel is
# ~44% product view, ~10% add to cart, ~5% checkout, ~2.5% order).
_BASE_VIEW = 0.42
_BASE_ADD = 0.205
_BASE_CHECKOUT = 0.465
_STEP1 = 0.90  # shipping step completed | step 1 viewed
_STEP2 = 0.88  # delivery step completed | step 2 viewed
_PAYMENT = 0.80  # Payment Info Entered | step 2 completed (planted problem 1 lowers it)
_PAYMENT_BROKEN = 0.35
_PAID = 0.86  # Order Completed | Payment Info Entered (declines, 3-D Secure drop-outs)
_PRICE_UP = Decimal("1.25")  # planted problem 3: perfume prices from the change day
_PRICE_UP_CHECKOUT = 0.42  # ... and cart→checkout of carts with perfume is multiplied by this
_SALE_TRAFFIC = 1.7
_SALE_INTENT = 1.1
_PRIOR_CUSTOMERS = 0.08  # share of visitors who bought before the data starts
_LEAD_IN_DAYS = 45  # visit histories start this long before the range (see _build_sessions)

# Day positions (1-based) of the planted problems and the sale in the default 90-day range;
# other lengths scale them proportionally (_scale_day).
_BREAK_DAYS = (40, 54)
_PRICE_DAY = 61
_SALE_DAYS = (22, 25)

# The planted problems. Day numbers here are 1-based positions in the default 90-day range;
# DemoStore.planted has them scaled to the configured range plus ISO "start"/"end" dates (UTC,
# inclusive). Rates are the generator's probabilities; docs/demo.md has measured values.
PLANTED: list[dict[str, Any]] = [
    {
        "id": "ios_safari_payment_step",
        "kind": "checkout_step_break",
        "description": "Payment step broken for iPhone Safari: after completing checkout step 2 (delivery), "
        "far fewer iPhone Safari shoppers reach Payment Info Entered.",
        "segment": {
            "device_type": "mobile",
            "os": "iOS",
            "browser": "Mobile Safari",
            "device_family": "iphone_safari",
            # iPhone Safari only: Chrome on iOS (CriOS) and iPad Safari are unaffected.
            "user_agent_regex": r"iPhone.*Version/[\d.]+ Mobile/\w+ Safari/",
        },
        "unit": "checkout_id",
        "from": {"event": "Checkout Step Completed", "step": 2},
        "to": {"event": "Payment Info Entered"},
        "start_day": _BREAK_DAYS[0],
        "end_day": _BREAK_DAYS[1],
        "baseline_rate": _PAYMENT,
        "affected_rate": _PAYMENT_BROKEN,
    },
    {
        "id": "tiktok_low_conversion",
        "kind": "channel_low_conversion",
        "description": "TikTok ads bring about a fifth of all sessions but convert at roughly a fifth of the "
        "store's session→order rate.",
        "channel": {
            "utm_source": "tiktok",
            "utm_medium": "cpc",
            "click_id": "ttclid",
            "spend_channel": "tiktok_ads",
        },
        "unit": "session",
        "from": {"event": "session start", "landing": "utm_source=tiktok&utm_medium=cpc"},
        "to": {"event": "Order Completed"},
        "start_day": 1,
        "end_day": 90,
        "expected_session_share": 0.20,
        "expected_conversion_ratio": 0.2,
    },
    {
        "id": "perfume_price_increase",
        "kind": "price_change_abandonment",
        "description": "Perfume prices rise 25% from the change day; carts containing a perfume then reach "
        "Checkout Started far less often. Other carts are unaffected.",
        "category": "Perfumes",
        "price_multiplier": float(_PRICE_UP),
        "unit": "cart_id (one cart per session)",
        "from": {"event": "Product Added", "cart_contains_category": "Perfumes"},
        "to": {"event": "Checkout Started"},
        "start_day": _PRICE_DAY,
        "end_day": 90,
        # Measured on the default config: ~0.51 for every other cart/period, ~0.21 expected after.
        "baseline_rate": 0.5,
        "affected_rate": 0.21,
    },
]


def _scale_day(day90: int, days: int) -> int:
    """A 1-based day position of the 90-day design, scaled to a range of ``days``."""
    return min(days, max(1, round(day90 * days / 90)))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    visitors: int = 50_000
    days: int = 90
    end: datetime.date | None = None  # last day (inclusive); None → today's UTC date

    def __post_init__(self) -> None:
        if self.visitors < 1:
            raise ValueError("visitors must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")


@dataclass
class DemoStore:
    config: DemoConfig
    products: list[dict[str, Any]]
    spend: list[dict[str, Any]]
    planted: list[dict[str, Any]] = field(default_factory=list)
    # Expected, non-problem swings (the White Friday sale), so a leak finder can be checked for
    # not flagging them.
    seasonal: list[dict[str, Any]] = field(default_factory=list)
    _plan: _Plan | None = field(default=None, repr=False, compare=False)

    @property
    def start(self) -> datetime.date:
        return self._ensure_plan().start

    @property
    def end(self) -> datetime.date:
        return self._ensure_plan().start + datetime.timedelta(days=self.config.days - 1)

    def messages(self) -> Iterator[dict[str, Any]]:
        """Segment messages, day by day and sorted by time within each day. Lazy and repeatable."""
        return _Stream(self._ensure_plan()).run()

    def _ensure_plan(self) -> _Plan:
        if self._plan is None:
            self._plan = _Plan(self.config)
        return self._plan


def build_demo(config: DemoConfig) -> DemoStore:
    plan = _Plan(config)
    return DemoStore(
        config=config,
        products=plan.catalogue(),
        spend=plan.spend(),
        planted=plan.planted(),
        seasonal=plan.seasonal(),
        _plan=plan,
    )


# ---------------------------------------------------------------------------------------------
# The static plan (vectorised, numpy)
# ---------------------------------------------------------------------------------------------


def _cum(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    out: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0  # so bisect_right(cum, r) < len for every r in [0, 1)
    return out


def _psych_price(x: float) -> int:
    """Shelf prices end in 9 (149, 249, 49), as Gulf stores price them."""
    if x >= 100:
        return int(round(x / 10.0)) * 10 - 1
    return int(round(x / 5.0)) * 5 - 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _ip_to_int(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


class _Plan:
    """Everything decided before the first message: catalogue, visitors, sessions, campaigns, spend."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self.seed = config.seed
        days = config.days
        self.days = days
        end = config.end if config.end is not None else datetime.datetime.now(datetime.UTC).date()
        self.start = end - datetime.timedelta(days=days - 1)
        epoch = datetime.date(1970, 1, 1)
        self.start_ms = (self.start - epoch).days * _DAY_MS
        self.day_prefix = [(self.start + datetime.timedelta(days=d)).isoformat() + "T" for d in range(days)]
        self.weekdays = [(self.start + datetime.timedelta(days=d)).weekday() for d in range(days)]
        # 0-based day indexes of the planted windows and the sale.
        self.break_days = (_scale_day(_BREAK_DAYS[0], days) - 1, _scale_day(_BREAK_DAYS[1], days) - 1)
        self.price_day = _scale_day(_PRICE_DAY, days) - 1
        self.sale_days = self._sale_window()

        rng = np.random.default_rng([config.seed, 20_240_601])
        self._build_catalogue(rng)
        self.campaigns = _campaigns()
        self.channel_campaigns: dict[str, list[int]] = {}
        for i, c in enumerate(self.campaigns):
            self.channel_campaigns.setdefault(c.channel, []).append(i)
        self._build_profile(rng)
        self._build_visitors(rng)
        self._build_sessions(rng)
        self._build_emails()
        self._spend_rows = self._build_spend(rng)

    def _sale_window(self) -> tuple[int, int]:
        """The White Friday sale: four days (scaled) starting on the Thursday nearest to day 22,
        so that it spans the weekend as the real one does."""
        first = _scale_day(_SALE_DAYS[0], self.days) - 1
        length = _scale_day(_SALE_DAYS[1], self.days) - first
        shift = (3 - self.weekdays[first]) % 7
        if shift > 3:
            shift -= 7
        if 0 <= first + shift and first + shift + length - 1 < self.days:
            first += shift
        return first, first + length - 1

    # --- catalogue ----------------------------------------------------------------------------

    def _build_catalogue(self, rng: np.random.Generator) -> None:
        self.p_id: list[str] = []
        self.p_sku: list[str] = []
        self.p_name: list[str] = []
        self.p_name_ar: list[str] = []
        self.p_cat: list[int] = []
        self.p_brand: list[str] = []
        self.p_price: list[Decimal] = []  # SAR, before the planted price change
        self.p_slug: list[str] = []
        self.cat_products: list[list[int]] = []
        self.cat_cum: list[list[float]] = []
        for ci, (_cat_slug, _name, _name_ar, prefix, count, brands, bases, variants, _queries) in enumerate(
            _CATEGORIES
        ):
            members: list[int] = []
            for k in range(count):
                b_en, b_ar, low, high = bases[k % len(bases)]
                v_en, v_ar, factor = variants[k // len(bases)]
                price = _psych_price(float(rng.uniform(low, high)) * factor)
                idx = len(self.p_id)
                self.p_id.append(str(10_001 + idx))
                self.p_sku.append(f"{prefix}-{k + 1:03d}")
                self.p_name.append(f"{b_en} - {v_en}")
                self.p_name_ar.append(f"{b_ar} - {v_ar}")
                self.p_cat.append(ci)
                self.p_brand.append(brands[(k % len(bases)) % len(brands)])
                self.p_price.append(Decimal(price).quantize(_QUANTUM[2]))
                self.p_slug.append(f"{_slug(b_en)}-{_slug(v_en)}")
                members.append(idx)
            # A few best sellers and a long tail (Zipf-like) in a random order.
            ranks = rng.permutation(count)
            weights = [1.0 / (r + 1) ** 0.9 for r in ranks]
            order = sorted(range(count), key=lambda j: ranks[j])
            self.cat_products.append([members[j] for j in order])
            self.cat_cum.append(_cum([weights[j] for j in order]))
        self.currencies = [c.currency for c in _COUNTRIES]
        # Local prices per (phase, country): phase 1 is after the perfume price change.
        self.local_price: list[list[list[Decimal]]] = []
        for phase in (0, 1):
            per_country = []
            for cur in self.currencies:
                rate = CURRENCY_RATES[cur]
                row = []
                for i, sar in enumerate(self.p_price):
                    if phase and self.p_cat[i] == _PERFUMES:
                        sar = (sar * _PRICE_UP).quantize(_QUANTUM[2])
                    row.append(_q(sar * rate, cur))
                per_country.append(row)
            self.local_price.append(per_country)

    def catalogue(self) -> list[dict[str, Any]]:
        return [
            {
                "product_id": self.p_id[i],
                "sku": self.p_sku[i],
                "name": self.p_name[i],
                "name_ar": self.p_name_ar[i],
                "category": _CATEGORIES[self.p_cat[i]][1],
                "brand": self.p_brand[i],
                "price": self.p_price[i],
                "image_url": f"{DOMAIN}/images/products/{self.p_sku[i].lower()}.jpg",
                "url": f"{DOMAIN}/products/{self.p_slug[i]}",
            }
            for i in range(len(self.p_id))
        ]

    # --- traffic ------------------------------------------------------------------------------

    def _build_profile(self, rng: np.random.Generator) -> None:
        days = self.days
        weekday = np.array([_WEEKDAY_WEIGHTS[w] for w in self.weekdays])
        trend = 1.0 + 0.12 * np.arange(days) / max(1, days - 1)  # a store that grows a little
        noise = np.exp(rng.normal(0.0, 0.04, days))
        sale = np.ones(days)
        sale[self.sale_days[0] : self.sale_days[1] + 1] = _SALE_TRAFFIC
        self.profile = weekday * trend * noise * sale
        # Per-day weights of the acquisition campaigns: budgets wobble a little from day to day;
        # influencer traffic spikes on post days and decays over the next few days.
        n = len(self.campaigns)
        self.posts: dict[int, list[int]] = {}
        w = np.zeros((days, n))
        channel_total: dict[str, float] = {}
        for c in self.campaigns:
            channel_total[c.channel] = channel_total.get(c.channel, 0.0) + c.share
        for k, c in enumerate(self.campaigns):
            if c.channel not in _ACQUISITION_SHARE:
                continue
            base = _ACQUISITION_SHARE[c.channel] * c.share / channel_total[c.channel]
            if c.channel == "influencer":
                posts = []
                d = int(rng.integers(0, 12))
                while d < days:
                    posts.append(d)
                    d += int(rng.integers(10, 17))
                self.posts[k] = posts
                curve = np.full(days, 0.25)
                for p in posts:
                    span = np.arange(p, days)
                    curve[span] += 3.0 * np.exp(-(span - p) / 1.5)
                curve /= curve.mean()
                w[:, k] = base * curve
            else:
                w[:, k] = base * np.exp(rng.normal(0.0, 0.06, days))
        self.day_campaign_weights = w / w.sum(axis=1, keepdims=True)
        ret = np.zeros(n)
        for key, share in _RETURN_SHARE.items():
            chan, _, name = key.partition(":")
            members = [i for i in self.channel_campaigns[chan] if not name or self.campaigns[i].name == name]
            total = sum(self.campaigns[i].share for i in members)
            for i in members:
                ret[i] += share * self.campaigns[i].share / total
        self.return_weights = ret / ret.sum()

    def _build_visitors(self, rng: np.random.Generator) -> None:
        n = self.config.visitors
        self.n_visitors = n
        country = rng.choice(
            len(_COUNTRIES),
            size=n,
            p=np.array([c.weight for c in _COUNTRIES]) / sum(c.weight for c in _COUNTRIES),
        )
        self.v_country = country.tolist()
        self.v_city: list[int] = [0] * n
        self.v_locale: list[str] = [""] * n
        self.v_family: list[int] = [0] * n
        self.v_ua: list[str] = [""] * n
        self.v_ip: list[str] = [""] * n
        for ci, cty in enumerate(_COUNTRIES):
            idx = np.flatnonzero(country == ci)
            if idx.size == 0:
                continue
            m = idx.size
            cities = rng.choice(len(cty.cities), size=m, p=_norm([w for _, w in cty.cities]))
            locales = rng.choice(len(cty.locales), size=m, p=_norm([w for _, w in cty.locales]))
            fams = rng.choice(len(_DEVICES), size=m, p=_norm(cty.devices))
            ua_pick = rng.random(m)
            blocks = rng.integers(0, len(cty.ip_blocks), size=m)
            hosts = rng.random(m)
            lasts = rng.integers(1, 255, size=m)
            for j, v in enumerate(idx.tolist()):
                self.v_city[v] = int(cities[j])
                self.v_locale[v] = cty.locales[int(locales[j])][0]
                fam = int(fams[j])
                self.v_family[v] = fam
                uas = _DEVICES[fam][3]
                self.v_ua[v] = uas[int(ua_pick[j] * len(uas))]
                net, bits = cty.ip_blocks[int(blocks[j])]
                size = 1 << (32 - bits)
                addr = (_ip_to_int(net) + int(hosts[j] * size)) & ~0xFF | int(lasts[j])
                self.v_ip[v] = _ip_text(addr)
        raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
        self.v_anon = [_uuid4(int(a), int(b)) for a, b in raw.tolist()]
        self.v_female = (rng.random(n) < _FEMALE_SHARE).tolist()
        self.v_age = rng.choice(len(_AGE_BANDS), size=n, p=_norm(_AGE_WEIGHTS)).tolist()
        self.v_prior = (rng.random(n) < _PRIOR_CUSTOMERS).tolist()

    def _build_sessions(self, rng: np.random.Generator) -> None:
        """Planned sessions: a stationary visit process thinned by the day profile.

        Each candidate visitor has a first visit (possibly before the range) and returns after
        gaps of a few days. Drawing first visits from weeks before the range keeps the first
        days from looking like a launch ramp; thinning by the profile gives the weekly pattern
        and the sale bump. Candidates without any session in range are skipped.
        """
        days, n = self.days, self.n_visitors
        accept = self.profile / self.profile.max()
        max_s = 10
        vis_days: list[np.ndarray] = []
        taken = 0
        while taken < n:
            c = max(1024, 2 * (n - taken))
            first = rng.integers(-_LEAD_IN_DAYS, days, c)
            count = np.minimum(rng.geometric(0.4, c), max_s)
            gaps = 1 + np.floor(rng.exponential(5.0, (c, max_s))).astype(np.int64)
            gaps[:, 0] = 0
            sdays = first[:, None] + np.cumsum(gaps, axis=1)
            valid = (np.arange(max_s)[None, :] < count[:, None]) & (sdays >= 0) & (sdays < days)
            keep = valid & (rng.random((c, max_s)) < accept[np.clip(sdays, 0, days - 1)])
            rows = np.flatnonzero(keep.any(axis=1))[: n - taken]
            for r in rows.tolist():
                vis_days.append(sdays[r][keep[r]])
            taken += rows.size
        lengths = np.array([a.size for a in vis_days])
        s_vis = np.repeat(np.arange(n), lengths)
        s_day = np.concatenate(vis_days)
        first_mask = np.zeros(s_vis.size, dtype=bool)
        first_mask[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True
        prior = np.array(self.v_prior, dtype=bool)
        acquisition = first_mask & ~prior[s_vis]

        n_s = s_vis.size
        s_camp = np.empty(n_s, dtype=np.int64)
        ret_idx = np.flatnonzero(~acquisition)
        s_camp[ret_idx] = rng.choice(len(self.campaigns), size=ret_idx.size, p=self.return_weights)
        acq_idx = np.flatnonzero(acquisition)
        for d in range(days):
            sel = acq_idx[s_day[acq_idx] == d]
            if sel.size:
                s_camp[sel] = rng.choice(len(self.campaigns), size=sel.size, p=self.day_campaign_weights[d])
        # Some returns come back through the campaign that acquired them (retargeting, same creator).
        first_camp = np.full(n, -1, dtype=np.int64)
        first_camp[s_vis[acq_idx]] = s_camp[acq_idx]
        same = (~acquisition) & (first_camp[s_vis] >= 0) & (rng.random(n_s) < _SAME_CAMPAIGN_ON_RETURN)
        s_camp[same] = first_camp[s_vis[same]]

        offsets = np.array([c.utc_offset for c in _COUNTRIES])[np.array(self.v_country)[s_vis]]
        hours = np.searchsorted(np.array(_cum(_HOUR_WEIGHTS)), rng.random(n_s), side="right")
        local = hours * 3600 + rng.integers(0, 3600, n_s)
        s_sec = (local - offsets * 3600) % 86_400
        order = np.lexsort((s_sec, s_day))
        self.s_day = s_day[order]
        self.s_sec = s_sec[order]
        self.s_vis = s_vis[order]
        self.s_camp = s_camp[order]
        self.s_return = (~first_mask)[order] | prior[self.s_vis]
        self.day_bounds = np.searchsorted(self.s_day, np.arange(days + 1))

    # --- email --------------------------------------------------------------------------------

    def _build_emails(self) -> None:
        """Weekly newsletter on Tuesdays, plus the eve and first day of the sale."""
        # (day, second of day, campaign index, campaign_id, campaign_name, subject en, subject ar)
        self.emails: list[tuple[int, int, int, str, str, str, str]] = []
        rotation = [
            _CAT_INDEX[k]
            for k in ("perfumes", "abayas", "dates-sweets", "skincare", "electronics", "home", "kids")
        ]
        sale_start = self.sale_days[0]
        k = 0
        for d in range(self.days):
            kind = None
            if d == sale_start - 1:
                kind = 0
            elif d == sale_start:
                kind = 1
            elif self.weekdays[d] == 1:
                kind = 2
            if kind is None:
                continue
            date = self.start + datetime.timedelta(days=d)
            if kind == 2:
                focus = rotation[k % len(rotation)]
                slug, label = f"weekly_{date:%Y_%m_%d}", f"Weekly picks {date.isoformat()}"
                subject = _SUBJECTS[focus]
            else:
                focus = -1
                slug = f"white_friday_{'eve' if kind == 0 else 'launch'}_{date:%Y}"
                label = f"White Friday {'eve' if kind == 0 else 'launch'} {date.isoformat()}"
                subject = _SALE_SUBJECTS[kind]
            k += 1
            camp = _Campaign(
                "email",
                slug,
                "newsletter",
                "email",
                None,
                ("",),
                "category",
                focus,
                1.2,
                0.0,
                contents=("hero_button",),
            )
            camp.query = f"utm_source=newsletter&utm_medium=email&utm_campaign={slug}"
            self.campaigns.append(camp)
            # 16:00 Riyadh time, when open rates peak after work.
            self.emails.append(
                (d, 13 * 3600, len(self.campaigns) - 1, f"em{k:03d}", label, subject[0], subject[1])
            )

    # --- spend --------------------------------------------------------------------------------

    def _build_spend(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        """Ad spend follows the sessions each campaign actually bought, at its CPC, with noise."""
        days = self.days
        n = len(self.campaigns)
        counts = np.zeros((days, n))
        np.add.at(counts, (self.s_day, self.s_camp), 1)
        scale = self.n_visitors / 50_000
        rows: list[dict[str, Any]] = []
        for d in range(days):
            date = self.day_prefix[d][:-1]
            for k, c in enumerate(self.campaigns):
                if c.channel in PAID_CHANNELS:
                    # A floor keeps days without a bought session from showing zero spend.
                    clicks = max(float(counts[d, k]), 0.5)
                    amount = clicks * c.cpc * float(np.exp(rng.normal(0.0, 0.1)))
                elif c.channel == "influencer" and d in self.posts.get(k, ()):
                    amount = c.fee * scale
                else:
                    continue
                rows.append(
                    {
                        "date": date,
                        "channel": c.channel,
                        "campaign": c.name,
                        "spend": Decimal(repr(round(amount, 2))).quantize(_QUANTUM[2]),
                        "currency": "SAR",
                    }
                )
        return rows

    def spend(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._spend_rows]

    # --- planted ------------------------------------------------------------------------------

    def planted(self) -> list[dict[str, Any]]:
        out = []
        last = self.days
        for spec in PLANTED:
            item = dict(spec)
            if spec["id"] == "ios_safari_payment_step":
                first_day, last_day = self.break_days[0] + 1, self.break_days[1] + 1
            elif spec["id"] == "perfume_price_increase":
                first_day, last_day = self.price_day + 1, last
            else:
                first_day, last_day = 1, last
            item["start_day"], item["end_day"] = first_day, last_day
            item["start"] = (self.start + datetime.timedelta(days=first_day - 1)).isoformat()
            item["end"] = (self.start + datetime.timedelta(days=last_day - 1)).isoformat()
            out.append(item)
        return out

    def seasonal(self) -> list[dict[str, Any]]:
        first, last = self.sale_days
        return [
            {
                "id": "white_friday_sale",
                "kind": "seasonal_bump",
                "description": "White Friday sale: more traffic on every channel plus two newsletters, slightly higher "
                "intent, 20% off with coupon WHITEFRIDAY. Expected behaviour, not a leak.",
                "start_day": first + 1,
                "end_day": last + 1,
                "start": (self.start + datetime.timedelta(days=first)).isoformat(),
                "end": (self.start + datetime.timedelta(days=last)).isoformat(),
                "traffic_multiplier": _SALE_TRAFFIC,
                "intent_multiplier": _SALE_INTENT,
                "coupon": _SALE[0],
            }
        ]


def _norm(weights: Sequence[float]) -> np.ndarray:
    a = np.asarray(weights, dtype=float)
    return a / a.sum()


def _ip_text(addr: int) -> str:
    return f"{addr >> 24 & 255}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


def _uuid4(a: int, b: int) -> str:
    h = f"{a & 0xFFFFFFFFFFFFFFFF:016x}{b & 0xFFFFFFFFFFFFFFFF:016x}"
    # Version 4, RFC 4122 variant, as analytics.js makes them.
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


# ---------------------------------------------------------------------------------------------
# The message stream (lazy, random.Random)
# ---------------------------------------------------------------------------------------------

# Request kinds, processed in time order within a day.
_R_SESSION, _R_EMAIL, _R_CLICK, _R_REPEAT, _R_REVIEW = range(5)


class _Session:
    """State of the session being written: who, where, and the events so far."""

    __slots__ = ("v", "start", "anon", "uid", "user", "ip", "ua", "locale", "tz", "ar", "t", "offs", "msgs", "ref",
                 "cart_id")  # fmt: skip

    def __init__(self, v: int, start: int, anon: str, ip: str, ua: str, locale: str, tz: str):
        self.v = v
        self.start = start
        self.anon = anon
        self.uid: str | None = None
        self.user = -1
        self.ip = ip
        self.ua = ua
        self.locale = locale
        self.tz = tz
        self.ar = locale.startswith("ar")
        self.t = 0
        self.offs: list[int] = []
        self.msgs: list[dict[str, Any]] = []
        self.ref = ""
        self.cart_id = ""


class _Stream:
    def __init__(self, plan: _Plan):
        self.p = plan
        self.rng = random.Random(plan.seed * 1_000_003 + 17)
        self.rnd = self.rng.random
        self.seq = itertools.count()
        self.buckets: dict[int, list[tuple[int, int, dict[str, Any]]]] = {}
        self.requests: dict[int, list[tuple[Any, ...]]] = {}
        self.counter = {"cart": 0, "checkout": 0, "order": 0, "review": 0}
        # Visitors (devices) — copied, because repeat buyers add new devices.
        self.v_anon = list(plan.v_anon)
        self.v_country = list(plan.v_country)
        self.v_city = list(plan.v_city)
        self.v_locale = list(plan.v_locale)
        self.v_family = list(plan.v_family)
        self.v_ua = list(plan.v_ua)
        self.v_ip = list(plan.v_ip)
        self.v_female = list(plan.v_female)
        self.v_age = list(plan.v_age)
        n = len(self.v_anon)
        self.v_user = [-1] * n  # user signed in on the device
        self.v_owner = [-1] * n  # user who owns the device but has not signed in on it yet
        self.v_sessions = [0] * n
        self.v_last_end = [-(10**15)] * n
        # Users (accounts).
        self.u_id: list[str] = []
        self.u_traits: list[dict[str, Any]] = []
        self.u_device: list[int] = []
        self.u_subscribed: list[bool] = []
        self.u_orders: list[int] = []
        self.u_ar: list[bool] = []
        self.country_cum = [_cum([w for _, w in c.payments]) for c in _COUNTRIES]
        self.interest_cum = [_cum(w) for w in _CATEGORY_INTEREST]
        self.hour_cum = _cum(_HOUR_WEIGHTS)
        self._build_payloads()
        before = plan.start_ms - 200 * _DAY_MS
        for v in range(n):
            if plan.v_prior[v]:
                u = self._new_user(v, before + int(self.rnd() * 190 * _DAY_MS))
                self.u_orders[u] = 1 + int(-math.log(1.0 - self.rnd()) * 1.5)
                self.u_subscribed[u] = self.rnd() < 0.75
                self.v_user[v] = u

    # --- payload templates ---------------------------------------------------------------------

    def _build_payloads(self) -> None:
        """Per (phase, country) product dicts, copied into events, so no formatting per event."""
        p = self.p
        self.prod_tpl: list[list[list[dict[str, Any]]]] = []
        self.item_tpl: list[list[list[dict[str, Any]]]] = []
        self.list_tpl: list[list[list[list[dict[str, Any]]]]] = []
        self.prod_url = [f"{DOMAIN}/products/{s}" for s in p.p_slug]
        self.prod_path = [f"/products/{s}" for s in p.p_slug]
        for phase in (0, 1):
            per_c, items_c, lists_c = [], [], []
            for ci, cur in enumerate(p.currencies):
                prices = p.local_price[phase][ci]
                per, items = [], []
                for i in range(len(p.p_id)):
                    price = float(prices[i])
                    cat = _CATEGORIES[p.p_cat[i]][1]
                    per.append(
                        {
                            "product_id": p.p_id[i], "sku": p.p_sku[i], "category": cat, "name": p.p_name[i],
                            "brand": p.p_brand[i], "price": price, "currency": cur, "url": self.prod_url[i],
                            "image_url": f"{DOMAIN}/images/products/{p.p_sku[i].lower()}.jpg",
                        }
                    )  # fmt: skip
                    items.append(
                        {"product_id": p.p_id[i], "sku": p.p_sku[i], "name": p.p_name[i], "category": cat,
                         "brand": p.p_brand[i], "price": price}
                    )  # fmt: skip
                lists = []
                for cat_i in range(len(_CATEGORIES)):
                    shown = p.cat_products[cat_i][:_LIST_SIZE]
                    lists.append(
                        [
                            {"product_id": p.p_id[j], "sku": p.p_sku[j], "name": p.p_name[j], "price": float(prices[j]),
                             "category": _CATEGORIES[cat_i][1], "position": pos + 1}
                            for pos, j in enumerate(shown)
                        ]
                    )  # fmt: skip
                per_c.append(per)
                items_c.append(items)
                lists_c.append(lists)
            self.prod_tpl.append(per_c)
            self.item_tpl.append(items_c)
            self.list_tpl.append(lists_c)

    # --- small helpers -------------------------------------------------------------------------

    def _pick(self, cum: list[float]) -> int:
        return bisect.bisect_right(cum, self.rnd())

    def _exp(self, mean: float) -> float:
        return -math.log(1.0 - self.rnd()) * mean

    def _token(self, nbytes: int) -> str:
        raw = self.rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def _put(self, ms: int, msg: dict[str, Any]) -> None:
        day = (ms - self.p.start_ms) // _DAY_MS
        if 0 <= day < self.p.days:
            self.buckets.setdefault(day, []).append((ms, next(self.seq), msg))

    def _request(self, day: int, sec: int, kind: int, a: int, b: int, c: int) -> None:
        if 0 <= day < self.p.days:
            self.requests.setdefault(day, []).append((sec, next(self.seq), kind, a, b, c))

    def _new_user(self, v: int, created_ms: int) -> int:
        rnd = self.rnd
        u = len(self.u_id)
        cty = _COUNTRIES[self.v_country[v]]
        female = self.v_female[v]
        names = _FEMALE_NAMES if female else _MALE_NAMES
        first = names[int(rnd() * len(names))]
        last = cty.last_names[int(rnd() * len(cty.last_names))]
        domain = _EMAIL_DOMAINS[int(rnd() * len(_EMAIL_DOMAINS))]
        uid = f"cust_{u + 1:06d}"
        self.u_id.append(uid)
        self.u_traits.append(
            {
                "email": f"{first.lower()}.{last.lower().replace('-', '')}{u + 1}@{domain}",
                "first_name": first,
                "last_name": last,
                "gender": "female" if female else "male",
                "age_band": _AGE_BANDS[self.v_age[v]],
                "country": cty.code,
                "city": cty.cities[self.v_city[v]][0],
                "created_at": _iso(created_ms),
            }
        )
        self.u_device.append(v)
        self.u_subscribed.append(False)
        self.u_orders.append(0)
        self.u_ar.append(self.v_locale[v].startswith("ar"))
        return u

    def _new_device(self, old: int) -> int:
        """A returning customer on another device: same person and place, new browser and cookie."""
        rnd = self.rnd
        v = len(self.v_anon)
        ci = self.v_country[old]
        cty = _COUNTRIES[ci]
        fam = self._pick(_cum(cty.devices))
        uas = _DEVICES[fam][3]
        net, bits = cty.ip_blocks[int(rnd() * len(cty.ip_blocks))]
        addr = (_ip_to_int(net) + int(rnd() * (1 << (32 - bits)))) & ~0xFF | (1 + int(rnd() * 254))
        self.v_anon.append(_uuid4(self.rng.getrandbits(64), self.rng.getrandbits(64)))
        self.v_country.append(ci)
        self.v_city.append(self.v_city[old])
        self.v_locale.append(self.v_locale[old])
        self.v_family.append(fam)
        self.v_ua.append(uas[int(rnd() * len(uas))])
        self.v_ip.append(_ip_text(addr))
        self.v_female.append(self.v_female[old])
        self.v_age.append(self.v_age[old])
        self.v_user.append(-1)
        self.v_owner.append(-1)
        self.v_sessions.append(0)
        self.v_last_end.append(-(10**15))
        return v

    # --- message builders ----------------------------------------------------------------------

    def _ctx(self, s: _Session) -> dict[str, Any]:
        return {
            "ip": s.ip, "userAgent": s.ua, "locale": s.locale, "timezone": s.tz,
            "library": {"name": "analytics.js", "version": _AJS_VERSION},
        }  # fmt: skip

    def _add(self, s: _Session, msg: dict[str, Any], gap: int) -> dict[str, Any]:
        s.t += gap
        if s.uid is not None:
            msg["userId"] = s.uid
        s.offs.append(s.t)
        s.msgs.append(msg)
        return msg

    def _page(
        self, s: _Session, name: str, path: str, title: str, search: str = "", first: bool = False
    ) -> None:
        url = DOMAIN + path + search
        props = {"path": path, "referrer": s.ref, "search": search, "title": title, "url": url}
        msg = {
            "type": "page", "name": name, "anonymousId": s.anon, "properties": props,
            "context": {"ip": s.ip, "userAgent": s.ua, "locale": s.locale, "timezone": s.tz,
                        "library": {"name": "analytics.js", "version": _AJS_VERSION}, "page": dict(props)},
        }  # fmt: skip
        if s.uid is not None:
            msg["userId"] = s.uid
        if not first:
            # Time on the previous page: mostly seconds, sometimes minutes, never the 30 minutes
            # that would split the session.
            s.t += 3000 + min(int(-math.log(1.0 - self.rnd()) * 28_000), 600_000)
        s.offs.append(s.t)
        s.msgs.append(msg)
        s.ref = url

    def _track(self, s: _Session, event: str, props: dict[str, Any], gap: int = -1) -> None:
        msg = {
            "type": "track", "event": event, "anonymousId": s.anon, "properties": props,
            "context": {"ip": s.ip, "userAgent": s.ua, "locale": s.locale, "timezone": s.tz,
                        "library": {"name": "analytics.js", "version": _AJS_VERSION}},
        }  # fmt: skip
        if s.uid is not None:
            msg["userId"] = s.uid
        s.t += gap if gap >= 0 else 400 + int(self.rnd() * 2500)
        s.offs.append(s.t)
        s.msgs.append(msg)

    def _identify(self, s: _Session, u: int) -> None:
        msg = {"type": "identify", "anonymousId": s.anon, "userId": self.u_id[u], "traits": dict(self.u_traits[u]),
               "context": self._ctx(s)}  # fmt: skip
        self._add(s, msg, 300 + int(self.rnd() * 900))

    def _server(self, ms: int, uid: str, event: str, props: dict[str, Any]) -> None:
        """A message sent from the store's backend or email provider: userId only, no browser context."""
        self._put(ms, {"type": "track", "event": event, "userId": uid, "properties": props,
                       "context": {"library": dict(_SERVER_LIBRARY)}})  # fmt: skip

    # --- pages ---------------------------------------------------------------------------------

    def _home(self, s: _Session, search: str = "", first: bool = False) -> None:
        title = "متجر مسار - عود وعبايات وهدايا" if s.ar else f"{STORE_NAME} - Oud, Abayas & Gifts"
        self._page(s, "Home", "/", title, search, first)

    def _category(
        self, s: _Session, cat: int, phase: int, ci: int, search: str = "", first: bool = False
    ) -> None:
        spec = _CATEGORIES[cat]
        title = f"{spec[2]} | مسار" if s.ar else f"{spec[1]} | Masar"
        self._page(s, "Category", f"/collections/{spec[0]}", title, search, first)
        products = [dict(x) for x in self.list_tpl[phase][ci][cat]]
        self._track(s, "Product List Viewed", {"list_id": spec[0], "category": spec[1], "products": products})

    def _search(self, s: _Session, cat: int, phase: int, ci: int) -> None:
        queries = _CATEGORIES[cat][8]
        q = queries[int(self.rnd() * len(queries))][1 if s.ar else 0]
        title = "نتائج البحث | مسار" if s.ar else "Search results | Masar"
        self._page(s, "Search", "/search", title, f"?q={quote(q)}")
        self._track(s, "Products Searched", {"query": q})
        products = [dict(x) for x in self.list_tpl[phase][ci][cat][:6]]
        self._track(s, "Product List Viewed", {"list_id": "search_results", "category": _CATEGORIES[cat][1],
                                               "products": products})  # fmt: skip

    def _product(
        self, s: _Session, prod: int, phase: int, ci: int, search: str = "", first: bool = False
    ) -> None:
        p = self.p
        title = f"{p.p_name_ar[prod]} | مسار" if s.ar else f"{p.p_name[prod]} | Masar"
        self._page(s, "Product", self.prod_path[prod], title, search, first)
        self._track(s, "Product Viewed", dict(self.prod_tpl[phase][ci][prod]))

    def _pick_product(self, cat: int) -> int:
        return self.p.cat_products[cat][self._pick(self.p.cat_cum[cat])]

    def _pick_category(self, s: _Session, focus: int) -> int:
        if focus >= 0 and self.rnd() < 0.6:
            return focus
        return self._pick(self.interest_cum[0 if self.v_female[s.v] else 1])

    # --- landing -------------------------------------------------------------------------------

    def _landing(self, s: _Session, camp: _Campaign, ci: int) -> tuple[str, dict[str, str] | None]:
        """The landing query string (utm_* and click id) and the context.campaign it implies."""
        rnd = self.rnd
        ref = camp.referrers[int(rnd() * len(camp.referrers))]
        s.ref = _COUNTRIES[ci].google if ref == "google" else ref
        if camp.name is None:
            return "", None
        parts = [camp.query]
        campaign = {"source": camp.source or "", "medium": camp.medium or "", "name": camp.name}
        if camp.contents:
            content = camp.contents[int(rnd() * len(camp.contents))]
            parts.append(f"&utm_content={content}")
            campaign["content"] = content
        if camp.terms:
            j = int(rnd() * len(camp.terms))
            parts.append(f"&utm_term={camp.terms_q[j]}")
            campaign["term"] = camp.terms[j]
        if camp.click_id == "gclid":
            parts.append(f"&gclid=Cj0KCQjw{self._token(51)}_BwE")
        elif camp.click_id == "fbclid":
            parts.append(f"&fbclid=IwAR{self._token(45)}")
        elif camp.click_id == "ttclid":
            parts.append(f"&ttclid=E.C.P.{self._token(60)}")
        elif camp.click_id == "ScCid":
            parts.append(f"&ScCid={_uuid4(self.rng.getrandbits(64), self.rng.getrandbits(64))}")
        return "?" + "".join(parts), campaign

    # --- sessions ------------------------------------------------------------------------------

    def _session(
        self, day: int, start_ms: int, v: int, camp_i: int, mode: int, returning: bool, arg: int
    ) -> None:
        """Write one web session. mode: _R_SESSION (planned), _R_CLICK (email click),
        _R_REPEAT (a customer coming back to buy again), _R_REVIEW (reviewing product ``arg``)."""
        p, rnd = self.p, self.rnd
        camp = p.campaigns[camp_i]
        ci = self.v_country[v]
        cty = _COUNTRIES[ci]
        fam = self.v_family[v]
        phase = 1 if day >= p.price_day else 0
        s = _Session(v, start_ms, self.v_anon[v], self.v_ip[v], self.v_ua[v], self.v_locale[v], cty.timezone)
        if self.v_user[v] >= 0:
            s.user = self.v_user[v]
            s.uid = self.u_id[s.user]
        returning = returning or self.v_sessions[v] > 0
        self.v_sessions[v] += 1
        sale = p.sale_days[0] <= day <= p.sale_days[1]
        search, campaign = self._landing(s, camp, ci)

        if mode == _R_REVIEW:
            self._review_session(s, arg, phase, ci, search)
            self._finish(s, day, start_ms, campaign)
            return

        if mode == _R_REPEAT:
            p_view, p_add, p_checkout = 0.95, 0.7, 0.75
        else:
            intent = camp.conversion * _DEVICE_MULT[_DEVICES[fam][1]]
            if returning:
                intent *= 1.2
            if s.user >= 0 and self.u_orders[s.user] > 0:
                intent *= 1.45
            if sale:
                intent *= _SALE_INTENT
            p_view = min(0.95, _BASE_VIEW * intent**0.3)
            p_add = min(0.9, _BASE_ADD * intent**0.4)
            p_checkout = min(0.9, _BASE_CHECKOUT * intent**0.3)
        viewed = rnd() < p_view
        focus = camp.focus

        # Landing page.
        cat = self._pick_category(s, focus)
        products: list[int] = []
        style = camp.style
        if viewed and style == "product" and rnd() < 0.8:
            prod = self._pick_product(cat)
            self._product(s, prod, phase, ci, search, first=True)
            products.append(prod)
        elif style == "home" or (style == "product" and not viewed and rnd() < 0.5):
            self._home(s, search, first=True)
        else:
            self._category(s, cat, phase, ci, search, first=True)

        # A signed-out owner (repeat customer on a new device) often signs in right away.
        if s.user < 0 and self.v_owner[v] >= 0 and rnd() < 0.6:
            self._sign_in(s, self.v_owner[v])

        if not viewed:
            # Bounce, or look around without opening a product.
            if rnd() < 0.45:
                for _ in range(1 + int(rnd() * 3)):
                    r = rnd()
                    if r < 0.5:
                        self._category(s, self._pick_category(s, focus), phase, ci)
                    elif r < 0.75:
                        self._search(s, self._pick_category(s, focus), phase, ci)
                    else:
                        self._home(s)
                if s.user < 0 and rnd() < 0.03:
                    self._sign_up(s, "email")
            self._finish(s, day, start_ms, campaign)
            return

        n_views = 1 + min(int(self._exp(1.3)), 7)
        n_items = 0
        if rnd() < p_add:
            r = rnd()
            n_items = 1 if r < 0.7 else (2 if r < 0.92 else 3)
            n_views = max(n_views, n_items)
        cart: list[list[int]] = []  # [product, quantity]
        prod_tpl = self.prod_tpl[phase][ci]
        for k in range(n_views):
            if k < len(products):
                prod = products[k]  # the landing product
            else:
                if products and rnd() < 0.25:
                    if rnd() < 0.6:
                        self._category(s, cat, phase, ci)
                    else:
                        self._search(s, cat, phase, ci)
                if products and rnd() >= 0.6:
                    cat = self._pick_category(s, focus)
                prod = self._pick_product(cat)
                if prod in products:
                    prod = self._pick_product(cat)
                self._product(s, prod, phase, ci)
                products.append(prod)
            r = rnd()
            if r < 0.04:
                self._track(s, "Product Added to Wishlist", {**prod_tpl[prod], "wishlist_id": f"wl_{s.anon[:8]}",
                                                             "wishlist_name": "Favourites"})  # fmt: skip
            elif r < 0.055:
                via = ("whatsapp", "whatsapp", "snapchat", "copy_link", "x")[int(rnd() * 5)]
                self._track(s, "Product Shared", {**prod_tpl[prod], "share_via": via})
            # The last views of the session are the products that go into the cart.
            if k >= n_views - n_items and all(c[0] != prod for c in cart):
                qty = 1
                if p.p_cat[prod] == _CAT_INDEX["dates-sweets"]:
                    qty = 1 + (rnd() < 0.3) + (rnd() < 0.1)
                elif rnd() < 0.08:
                    qty = 2
                if not s.cart_id:
                    self.counter["cart"] += 1
                    s.cart_id = f"cart_{self.counter['cart']:07d}"
                self._track(
                    s,
                    "Product Added",
                    {**prod_tpl[prod], "quantity": qty, "cart_id": s.cart_id},
                    4000 + int(self._exp(15_000)),
                )
                cart.append([prod, qty])

        if s.user < 0 and rnd() < 0.02:
            self._sign_up(s, "email")

        if not cart:
            if rnd() < 0.3:
                self._category(s, self._pick_category(s, focus), phase, ci)
            self._finish(s, day, start_ms, campaign)
            return

        # Judged on everything added, as an analysis of "carts containing perfume" would see it.
        has_perfume = any(p.p_cat[c[0]] == _PERFUMES for c in cart)
        if len(cart) > 1 and rnd() < 0.15:
            prod, qty = cart.pop(int(rnd() * (len(cart) - 1)))
            self._track(s, "Product Removed", {**self.prod_tpl[phase][ci][prod], "quantity": qty,
                                               "cart_id": s.cart_id})  # fmt: skip
        if rnd() < 0.85:
            self._page(s, "Cart", "/cart", "سلة التسوق | مسار" if s.ar else "Your cart | Masar")
            self._track(s, "Cart Viewed", {"cart_id": s.cart_id, "products": self._items(cart, phase, ci)})

        if phase and has_perfume:
            p_checkout *= _PRICE_UP_CHECKOUT
        if rnd() < p_checkout:
            self._checkout(s, day, start_ms, cart, phase, ci, fam, camp, sale)
        elif rnd() < 0.3:
            self._category(s, self._pick_category(s, focus), phase, ci)
        self._finish(s, day, start_ms, campaign)

    def _items(self, cart: list[list[int]], phase: int, ci: int) -> list[dict[str, Any]]:
        tpl = self.item_tpl[phase][ci]
        return [{**tpl[prod], "quantity": qty} for prod, qty in cart]

    def _sign_up(self, s: _Session, method: str) -> None:
        self._page(
            s, "Register", "/account/register", "إنشاء حساب | مسار" if s.ar else "Create account | Masar"
        )
        u = self._new_user(s.v, s.start + s.t)
        s.user, s.uid = u, self.u_id[u]
        self.v_user[s.v] = u
        self.u_subscribed[u] = self.rnd() < (0.7 if method == "email" else 0.5)
        self._track(
            s,
            "Signed Up",
            {"method": method, "newsletter_opt_in": self.u_subscribed[u]},
            8000 + int(self._exp(20_000)),
        )
        self._identify(s, u)

    def _sign_in(self, s: _Session, u: int) -> None:
        self._page(s, "Sign In", "/account/login", "تسجيل الدخول | مسار" if s.ar else "Sign in | Masar")
        s.user, s.uid = u, self.u_id[u]
        self.v_user[s.v] = u
        self.v_owner[s.v] = -1
        self.u_device[u] = s.v
        self._track(s, "Signed In", {"method": "email"}, 6000 + int(self._exp(10_000)))
        self._identify(s, u)

    def _checkout(self, s: _Session, day: int, start_ms: int, cart: list[list[int]], phase: int, ci: int,
                  fam: int, camp: _Campaign, sale: bool) -> None:  # fmt: skip
        p, rnd = self.p, self.rnd
        cty = _COUNTRIES[ci]
        cur = cty.currency
        prices = p.local_price[phase][ci]
        gross = sum((prices[prod] * qty for prod, qty in cart), Decimal(0))
        self.counter["checkout"] += 1
        checkout_id = f"chk_{self.counter['checkout']:07d}"
        items = self._items(cart, phase, ci)
        self._track(s, "Checkout Started", {"checkout_id": checkout_id, "cart_id": s.cart_id, "value": float(gross),
                                            "revenue": float(gross), "currency": cur, "products": items})  # fmt: skip
        title = "إتمام الطلب | مسار" if s.ar else "Checkout | Masar"
        self._page(s, "Checkout", "/checkout/shipping", title)
        self._track(s, "Checkout Step Viewed", {"checkout_id": checkout_id, "step": 1})

        # Coupons: creators' codes, the sale code, the welcome code, and codes found online.
        coupon, pct = None, 0
        orders_before = self.u_orders[s.user] if s.user >= 0 else 0
        code = None
        r = rnd()
        if camp.coupon and r < 0.75:
            code = camp.coupon
        elif sale and r < 0.5:
            code = _SALE[0]
        elif orders_before == 0 and r < 0.12:
            code = _WELCOME[0]
        elif r < 0.05:
            code = _BAD_CODES[int(rnd() * len(_BAD_CODES))]
        elif day > p.sale_days[1] and r < 0.07:
            code = _SALE[0]
        if code is not None:
            ids = {"checkout_id": checkout_id, "cart_id": s.cart_id, "coupon_id": code}
            self._track(s, "Coupon Entered", dict(ids), 5000 + int(self._exp(8000)))
            reason = None
            if code == camp.coupon:
                pct = camp.coupon_pct
            elif code == _SALE[0]:
                pct, reason = (_SALE[1], None) if sale else (0, "expired")
            elif code == _WELCOME[0]:
                pct, reason = (_WELCOME[1], None) if orders_before == 0 else (0, "first order only")
            else:
                reason = "invalid code"
            if reason is None:
                coupon = code
                discount_preview = _q(gross * Decimal(pct) / 100, cur)
                self._track(s, "Coupon Applied", {**ids, "coupon_name": code, "discount": float(discount_preview),
                                                  "currency": cur})  # fmt: skip
            else:
                self._track(s, "Coupon Denied", {**ids, "coupon": code, "reason": reason})

        if rnd() >= _STEP1:
            return
        # The shipping form needs an account: sign in the device's owner, or create one (both
        # identify); a signed-in shopper is identified again with the address they entered.
        if s.user >= 0:
            self._identify(s, s.user)
        elif self.v_owner[s.v] >= 0:
            self._sign_in(s, self.v_owner[s.v])
        else:
            self._sign_up(s, "checkout")
        self._track(
            s,
            "Checkout Step Completed",
            {"checkout_id": checkout_id, "step": 1},
            20_000 + int(self._exp(40_000)),
        )
        self._page(s, "Checkout", "/checkout/delivery", title)
        self._track(s, "Checkout Step Viewed", {"checkout_id": checkout_id, "step": 2})
        if rnd() >= _STEP2:
            return
        express = rnd() < 0.22
        shipping_method = "express" if express else "standard"
        self._track(s, "Checkout Step Completed", {"checkout_id": checkout_id, "step": 2,
                                                   "shipping_method": shipping_method}, 5000 + int(self._exp(10_000)))  # fmt: skip
        self._page(s, "Checkout", "/checkout/payment", title)
        self._track(s, "Checkout Step Viewed", {"checkout_id": checkout_id, "step": 3})
        broken = fam == _IPHONE_SAFARI and p.break_days[0] <= day <= p.break_days[1]
        if rnd() >= (_PAYMENT_BROKEN if broken else _PAYMENT):
            return
        method = cty.payments[self._pick(self.country_cum[ci])][0]
        if method == "apple_pay" and not _DEVICES[fam][2]:
            method = "credit_card"
        self._track(s, "Payment Info Entered", {"checkout_id": checkout_id, "step": 3, "payment_method": method,
                                                "shipping_method": shipping_method}, 15_000 + int(self._exp(30_000)))  # fmt: skip
        if rnd() >= _PAID:
            return
        self._track(
            s,
            "Checkout Step Completed",
            {"checkout_id": checkout_id, "step": 3, "payment_method": method},
            2000 + int(self._exp(6000)),
        )

        discount = _q(gross * Decimal(pct) / 100, cur) if coupon else Decimal(0)
        subtotal = gross - discount
        if express:
            shipping = cty.express
        else:
            shipping = Decimal(0) if subtotal >= cty.free_from else cty.shipping
        shipping = _q(shipping, cur)
        tax = _q((subtotal + shipping) * cty.vat, cur)
        total = subtotal + shipping + tax
        self.counter["order"] += 1
        order_id = f"MS{100_000 + self.counter['order']}"
        self._page(s, "Order Confirmation", "/checkout/thank-you",
                   "تم تأكيد الطلب | مسار" if s.ar else "Order confirmed | Masar")  # fmt: skip
        props: dict[str, Any] = {
            "checkout_id": checkout_id, "order_id": order_id, "affiliation": STORE_NAME,
            "total": float(total), "subtotal": float(subtotal), "revenue": float(subtotal),
            "shipping": float(shipping), "tax": float(tax), "discount": float(discount),
        }  # fmt: skip
        if coupon:
            props["coupon"] = coupon
        props["currency"] = cur
        props["payment_method"] = method
        props["products"] = items
        self._track(s, "Order Completed", props, 500 + int(rnd() * 1500))
        self._after_order(s, day, start_ms + s.t, order_id, total, cur, method, cart)

    def _after_order(self, s: _Session, day: int, order_ms: int, order_id: str, total: Decimal, cur: str,
                     method: str, cart: list[list[int]]) -> None:  # fmt: skip
        """Cancellations, refunds, reviews and repeat purchases, scheduled into later days."""
        rnd = self.rnd
        u = s.user
        uid = self.u_id[u]
        self.u_orders[u] += 1
        # Cash-on-delivery orders are cancelled more often (customer unreachable, changed mind).
        if rnd() < (0.08 if method == "cash_on_delivery" else 0.025):
            ms = order_ms + 3_600_000 + int(rnd() * 19 * 3_600_000)
            reason = ("customer_request", "payment_not_collected", "out_of_stock")[int(rnd() * 3)]
            self._server(ms, uid, "Order Cancelled", {"order_id": order_id, "total": float(total), "currency": cur,
                                                      "reason": reason})  # fmt: skip
            return
        if rnd() < 0.045:
            ms = order_ms + (3 + int(rnd() * 12)) * _DAY_MS + int(rnd() * _DAY_MS)
            if len(cart) > 1 and rnd() < 0.5:
                # Partial refund: one item back, tax included.
                prod, qty = cart[int(rnd() * len(cart))]
                cty = _COUNTRIES[self.v_country[s.v]]
                phase = 1 if day >= self.p.price_day else 0
                amount = _q(self.p.local_price[phase][self.v_country[s.v]][prod] * qty * (1 + cty.vat), cur)
                amount = min(amount, total)
            else:
                amount = total
            self._server(
                ms, uid, "Order Refunded", {"order_id": order_id, "total": float(amount), "currency": cur}
            )
        if rnd() < 0.15:
            prod = cart[int(rnd() * len(cart))][0]
            when = day + 5 + int(self._exp(5.0))
            self._request(when, self._evening_sec(s.v), _R_REVIEW, u, prod, 0)
        if rnd() < 0.4:
            when = day + 7 + int(self._exp(14.0))
            new_device = 1 if rnd() < 0.3 else 0
            self._request(when, self._evening_sec(s.v), _R_REPEAT, u, new_device, 0)

    def _evening_sec(self, v: int) -> int:
        local = self._pick(self.hour_cum) * 3600 + int(self.rnd() * 3600)
        return (local - _COUNTRIES[self.v_country[v]].utc_offset * 3600) % 86_400

    def _review_session(self, s: _Session, prod: int, phase: int, ci: int, search: str) -> None:
        self._product(s, prod, phase, ci, search, first=True)
        r = self.rnd()
        rating = 5 if r < 0.55 else 4 if r < 0.8 else 3 if r < 0.9 else 2 if r < 0.95 else 1
        self.counter["review"] += 1
        self._track(s, "Product Reviewed", {"product_id": self.p.p_id[prod], "review_id": f"rev_{self.counter['review']:06d}",
                                            "rating": rating}, 30_000 + int(self._exp(60_000)))  # fmt: skip

    def _finish(self, s: _Session, day: int, start_ms: int, campaign: dict[str, str] | None) -> None:
        """Place the session's events in time; squeeze it if it would run past midnight UTC."""
        if campaign is not None:
            s.msgs[0]["context"]["campaign"] = campaign
        day_end = self.p.start_ms + (day + 1) * _DAY_MS - 1000
        room = day_end - start_ms
        duration = s.t
        if duration > room:
            scale = max(room, 0) / duration
            offs = [int(o * scale) for o in s.offs]
        else:
            offs = s.offs
        bucket = self.buckets.setdefault(day, [])
        seq = self.seq
        for o, msg in zip(offs, s.msgs, strict=True):
            bucket.append((start_ms + o, next(seq), msg))
        self.v_last_end[s.v] = start_ms + (offs[-1] if offs else 0)

    # --- email ---------------------------------------------------------------------------------

    def _send_email(self, day: int, sec: int, entry: tuple[int, int, int, str, str, str, str]) -> None:
        rnd = self.rnd
        _, _, camp_i, campaign_id, campaign_name, subject_en, subject_ar = entry
        camp = self.p.campaigns[camp_i]
        base_ms = self.p.start_ms + day * _DAY_MS + sec * 1000
        focus = camp.focus if camp.focus >= 0 else _PERFUMES
        link = f"{DOMAIN}/collections/{_CATEGORIES[focus][0]}?{camp.query}&utm_content={camp.contents[0]}"
        for u in range(len(self.u_id)):
            if not self.u_subscribed[u]:
                continue
            uid = self.u_id[u]
            props = {"email_id": f"{campaign_id}-{u + 1:06d}", "email_subject": subject_ar if self.u_ar[u] else subject_en,
                     "campaign_id": campaign_id, "campaign_name": campaign_name}  # fmt: skip
            ms = base_ms + int(rnd() * 1_200_000)
            if rnd() < 0.015:
                self._server(ms, uid, "Email Bounced", dict(props))
                self.u_subscribed[u] = False  # the provider suppresses bounced addresses
                continue
            self._server(ms, uid, "Email Delivered", dict(props))
            if rnd() >= 0.3:
                continue
            ms += 60_000 + int(self._exp(3 * 3_600_000))
            self._server(ms, uid, "Email Opened", dict(props))
            r = rnd()
            if r < 0.012:
                self._server(ms + 20_000 + int(rnd() * 60_000), uid, "Unsubscribed", dict(props))
                self.u_subscribed[u] = False
            elif r < 0.13:
                ms += 5_000 + int(self._exp(90_000))
                self._server(ms, uid, "Email Link Clicked", {**props, "link_url": link})
                click_day = (ms - self.p.start_ms) // _DAY_MS
                click_sec = (ms - self.p.start_ms) % _DAY_MS // 1000 + 2
                self._request(int(click_day), int(click_sec), _R_CLICK, u, camp_i, 0)

    # --- driver --------------------------------------------------------------------------------

    def _slot(self, v: int, start_ms: int, day: int) -> int:
        """Start time of a session that does not overlap the device's previous one; -1 if the day is over."""
        earliest = self.v_last_end[v] + 31 * _MINUTE_MS
        if start_ms < earliest:
            start_ms = earliest + int(self.rnd() * 20 * _MINUTE_MS)
        if start_ms > self.p.start_ms + (day + 1) * _DAY_MS - 10 * _MINUTE_MS:
            return -1
        return start_ms

    def run(self) -> Iterator[dict[str, Any]]:
        p = self.p
        self.emails_by_day: dict[int, list[tuple[int, int, int, str, str, str, str]]] = {}
        for entry in p.emails:
            self.emails_by_day.setdefault(entry[0], []).append(entry)
        self.s_sec, self.s_vis = p.s_sec.tolist(), p.s_vis.tolist()
        self.s_camp, self.s_ret = p.s_camp.tolist(), p.s_return.tolist()
        self.bounds = p.day_bounds.tolist()
        self.clock = _clock_strings()
        self.n = 0
        for day in range(p.days):
            # The generated objects hold no reference cycles, yet each day allocates ~30k
            # containers, which makes the cyclic collector rescan the growing day buffer over and
            # over (~20% of the run time). It is paused while a day is generated, never while
            # the caller consumes messages.
            enabled = gc.isenabled()
            gc.disable()
            try:
                out = self._day(day)
            finally:
                if enabled:
                    gc.enable()
            yield from out

    def _day(self, day: int) -> list[dict[str, Any]]:
        """All messages of one day, in time order, with their messageId and timestamp."""
        p = self.p
        day_ms = p.start_ms + day * _DAY_MS
        heap: list[tuple[Any, ...]] = self.requests.pop(day, [])
        s_sec, s_vis, s_camp, s_ret = self.s_sec, self.s_vis, self.s_camp, self.s_ret
        for i in range(self.bounds[day], self.bounds[day + 1]):
            heap.append((s_sec[i], next(self.seq), _R_SESSION, s_vis[i], s_camp[i], int(s_ret[i])))
        emails = self.emails_by_day.get(day, [])
        for entry in emails:
            heap.append((entry[1], next(self.seq), _R_EMAIL, 0, 0, 0))
        heapq.heapify(heap)
        email_iter = iter(emails)
        while heap:
            sec, _, kind, a, b, c = heapq.heappop(heap)
            if kind == _R_EMAIL:
                self._send_email(day, sec, next(email_iter))
                # Clicks on today's email become sessions later today.
                for req in self.requests.pop(day, []):
                    heapq.heappush(heap, req)
                continue
            arg = 0
            if kind == _R_SESSION:
                v, camp_i, returning = a, b, bool(c)
            elif kind == _R_CLICK:
                v, camp_i, returning = self.u_device[a], b, True
            elif kind == _R_REPEAT:
                v = self.u_device[a]
                if b:
                    v = self._new_device(v)
                    self.v_owner[v] = a
                camp_i, returning = self._repeat_campaign(), True
            else:
                v, camp_i, returning, arg = self.u_device[a], p.channel_campaigns["direct"][0], True, b
            start = self._slot(v, day_ms + sec * 1000, day)
            if start < 0:
                continue
            self._session(day, start, v, camp_i, kind, returning, arg)
        # (ms, seq, msg) tuples: seq is unique, so sorting never compares the dicts.
        bucket = self.buckets.pop(day, [])
        bucket.sort()
        prefix = p.day_prefix[day]
        hms, millis = self.clock
        n = self.n
        out = []
        for ms, _, msg in bucket:
            n += 1
            msg["messageId"] = f"demo-{n}"
            sec, milli = divmod(ms - day_ms, 1000)
            msg["timestamp"] = prefix + hms[sec] + millis[milli]
            out.append(msg)
        self.n = n
        return out

    def _repeat_campaign(self) -> int:
        r = self.rnd()
        chans = self.p.channel_campaigns
        if r < 0.5:
            return chans["direct"][0]
        if r < 0.75:
            return chans["organic_search"][0]
        if r < 0.9:
            return next(i for i in chans["google_ads"] if self.p.campaigns[i].name == "gads_brand")
        return next(i for i in chans["facebook_ads"] if self.p.campaigns[i].name == "fb_retargeting_cart")


def _clock_strings() -> tuple[list[str], list[str]]:
    """Clock text for every second of a day and ".mmmZ" for every millisecond: formatting
    timestamps by lookup is several times cheaper than strftime for ~600k messages."""
    hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    millis = [f".{ms:03d}Z" for ms in range(1000)]
    return hms, millis


def _iso(ms: int) -> str:
    return (
        datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{ms % 1000:03d}Z"
    )
