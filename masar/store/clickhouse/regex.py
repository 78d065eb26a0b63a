"""Python regular expressions as RE2 patterns with the same meaning, for ClickHouse's ``match``.

Path-cleaning rules are Python regular expressions searched in a label (docs/paths.md).
ClickHouse runs RE2, whose syntax looks alike but means different things in places: ``.``
matches a line break in ClickHouse (not in Python), ``$`` matches only at the very end (Python:
also before a final line break), ``\\d``, ``\\w`` and ``\\s`` are ASCII in RE2 but Unicode in Python,
and RE2 has no backreferences, lookarounds, atomic groups or possessive repeats. So a pattern is
not passed through: it is parsed with Python's own parser and written out again in RE2 syntax
that means exactly what Python's does — or refused with an error naming the construct.
"""

from __future__ import annotations

import re

# Python's own parser: the parse tree is the pattern's exact meaning.
import re._constants as c
import re._parser as sre_parse
from functools import cache
from typing import Any

from masar.errors import InvalidInput

MAX_RE2_REPEAT = 1000  # RE2 refuses {n,m} beyond this


class Untranslatable(InvalidInput):
    code = "invalid_query"


@cache
def _python_space() -> str:
    """Python's ``\\s`` (str.isspace) as RE2 class items."""
    return "".join(_escape_class(chr(i)) for i in range(0x3001) if chr(i).isspace())


_WORD = r"\p{L}\p{N}_"  # Python's \w: str.isalnum() or "_" — letters and numbers of any script
_DIGIT = r"\p{Nd}"  # Python's \d: decimal digits of any script
_ASCII = {
    c.CATEGORY_DIGIT: ("0-9", False), c.CATEGORY_NOT_DIGIT: ("0-9", True),
    c.CATEGORY_WORD: ("0-9A-Za-z_", False), c.CATEGORY_NOT_WORD: ("0-9A-Za-z_", True),
    c.CATEGORY_SPACE: (r" \t\n\r\f\v", False), c.CATEGORY_NOT_SPACE: (r" \t\n\r\f\v", True),
}  # fmt: skip


def _escape(ch: str) -> str:
    """A character as RE2 reads it literally, in a class or out of one."""
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\x{{{ord(ch):x}}}"


def _escape_class(ch: str) -> str:
    return _escape(ch)


def _category(category: Any, flags: int) -> tuple[str, bool]:
    """(RE2 class items, negated) of a category escape."""
    if flags & re.ASCII:
        return _ASCII[category]
    if category in (c.CATEGORY_DIGIT, c.CATEGORY_NOT_DIGIT):
        return _DIGIT, category == c.CATEGORY_NOT_DIGIT
    if category in (c.CATEGORY_WORD, c.CATEGORY_NOT_WORD):
        return _WORD, category == c.CATEGORY_NOT_WORD
    if category in (c.CATEGORY_SPACE, c.CATEGORY_NOT_SPACE):
        return _python_space(), category == c.CATEGORY_NOT_SPACE
    raise Untranslatable(f"the escape {category} has no RE2 equivalent")


def _refuse(pattern: str, what: str) -> Untranslatable:
    return Untranslatable(
        f"the cleaning pattern {pattern!r} uses {what}, which ClickHouse's regular expressions (RE2) "
        "cannot run; write it without"
    )


