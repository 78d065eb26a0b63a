"""The paths runner: a PathsQuery → a label per event → anchors → the walk kernel → top paths,
Sankey nodes and edges, loops.

docs/paths.md defines every number this returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from masar.engine.context import QueryContext
from masar.engine.funnels import evaluate, reached_step
from masar.engine.kernels.paths import find_loops, walk_paths
from masar.engine.matching import build_masks
from masar.engine.properties import resolve
from masar.errors import InvalidInput
from masar.model.queries import FunnelQuery, PathCleaning, PathsQuery

OTHER = "$other"
# Page and screen calls are stored under these names (docs/events.md); with ``label: path`` (or
# url) they are labelled by their page, every other event by its name.
PAGE_EVENTS = ("Page Viewed", "Screen Viewed")
# The label of an action stored without an event name (never a page event, whatever ``label``):
# like ``$other``, a name no real event takes.
UNNAMED = "$unnamed"
_NO_LIMIT = np.int64(2**62)


@dataclass
class PathsResult:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def table(self) -> pa.Table:
        """The top paths for CSV and Excel: one row each, events in time order in ``event_1`` …
        ``event_<length>``, then one ``$other`` row for the rest, so the counts add up to
        ``total``."""
        width = self.data["length"]
        total = self.data["total"]
        columns: dict[str, list[Any]] = {"rank": [], "count": [], "share": []}
        columns |= {f"event_{i + 1}": [] for i in range(width)}
        other = self.data["other_paths"]
        rows = [(rank + 1, p["events"], p["count"], p["share"]) for rank, p in enumerate(self.data["paths"])]
        if other["count"]:
            rows.append((None, [OTHER], other["count"], round(other["count"] / total, 6) if total else None))
        for rank, events, count, share in rows:
            columns["rank"].append(rank)
            columns["count"].append(count)
            columns["share"].append(share)
            for i in range(width):
                columns[f"event_{i + 1}"].append(events[i] if i < len(events) else None)
        types = {"rank": pa.int32(), "count": pa.int64(), "share": pa.float64()}
        return pa.table({name: pa.array(values, types.get(name, pa.string())) for name, values in columns.items()})


# -- labels ---------------------------------------------------------------------------------------


def cleaner(rules: list[PathCleaning]):
    """label → cleaned label: the alias of the first rule whose pattern is found in it."""
    try:
        compiled = [(re.compile(rule.pattern), rule.alias) for rule in rules]
    except re.error as exc:  # query objects validate patterns; this guards objects built otherwise
        raise InvalidInput(
            f"a cleaning pattern is not a valid regular expression: {exc}", code="invalid_query"
        ) from None

    def clean(label: str) -> str:
        for pattern, alias in compiled:
            if pattern.search(label):
                return alias
        return label

    return clean


def event_labels(ctx: QueryContext, q: PathsQuery) -> tuple[np.ndarray, list[str]]:
    """int32 label code per frame event (the cleaned label) and the labels; cached per definition."""
    frame = ctx.frame
    key = ("path_labels", q.label, tuple((r.pattern, r.alias) for r in q.cleaning), len(frame.event_names))
    cached = frame.cached(key)
    if cached is not None:
        return cached
    clean = cleaner(q.cleaning)
    names: dict[str, int] = {}
    # Cleaning runs once per distinct name or page, never per event.
    by_event = np.array(
        [names.setdefault(clean(UNNAMED if n is None else n), len(names)) for n in frame.event_names], dtype=np.int32
    )
    labels = by_event[frame.event_codes] if frame.rows else np.empty(0, dtype=np.int32)
    if q.label != "event":
        codes, values = ctx.codes(resolve(q.label))
        by_value = np.array(
            [names.setdefault(clean(v), len(names)) if v else -1 for v in values] or [0], dtype=np.int32
        )
        page_codes = [c for c in (frame.event_code(n) for n in PAGE_EVENTS) if c is not None]
        page = np.isin(frame.event_codes, page_codes) & (codes >= 0)
        page &= by_value[np.maximum(codes, 0)] >= 0
        labels = np.where(page, by_value[np.maximum(codes, 0)], labels).astype(np.int32)
    return frame.remember(key, (labels, list(names)))


# -- anchors --------------------------------------------------------------------------------------


def _in_range(ctx: QueryContext, q: PathsQuery) -> np.ndarray | None:
    low = ctx.bound_us(q.date_from, end=False)
    high = ctx.bound_us(q.date_to, end=True)
    if low is None and high is None:
        return None
    ts = ctx.frame.ts
    inside = np.ones(len(ts), dtype=bool)
    if low is not None:
        inside &= ts >= low
    if high is not None:
        inside &= ts < high
    return inside


def first_per_person(person: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The first of ``candidates`` (sorted frame indices) of each person."""
    if len(candidates) == 0:
        return candidates
    owners = person[candidates]
    keep = np.ones(len(candidates), dtype=bool)
    keep[1:] = owners[1:] != owners[:-1]
    return candidates[keep]


