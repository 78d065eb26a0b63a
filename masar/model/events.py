"""The event model: Segment's Tracking API messages and the E-commerce v2 spec, plus GA4 aliases."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MESSAGE_TYPES = ("track", "page", "screen", "identify", "group", "alias")

# Non-track calls are stored as events too, so that funnels and paths can use them as steps.
TYPE_EVENT_NAMES = {
    "page": "Page Viewed",
    "screen": "Screen Viewed",
    "identify": "Identify",
    "group": "Group",
    "alias": "Alias",
}

# Segment E-commerce v2 (plus the email spec): first-class names that analyses know.
ECOMMERCE_EVENTS = (
    "Products Searched", "Product List Viewed", "Product List Filtered",
    "Promotion Viewed", "Promotion Clicked",
    "Product Clicked", "Product Viewed", "Product Added", "Product Removed",
    "Cart Viewed", "Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
    "Payment Info Entered", "Order Completed", "Order Updated", "Order Refunded", "Order Cancelled",
    "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
    "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart",
    "Product Shared", "Cart Shared", "Product Reviewed",
)  # fmt: skip
EMAIL_EVENTS = (
    "Email Delivered", "Email Opened", "Email Link Clicked", "Email Bounced",
    "Email Marked as Spam", "Unsubscribed",
)  # fmt: skip

# GA4 recommended e-commerce events → Segment names (docs/events.md lists this table).
GA4_EVENT_ALIASES: dict[str, str] = {
    "page_view": "Page Viewed",
    "search": "Products Searched",
    "view_search_results": "Products Searched",
    "view_item_list": "Product List Viewed",
    "select_item": "Product Clicked",
    "view_item": "Product Viewed",
    "add_to_cart": "Product Added",
    "remove_from_cart": "Product Removed",
    "view_cart": "Cart Viewed",
    "begin_checkout": "Checkout Started",
    "add_shipping_info": "Checkout Step Completed",
    "add_payment_info": "Payment Info Entered",
    "purchase": "Order Completed",
    "refund": "Order Refunded",
    "view_promotion": "Promotion Viewed",
    "select_promotion": "Promotion Clicked",
    "add_to_wishlist": "Product Added to Wishlist",
    "share": "Product Shared",
    "sign_up": "Signed Up",
    "login": "Signed In",
    "generate_lead": "Lead Generated",
}

# GA4 parameter names → Segment property names, applied to aliased GA4 events only.
GA4_PROPERTY_ALIASES: dict[str, str] = {
    "transaction_id": "order_id",
    "value": "revenue",
    "items": "products",
    "item_id": "product_id",
    "item_name": "name",
    "item_category": "category",
    "item_brand": "brand",
    "item_variant": "variant",
    "search_term": "query",
    "item_list_id": "list_id",
    "promotion_id": "promotion_id",
    "creative_name": "creative",
}


class _Message(BaseModel):
    """A Segment message as documented for the OpenAPI schema; validation itself is in capture.normalize."""

    model_config = ConfigDict(extra="allow")

    messageId: str | None = Field(default=None, max_length=100)
    anonymousId: str | None = None
    userId: str | None = None
    timestamp: str | None = None
    originalTimestamp: str | None = None
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = None


class TrackMessage(_Message):
    type: Literal["track"] = "track"
    event: str
    properties: dict[str, Any] | None = None


class PageMessage(_Message):
    type: Literal["page"] = "page"
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class ScreenMessage(PageMessage):
    type: Literal["screen"] = "screen"  # type: ignore[assignment]


class IdentifyMessage(_Message):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = None


class GroupMessage(_Message):
    type: Literal["group"] = "group"
    groupId: str
    traits: dict[str, Any] | None = None


class AliasMessage(_Message):
    type: Literal["alias"] = "alias"
    previousId: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]]
    writeKey: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: str | None = None


class CaptureResponse(BaseModel):
    success: bool = True
    accepted: int
    duplicates: int = 0
    rejected: list[dict[str, Any]] = []
