"""Saved funnels: a funnel definition kept by name for one source, so a team reopens the same
funnel (docs/funnels.md, "Saved funnels"). The definition is checked as a funnel query before it
is stored and kept as parsed, defaults spelt out, so it reads back meaning what it meant."""

from __future__ import annotations

import unicodedata
from typing import Any

from masar.engine import parse_query
from masar.engine.templates import expand_template
from masar.errors import InvalidInput

MAX_NAME = 200  # characters of a saved funnel's name (the metadata column's width)


def check_funnel_name(name: Any) -> str:
    """A saved funnel's name as stored: surrounding spaces dropped, 1 to 200 characters of any
    script, no control characters (a name is shown on one line)."""
    if not isinstance(name, str):
        raise InvalidInput(f"a funnel name is text, got {type(name).__name__}", code="invalid_name")
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"a funnel name is 1 to {MAX_NAME} characters, got {len(name)}", code="invalid_name")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("a funnel name cannot hold control characters (line breaks, tabs)", code="invalid_name")
    return name


def funnel_definition(store: Any, source_name: str, definition: Any) -> dict[str, Any]:
    """The definition as stored: a funnel query's fields without ``kind`` and ``source`` (a
    ``template`` is expanded into its steps), parsed — a bad one is refused with the query's own
    error — and dumped back without the fields left unset."""
    if not isinstance(definition, dict):
        raise InvalidInput("a funnel definition is a JSON object with steps", code="invalid_query")
    data = {k: v for k, v in definition.items() if k not in ("kind", "source")}
    query = parse_query(expand_template(store, {"kind": "funnel", "source": source_name, **data}))
    return query.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"kind", "source"})
