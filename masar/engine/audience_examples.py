"""The five audiences of the issue, ready to save under a name of the store owner's choosing
(``masar audiences save NAME --example cart_abandoners``).

Each example is a definition (docs/audiences.md) with a few parameters: the window of a cart,
how many views, the categories, the percent, the factor. The categories have no default: a
store's own category names are the only ones that mean anything, and an example that quietly
matched nobody would be worse than one that asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from masar.engine.audiences import ORDER_COMPLETED, parse_audience
from masar.errors import InvalidInput


@dataclass(frozen=True)
class Param:
    name: str
    kind: Literal["days", "count", "number", "categories"]
    default: Any  # None: the example needs it
    help: str

    def read(self, value: Any) -> Any:
        """The value from the command line's text (or as given from Python)."""
        if self.kind == "categories":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(c, str) for c in items):
                raise InvalidInput(f"{self.name} is a list of categories (Shoes,Bags), got {value!r}")
            categories = [c.strip() for c in items if c.strip()]
            if not categories:
                raise InvalidInput(f"{self.name} names at least one category")
            return categories
        if self.kind in ("days", "count"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise InvalidInput(f"{self.name} is a whole number, got {value!r}")
            try:
                return int(value)
            except ValueError:
                raise InvalidInput(f"{self.name} is a whole number, got {value!r}") from None
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise InvalidInput(f"{self.name} is a number, got {value!r}") from None
        return int(number) if number == number.to_integral_value() else float(number)


@dataclass(frozen=True)
class Example:
    key: str
    title: str  # with the parameters in braces, as the default name of what it selects
    params: tuple[Param, ...]
    build: Callable[..., dict[str, Any]]

    def definition(self, **values: Any) -> dict[str, Any]:
        """The definition with these parameter values (the defaults for the others), checked."""
        known = {p.name: p for p in self.params}
        unknown = [name for name in values if name not in known]
        if unknown:
            takes = ", ".join(known) or "no parameters"
            raise InvalidInput(f"the example {self.key} has no parameter {unknown[0]!r}; it takes {takes}")
        missing = [p.name for p in self.params if p.default is None and p.name not in values]
        if missing:
            needed = " and ".join(f"{name}=CATEGORY[,CATEGORY…]" for name in missing)
            raise InvalidInput(f"the example {self.key} needs {needed} (--set {missing[0]}=Shoes)")
        chosen = {p.name: p.read(values[p.name]) if p.name in values else p.default for p in self.params}
        try:
            return parse_audience(self.build(**chosen)).to_dict()
        except InvalidInput as exc:  # a value out of range: say it in the parameters' terms
            raise InvalidInput(f"the example {self.key} with {_shown(chosen)}: {exc.message}") from None

    def to_dict(self) -> dict[str, Any]:
        placeholders = {p.name: p.default if p.default is not None else [f"<{p.name}>"] for p in self.params}
        return {
            "key": self.key,
            "title": self.title,
            "params": [{"name": p.name, "default": p.default, "help": p.help} for p in self.params],
            "definition": parse_audience(self.build(**placeholders)).to_dict(),
        }


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in values.items())


def _cart_abandoners(days: int) -> dict[str, Any]:
    return {"all": [
        {"type": "did", "event": "Product Added", "within_days": days},
        {"type": "did_not_since", "event": ORDER_COMPLETED, "since": {"event": "Product Added"}},
    ]}  # fmt: skip


def _viewed_not_added(times: int) -> dict[str, Any]:
    return {"all": [
        {"type": "did", "event": "Product Viewed", "at_least": times, "per_property": "product_id",
         "same_value": [{"type": "did_not", "event": "Product Added"}]},
    ]}  # fmt: skip


def _bought_not_bought(bought: list[str], never: list[str]) -> dict[str, Any]:
    return {"all": [
        {"type": "bought_category", "categories": bought},
        {"type": "never_bought_category", "categories": never},
    ]}  # fmt: skip


def _top_customers(percent: float) -> dict[str, Any]:
    return {"all": [{"type": "top_percent", "percent": percent, "by": "revenue"}]}


def _lapsed(factor: float) -> dict[str, Any]:
    return {"all": [{"type": "lapsed", "factor": factor}]}


EXAMPLES: dict[str, Example] = {
    e.key: e
    for e in (
        Example("cart_abandoners", "Added to cart in the last {days} days and no order since",
                (Param("days", "days", 7, "the window of the add to cart, in days up to as_of"),), _cart_abandoners),
        Example("viewed_not_added", "Viewed a product {times}+ times without adding it",
                (Param("times", "count", 3, "views of the same product"),), _viewed_not_added),
        Example("bought_not_bought", "Bought from {bought} but never {never}",
                (Param("bought", "categories", None, "categories bought (any of them)"),
                 Param("never", "categories", None, "categories never bought")), _bought_not_bought),
        Example("top_customers", "Top {percent}% by revenue",
                (Param("percent", "number", 10, "the share of customers, by revenue net of refunds"),),
                _top_customers),
        Example("lapsed", "Lapsed: no order in {factor}× their usual gap",
                (Param("factor", "number", 2, "times the median gap between their order days"),), _lapsed),
    )
}  # fmt: skip


def example(key: str) -> Example:
    if key not in EXAMPLES:
        raise InvalidInput(f"no example named {key!r}; the examples are {', '.join(EXAMPLES)}")
    return EXAMPLES[key]


def example_definition(key: str, **values: Any) -> dict[str, Any]:
    """``example_definition("bought_not_bought", bought="Shoes", never="Bags")`` → the definition."""
    return example(key).definition(**values)
