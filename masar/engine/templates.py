"""Funnel templates store owners start from; each stage maps to events, editable per source.

A template is a list of steps in the query's own step format (so anything a step can say — groups
of events, filters, optional stages — a template stage can say too). ``masar templates set``
stores a source's own definition, which then replaces the built-in one for that source.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from masar.errors import InvalidInput, NotFound
from masar.model.queries import MAX_STEPS, FunnelStep


def _ev(*names: str) -> list[dict[str, Any]]:
    return [{"event": name} for name in names]


BUILTIN: dict[str, dict[str, Any]] = {
    "store": {
        "title": "Store funnel: product to order",
        "steps": [
            {"name": "Product Viewed", "event": "Product Viewed"},
            {"name": "Product Added", "event": "Product Added"},
            {"name": "Checkout Started", "event": "Checkout Started"},
            {"name": "Payment Info Entered", "event": "Payment Info Entered"},
            {"name": "Order Completed", "event": "Order Completed"},
        ],
    },
    "aida": {
        "title": "Awareness, Interest, Decision, Action",
        "steps": [
            {"name": "Awareness", "any_of": _ev("Page Viewed", "Product List Viewed", "Products Searched")},
            {"name": "Interest", "any_of": _ev("Product Viewed", "Product Clicked")},
            {"name": "Decision", "any_of": _ev("Product Added", "Cart Viewed", "Checkout Started")},
            {"name": "Action", "event": "Order Completed"},
        ],
    },
    "marketing": {
        "title": "Six-stage marketing funnel",
        "steps": [
            {"name": "Awareness", "group": "top",
             "any_of": _ev("Page Viewed", "Product List Viewed", "Promotion Viewed")},
            {"name": "Interest", "group": "top",
             "any_of": _ev("Product Viewed", "Product Clicked", "Products Searched", "Product List Filtered")},
            {"name": "Consideration", "group": "middle",
             "any_of": _ev("Product Added", "Product Added to Wishlist", "Product Shared", "Cart Viewed")},
            {"name": "Intent", "group": "middle", "any_of": _ev("Checkout Started")},
            {"name": "Evaluation", "group": "bottom",
             "any_of": _ev("Checkout Step Completed", "Payment Info Entered", "Coupon Applied",
                           "Coupon Entered")},
            {"name": "Purchase", "group": "bottom", "event": "Order Completed"},
        ],  # fmt: skip
    },
    "subscription": {
        "title": "Trial to paid subscription",
        "steps": [
            {"name": "Signed Up", "event": "Signed Up"},
            {"name": "Trial Started", "event": "Trial Started"},
            {"name": "Subscription Started", "any_of": _ev("Subscription Started", "Order Completed")},
        ],
    },
}

_STEPS = TypeAdapter(list[FunnelStep])


def validate_steps(steps: Any) -> list[dict[str, Any]]:
    """A template's steps, checked as funnel steps (2 to 30)."""
    if not isinstance(steps, list) or not 2 <= len(steps) <= MAX_STEPS:
        raise InvalidInput(f"a template has 2 to {MAX_STEPS} steps", code="invalid_template")
    try:
        parsed = _STEPS.validate_python(steps)
    except ValidationError as exc:
        raise InvalidInput(f"invalid template step: {exc.errors()[0]['msg']}", code="invalid_template") from None
    return [s.model_dump(exclude_defaults=True) for s in parsed]


def template(store: Any, source: Any, name: str) -> dict[str, Any]:
    """``{"name", "title", "steps", "customized"}`` for a source: its own definition, else the built-in."""
    own = store.funnel_template(source, name)
    if own is not None:
        title = BUILTIN.get(name, {}).get("title", name)
        return {"name": name, "title": title, "steps": own, "customized": True}
    if name not in BUILTIN:
        raise NotFound(f"no funnel template named {name!r}; there are: {', '.join(sorted(BUILTIN))}",
                       code="unknown_template")  # fmt: skip
    return {"name": name, "title": BUILTIN[name]["title"], "steps": BUILTIN[name]["steps"], "customized": False}


def templates(store: Any, source: Any) -> list[dict[str, Any]]:
    names = sorted(set(BUILTIN) | set(store.funnel_template_names(source)))
    return [template(store, source, name) for name in names]


def expand_template(store: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A query that names a ``template`` (and no steps) gets the template's steps."""
    if "template" not in data:
        return data
    data = dict(data)
    name = data.pop("template")
    if "steps" in data:
        raise InvalidInput("give either steps or a template, not both", code="invalid_query")
    if not isinstance(name, str) or "source" not in data:
        raise InvalidInput("a template query names the template and the source", code="invalid_query")
    data["steps"] = template(store, store.source(data["source"]), name)["steps"]
    return data
