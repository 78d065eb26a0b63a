"""The msgids the dashboard shows that live outside templates and scripts: metric labels,
channel groups, roles. ``all_msgids`` gathers every msgid (with these) for the catalogue check
and for ``python -m masar.web.messages`` (prints the ones a language lacks)."""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.extract import extract_from_dir

from masar.engine.metrics import METRICS
from masar.enrich.channels import CHANNELS
from masar.store.accounts import ROLES

HERE = Path(__file__).parent
KEYWORDS = {"_": None, "t": None, "gettext": None, "ngettext": (1, 2)}
METHODS = [
    ("**/templates/**.html", "jinja2.ext:babel_extract"),
    ("**/static/**.js", "javascript"),
    ("**.py", "python"),
]


def extracted() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        HERE, METHODS, keywords=KEYWORDS, options_map={"**/static/vendor/**": {}}
    ):
        if "/vendor/" in _file:
            continue
        for text in message if isinstance(message, tuple) else (message,):
            if text:
                found.add(text)
    return found


def all_msgids() -> set[str]:
    return extracted() | {m.label for m in METRICS.values()} | set(CHANNELS) | set(ROLES)


def missing(lang: str) -> list[str]:
    from masar.web.i18n import catalog

    have = catalog(lang)
    return sorted(m for m in all_msgids() if not have.get(m))


if __name__ == "__main__":
    for msgid in missing(sys.argv[1] if len(sys.argv) > 1 else "ar"):
        print(msgid)