def anchors_of(
    ctx: QueryContext, q: PathsQuery, walk_labels: np.ndarray
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Frame indices of the anchor events, ascending; with a funnel, also what it was."""
    frame = ctx.frame
    if q.funnel is not None:
        f = q.funnel
        fq = FunnelQuery(
            source=q.source, steps=f.steps, window=f.window, order=f.order, exclusions=f.exclusions
        )
        counted = evaluate(ctx, fq, date_from=q.date_from, date_to=q.date_to)
        k = f.dropped_after - 1
        dropped = reached_step(counted, fq, k) & ~reached_step(counted, fq, k + 1)
        anchors = np.sort(counted.chains[dropped, k]).astype(np.int64)
        info = {"steps": [s.label for s in fq.steps], "dropped_after": f.dropped_after,
                "step": fq.steps[k].label, "entered": int(len(counted.levels)), "dropped": int(dropped.sum())}  # fmt: skip
        return anchors, info
    inside = _in_range(ctx, q)
    if q.step is not None:
        matches = build_masks(ctx, [q.step.matchers]) != 0
    else:
        matches = walk_labels >= 0  # a journey starts at the first event the analysis looks at
    if inside is not None:
        matches &= inside
    candidates = np.flatnonzero(matches).astype(np.int64)
    if q.occurrence == "every":
        return candidates, None
    return first_per_person(frame.person, candidates), None


# -- aggregation ----------------------------------------------------------------------------------


def count_rows(matrix: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of an int32 matrix (values ≥ -1) and how often each occurs (the sum of the
    rows' ``weights``, when rows are already distinct paths with their counts), most frequent
    first (ties in a stable order of the rows' codes)."""
    n, width = matrix.shape
    if n == 0:
        return matrix, np.empty(0, dtype=np.int64)
    base = int(matrix.max()) + 2
    if width * np.log2(base) < 62:
        # Each row as one integer: sorting int64 keys is many times faster than sorting rows.
        key = np.zeros(n, dtype=np.int64)
        for k in range(width):
            key = key * base + (matrix[:, k].astype(np.int64) + 1)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        order = np.lexsort(matrix.T[::-1])
        ordered = matrix[order]
        bounds = np.ones(n, dtype=bool)
        bounds[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
        starts = np.flatnonzero(bounds)
        first = order[starts]
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.cumsum(bounds) - 1
    counts = np.bincount(inverse.ravel(), weights=weights, minlength=len(first)).astype(np.int64)
    by_count = np.argsort(-counts, kind="stable")
    return matrix[first[by_count]], counts[by_count]


def _ranked(
    rows: np.ndarray, counts: np.ndarray, names: list[str], chronological, limit: int
) -> list[tuple[list[str], int]]:
    """The ``limit`` most frequent rows (count_rows order) as labels, ties by label — at the cut
    too: every row tied with the last one in is a candidate, so which rows are listed never
    depends on how labels happen to be coded."""
    cut = len(counts) if len(counts) <= limit else limit + int(np.count_nonzero(counts[limit:] == counts[limit - 1]))
    listed = [
        (chronological([names[c] for c in row if c >= 0]), int(n))
        for row, n in zip(rows[:cut], counts[:cut], strict=True)
    ]
    listed.sort(key=lambda item: (-item[1], item[0]))
    return listed[:limit]


def _bincount(values: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(values, weights=weights, minlength=size).astype(np.int64)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def sankey(paths: np.ndarray, names: list[str], q: PathsQuery, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Nodes (position, label) with the ``node_limit`` largest kept and the rest of each position
    folded into ``$other``; edges between consecutive positions, the ``edge_limit`` largest.
    ``weights``: how many paths each row stands for (rows are distinct paths with counts)."""
    n, length = paths.shape
    w = np.ones(n, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    labels = len(names)
    other = labels  # the code of $other
    sign = 1 if q.direction == "after" else -1
    node_counts = np.stack(
        [_bincount(paths[:, k][paths[:, k] >= 0], w[paths[:, k] >= 0], labels) for k in range(length)]
    )
    ranked = sorted(
        ((int(node_counts[k, c]), k, c) for k in range(length) for c in np.flatnonzero(node_counts[k])),
        key=lambda item: (-item[0], item[1], names[item[2]]),
    )
    kept = np.zeros((length, labels + 1), dtype=bool)
    for _, k, c in ranked[: q.node_limit]:
        kept[k, c] = True
    folded = paths.copy()
    for k in range(length):
        col = folded[:, k]
        fold = (col >= 0) & ~kept[k, np.maximum(col, 0)]
        col[fold] = other
    all_names = [*names, OTHER]

    def node_id(k: int, c: int) -> str:
        return f"{sign * k}:{all_names[c]}"

    nodes = []
    for k in range(length):
        col = folded[:, k]
        present = col >= 0
        counts = _bincount(col[present], w[present], labels + 1)
        ends = present & (folded[:, k + 1] < 0) if k + 1 < length else np.zeros(n, dtype=bool)
        end_counts = _bincount(col[ends], w[ends], labels + 1)
        for c in np.flatnonzero(counts):
            nodes.append({"id": node_id(k, c), "position": sign * k, "label": all_names[c], "count": int(counts[c]),
                          "ends": int(end_counts[c]) if k + 1 < length else None})  # fmt: skip
    nodes.sort(key=lambda node: (node["position"], -node["count"], node["label"]))
    edges = []
    base = labels + 1
    for k in range(length - 1):
        a, b = folded[:, k], folded[:, k + 1]
        both = (a >= 0) & (b >= 0)
        keys = a[both].astype(np.int64) * base + b[both]
        counts = _bincount(keys, w[both], base * base)
        for key in np.flatnonzero(counts):
            src, dst = int(key // base), int(key % base)
            # Edges run in time order: before the anchor, from the earlier event (walk k + 1).
            ends = (
                (node_id(k, src), node_id(k + 1, dst)) if sign > 0 else (node_id(k + 1, dst), node_id(k, src))
            )
            edges.append({"source": ends[0], "target": ends[1], "count": int(counts[key])})
    edges.sort(key=lambda e: (-e["count"], e["source"], e["target"]))
    rest = edges[q.edge_limit :]
    return {
        "nodes": nodes,
        "edges": edges[: q.edge_limit],
        "other_edges": {"edges": len(rest), "count": sum(e["count"] for e in rest)},
    }


def loops(
    paths: np.ndarray, names: list[str], q: PathsQuery, chronological, weights: np.ndarray | None = None
) -> dict[str, Any]:
    found, rows = find_loops(paths)
    if weights is None:
        looped = _distinct_sorted(rows)
        distinct, counts = count_rows(found)
    else:  # rows are distinct paths: each loop counts as many times as its path occurs
        w = np.asarray(weights, dtype=np.int64)
        looped = int(w[np.unique(rows)].sum())
        distinct, counts = count_rows(found, w[rows])
    top = _ranked(distinct, counts, names, chronological, q.limit)
    return {
        "paths": looped,
        "share": _share(looped, len(paths) if weights is None else int(np.sum(weights))),
        "top": [{"events": events, "count": count} for events, count in top],
    }


# -- the runner -----------------------------------------------------------------------------------


def _sessions(ctx: QueryContext) -> np.ndarray:
    key = ("path_sessions",)
    cached = ctx.frame.cached(key)
    if cached is not None:
        return cached
    values = ctx.frame.expression(ctx.con, "session_id")
    # An event without a session is in no one's session: -1 never equals an anchor's real id.
    codes = values.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return ctx.frame.remember(key, codes)


def walk(
    ctx: QueryContext, q: PathsQuery, anchors: np.ndarray, labels: np.ndarray, walk_labels: np.ndarray
) -> np.ndarray:
    """The paths matrix (one row per anchor, anchor first, in walk order)."""
    frame = ctx.frame
    starts = frame.person_starts
    group = np.searchsorted(starts, anchors, side="right") - 1
    lo = starts[group].astype(np.int64)
    hi = starts[group + 1].astype(np.int64)
    by_session = q.window == "session"
    # Without a session limit the kernel never reads sessions: ts stands in to avoid an array.
    sessions = _sessions(ctx) if by_session else frame.ts
    window = _NO_LIMIT if by_session else np.int64(q.window) * 1_000_000
    return walk_paths(anchors, lo, hi, frame.ts, walk_labels, labels[anchors].astype(np.int32), sessions, by_session,
                      q.direction == "after", window, q.length, q.collapse_repeats)  # fmt: skip


def run_paths(ctx: QueryContext, q: PathsQuery) -> PathsResult:
    frame = ctx.frame
    labels, names = event_labels(ctx, q)
    walk_labels = labels
    excluded = [c for c in (frame.event_code(n) for n in q.exclude_events) if c is not None]
    if excluded:
        walk_labels = np.where(np.isin(frame.event_codes, excluded), -1, labels).astype(np.int32)
    anchors, funnel = anchors_of(ctx, q, walk_labels)
    paths = walk(ctx, q, anchors, labels, walk_labels) if len(anchors) else np.empty((0, q.length), np.int32)

    people = _distinct_sorted(frame.person[anchors])
    return summarize(q, ctx.source.name, paths, names, people=people, funnel=funnel)


def summarize(
    q: PathsQuery,
    source_name: str,
    paths: np.ndarray,
    names: list[str],
    *,
    people: int,
    funnel: dict[str, Any] | None,
    weights: np.ndarray | None = None,
) -> PathsResult:
    """The result from the paths matrix (one row per anchor, in walk order, label codes into
    ``names``, -1 padded) — or from the distinct paths with how many anchors each stands for
    (``weights``), which is what a backend that counts paths itself hands over."""

    def chronological(events: list[str]) -> list[str]:
        return events if q.direction == "after" else events[::-1]

    total = int(len(paths)) if weights is None else int(np.sum(weights))
    distinct, counts = count_rows(paths, weights)
    ranked = _ranked(distinct, counts, names, chronological, q.limit)
    rest = counts[q.limit :]
    anchor = q.step.label if q.step is not None else (funnel["step"] if funnel else None)
    data: dict[str, Any] = {
        "kind": "paths",
        "source": source_name,
        "direction": q.direction,
        "anchor": anchor,
        "funnel": funnel,
        "range": {"from": _iso(q.date_from), "to": _iso(q.date_to)},
        "window_seconds": None if q.window == "session" else q.window,
        "same_session": q.window == "session",
        "length": q.length,
        "occurrence": q.occurrence,
        "label": q.label,
        "total": total,
        "people": people,
        "paths": [
            {"events": events, "count": count, "share": _share(count, total)} for events, count in ranked
        ],
        "other_paths": {"paths": int(len(rest)), "count": int(rest.sum())},
        "sankey": sankey(paths, names, q, weights),
        "loops": loops(paths, names, q, chronological, weights),
    }
    return PathsResult(data)


def _distinct_sorted(values: np.ndarray) -> int:
    """How many distinct values a sorted array holds (anchors and loop rows come sorted)."""
    return int(len(values) and 1 + np.count_nonzero(values[1:] != values[:-1]))


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