class _Writer:
    def __init__(self, pattern: str):
        self.pattern = pattern

    def sequence(self, items: list[tuple[Any, Any]], flags: int, tail: bool) -> str:
        out = []
        for i, (op, av) in enumerate(items):
            out.append(self.item(op, av, flags, tail and i == len(items) - 1))
        return "".join(out)

    def item(self, op: Any, av: Any, flags: int, tail: bool) -> str:
        fold = "(?i:{})" if flags & re.IGNORECASE else "{}"
        if op is c.LITERAL:
            return fold.format(_escape(chr(av)))
        if op is c.NOT_LITERAL:
            return fold.format(f"[^{_escape_class(chr(av))}]")
        if op is c.ANY:
            return "(?s:.)" if flags & re.DOTALL else "[^\\n]"
        if op is c.IN:
            return fold.format(self.klass(av, flags))
        if op is c.AT:
            return self.at(av, flags, tail)
        if op is c.BRANCH:
            return "(?:" + "|".join(self.sequence(list(b), flags, tail) for b in av[1]) + ")"
        if op is c.SUBPATTERN:
            _group, add, delete, sub = av
            if (add | delete) & (re.MULTILINE | re.LOCALE):
                raise _refuse(self.pattern, "the MULTILINE or LOCALE flag")
            inner = (flags | add) & ~delete
            return "(?:" + self.sequence(list(sub), inner, tail) + ")"
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, sub = av
            if low > MAX_RE2_REPEAT or (high is not c.MAXREPEAT and high > MAX_RE2_REPEAT):
                raise _refuse(self.pattern, f"a repeat count above {MAX_RE2_REPEAT}")
            body = "(?:" + self.sequence(list(sub), flags, False) + ")"
            if (low, high) == (0, c.MAXREPEAT):
                quantifier = "*"
            elif (low, high) == (1, c.MAXREPEAT):
                quantifier = "+"
            elif high is c.MAXREPEAT:
                quantifier = f"{{{low},}}"
            else:
                quantifier = f"{{{low},{high}}}"
            return body + quantifier + ("?" if op is c.MIN_REPEAT else "")
        names = {
            c.GROUPREF: "a backreference", c.GROUPREF_EXISTS: "a conditional group",
            c.ASSERT: "a lookahead or lookbehind", c.ASSERT_NOT: "a negative lookahead or lookbehind",
        }  # fmt: skip
        if op in names:
            raise _refuse(self.pattern, names[op])
        raise _refuse(self.pattern, f"the construct {op}")

    def klass(self, items: list[tuple[Any, Any]], flags: int) -> str:
        negate = False
        parts = []
        for op, av in items:
            if op is c.NEGATE:
                negate = True
            elif op is c.LITERAL:
                parts.append(_escape_class(chr(av)))
            elif op is c.RANGE:
                parts.append(f"{_escape_class(chr(av[0]))}-{_escape_class(chr(av[1]))}")
            elif op is c.CATEGORY:
                members, negated = _category(av, flags)
                if negated:
                    if len(items) == 1 or (len(items) == 2 and items[0][0] is c.NEGATE):
                        negate = not negate
                        parts.append(members)
                        continue
                    if members == _DIGIT:
                        parts.append(r"\P{Nd}")
                        continue
                    raise _refuse(self.pattern, "\\W, \\S or \\D beside other characters in a class")
                parts.append(members)
            else:
                raise _refuse(self.pattern, f"the class item {op}")
        return "[" + ("^" if negate else "") + "".join(parts) + "]"

    def at(self, where: Any, flags: int, tail: bool) -> str:
        if where in (c.AT_BEGINNING, c.AT_BEGINNING_STRING):
            return r"\A"
        if where is c.AT_END_STRING:
            return r"\z"
        if where is c.AT_END:
            # Python's $ also matches before a final line break. Only a test is asked (is the
            # pattern found?), so at the pattern's end consuming that line break is the same.
            if tail:
                return r"(?:\n?\z)"
            raise _refuse(self.pattern, "$ before the end of the pattern")
        if where in (c.AT_BOUNDARY, c.AT_NON_BOUNDARY):
            if flags & re.ASCII:
                return r"\b" if where is c.AT_BOUNDARY else r"\B"
            raise _refuse(self.pattern, "\\b or \\B (Unicode word boundaries; add (?a) for ASCII ones)")
        raise _refuse(self.pattern, f"the anchor {where}")


def re2_pattern(pattern: str) -> str:
    """An RE2 pattern that ClickHouse's ``match`` finds in exactly the texts where Python's
    ``re.search`` finds ``pattern``; Untranslatable (an invalid_query) when there is none."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise InvalidInput(f"{pattern!r} is not a valid regular expression: {exc}", code="invalid_query") from None
    flags = parsed.state.flags
    if flags & (re.MULTILINE | re.LOCALE):
        raise _refuse(pattern, "the MULTILINE or LOCALE flag")
    for op, _ in _walk(list(parsed)):
        if op in (c.ATOMIC_GROUP, c.POSSESSIVE_REPEAT):
            raise _refuse(pattern, "an atomic group or a possessive repeat")
    return _Writer(pattern).sequence(list(parsed), flags, True)


def _walk(items: list[tuple[Any, Any]]):
    for op, av in items:
        yield op, av
        if op is c.SUBPATTERN:
            yield from _walk(list(av[3]))
        elif op is c.BRANCH:
            for branch in av[1]:
                yield from _walk(list(branch))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            yield from _walk(list(av[2]))
        elif op is c.ATOMIC_GROUP:
            yield from _walk(list(av))
