"""Funnels on ClickHouse: query kinds ``funnel`` and ``funnel_people`` (docs/funnels.md), computed
inside ClickHouse; only aggregates and one page of people come back.

How (docs/scaling.md):

1. **Events**: the source's actions with a step bitmask and an exclusion bitmask per event
   (masar/store/clickhouse/predicates.py), first-time steps kept on the person's first matching
   event (a window function), step 1 limited to the date range, only events that can matter kept
   (in strict funnels every action matters: another action breaks an attempt).
2. **Units**: one ``groupArray`` per person (per session, per held-constant value), sorted by
   time, then by lowest step, then by message id (the tie rule of the numba kernel's
   ``_sort_run``; the embedded store's last tie-break is storage order, ClickHouse has none, so the
   message id stands in).
3. **The kernel**: the numba kernel's state machine (masar/engine/kernels/funnel.py) as one
   ``arrayFold`` over *operations*: an ordered funnel's instant is split into one operation per
   step it holds, in step order, then its exclusions — the same order ``_ordered_group`` takes
   them; a strict funnel has one operation per action (advance every chain at once, record the
   deepest), then a start, then exclusions. The accumulator keeps, per step, the attempt that
   reached it with the latest start (its steps' times and event positions) and the exclusions
   since that bar it from skipping their optional from-step (docs/funnels.md: the last step done
   before a skipped from-step counts as it). Unordered funnels and counting totals have their
   own folds (below).
4. **Counted units** (``units_sql``): one row per counted unit — person, deepest step, the
   reported attempt's step times, the breakdown value — materialized once in a Memory table that
   the step counts, times (exact quantiles), breakdown rows, trend, time to convert and people
   queries read.

``units_sql`` is the reusable part: the leak finder, correlation and journeys of drop-outs build
on the per-unit rows.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from masar.engine.funnels import (
    OTHER,
    FunnelResult,
    _held_for,
    _iso,
    _range_dict,
    _ratio,
    rows_from_stats,
    ttc_bins,
)
from masar.errors import InvalidInput
from masar.model.queries import EventMatcher, FunnelPeopleQuery, FunnelQuery
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.predicates import ACTIONS, Predicates

ABSENT = -(2**63)  # a step the attempt did not do (skipped optional step, or past its level)
_ABS = f"toInt64({ABSENT})"
_NO_STEP = 64


def _let(name: str, value: str, body: str) -> str:
    """``body`` with ``name`` bound to ``value`` (ClickHouse lambdas have no let)."""
    return f"arrayMap({name} -> {body}, [{value}])[1]"


def _int_array(values: list[int], kind: str) -> str:
    return f"CAST([{', '.join(str(v) for v in values)}] AS Array({kind}))"


@dataclass
class UnitsSQL:
    """The counted units of a funnel as a subquery: ``person`` Int64, ``level`` Int8 (0-based
    deepest step), ``ts`` Array(Int64) (µs of each step of the reported attempt, ``ABSENT`` where
    none), ``reach`` Int64 (µs of its deepest step), ``bd`` Nullable(String) (the breakdown value,
    attributed), ``ukey`` (orders units of one person: session, value, attempt start) and ``mids``
    Array(String) (the message id of each step's event, '' where none: what the leak finder reads
    segment values and order values from)."""

    sql: str
    params: dict[str, Any]


class _Compiler:
    def __init__(self, ctx: ClickHouseContext, q: FunnelQuery, held: list[str], p: Predicates):
        self.ctx = ctx
        self.q = q
        self.held = held
        self.p = p
        self.n = len(q.steps)
        self.window = int(q.window) * 1_000_000
        self.gaps = [int(s.max_seconds_from_previous or 0) * 1_000_000 for s in q.steps]
        self.optional = [bool(s.optional) and q.order != "unordered" for s in q.steps]
        self.ex = [(ex.from_step - 1, (ex.to_step or self.n) - 1) for ex in q.exclusions]

    # -- stage 1: events --------------------------------------------------------------------------

    def events(self, date_from, date_to) -> str:
        q, p = self.q, self.p
        step_bits = " + ".join(
            f"bitShiftLeft(toUInt64({p.any_of(step.matchers)}), {k})" for k, step in enumerate(q.steps)
        )
        ex_bits = " + ".join(
            f"bitShiftLeft(toUInt64({p.matcher(EventMatcher(event=ex.event, filters=ex.filters))}), {i})"
            for i, ex in enumerate(q.exclusions)
        ) or "toUInt64(0)"
        keys = []
        if q.counting == "sessions":
            keys.append("ifNull(session_id, 0) AS u_session")
        for i, name in enumerate(self.held):
            keys.append(f"{p.text(name)} AS u_held{i}")
        bd = p.text(q.breakdown.property) if q.breakdown is not None else "CAST(NULL AS Nullable(String))"
        base = (
            f"SELECT e.person AS person, toInt64(toUnixTimestamp64Micro(e.ts)) AS t, e.message_id AS mid, "
            f"{step_bits} AS m0, {ex_bits} AS x, {bd} AS bd{''.join(', ' + k for k in keys)} "
            f"FROM {self.ctx.events} AS e {p.joins(self.ctx.events, 'e')} WHERE e.{ACTIONS}"
        )
        if q.order != "strict":
            base += " AND (m0 != 0 OR x != 0)"
        # First-time steps: only the person's first matching event (over all data) keeps the bit.
        m = "m0"
        first = [k for k, s in enumerate(q.steps) if s.first_time]
        if first:
            firsts = ", ".join(
                f"min(if(bitTest(m0, {k}), (t, mid), (toInt64({2**63 - 1}), ''))) OVER (PARTITION BY person) AS f{k}"
                for k in first
            )
            clear = " + ".join(
                f"if(bitTest(m0, {k}) AND (t, mid) != f{k}, toUInt64({1 << k}), toUInt64(0))" for k in first
            )
            base = f"SELECT *, bitAnd(m0, bitNot({clear})) AS m1 FROM (SELECT *, {firsts} FROM ({base}))"
            m = "m1"
        # Only step-1 events inside the range start attempts.
        low = self.ctx.bound_us(date_from, end=False)
        high = self.ctx.bound_us(date_to, end=True)
        outside = [f"t < {int(low)}"] if low is not None else []
        outside += [f"t >= {int(high)}"] if high is not None else []
        if outside:
            m = f"if({' OR '.join(outside)}, bitAnd({m}, bitNot(toUInt64(1))), {m})"
        where = []
        if self.held:
            # An event without the held value is no step of any attempt (its own unit, never counted).
            where += [f"isNotNull(u_held{i})" for i in range(len(self.held))]
        out = f"SELECT *, {m} AS m FROM ({base})"
        if where:
            out += " WHERE " + " AND ".join(where)
        if q.order != "strict":
            out = f"SELECT * FROM ({out}) WHERE m != 0 OR x != 0"
        return out

    # -- stage 2: units ---------------------------------------------------------------------------

    def unit_keys(self) -> list[str]:
        keys = ["person"]
        if self.q.counting == "sessions":
            keys.append("u_session")
        keys += [f"u_held{i}" for i in range(len(self.held))]
        return keys

    def grouped(self, events: str) -> str:
        keys = ", ".join(self.unit_keys())
        low = "if(m = 0, 64, bitCount(bitXor(m, m - 1)) - 1)"
        sort = "(e.1, e.2, e.3)" if self.q.order != "unordered" else "(e.1, e.3)"
        return (
            f"SELECT {keys}, arraySort(e -> {sort}, groupArray((t, toUInt8({low}), mid, m, x, bd))) AS evs "
            f"FROM ({events}) GROUP BY {keys}"
        )

    # -- stage 3: the fold ------------------------------------------------------------------------
    #
    # ClickHouse runs a lambda over all rows at once, one array position after another, and a
    # nested lambda copies every column it captures once per element: so the fold's body never
    # captures the state in a nested lambda. Chains are one flat array (row p at p * n), rows are
    # cut and glued with arraySlice/arrayConcat, the per-step choices are unrolled in SQL text (the
    # steps are known), and a value needed twice is kept in the state by one operation for the
    # next (field 14) instead of a let.
    #
    # The state: 1 blocked exclusions per step (bit x: exclusion x fell after the last step of
    # that step's chain, and the from-step of x is an optional step above it: the chain may not
    # skip it; the kernel's ``blocked``), 2 unused, 3 valid per step, 4 ts and 5 positions of
    # each step's chain (flat, n x n), 6 best level, 7 ts and 8 positions of the reported chain;
    # counting totals: 9 active, 10 attempt start, 11 used at this instant, 12 a new attempt
    # started at this instant, 13 the finished attempts (level, ts, positions); 14 a scratch
    # value (the predecessor of the step being taken, the deepest step an action extended).
    _NAMES = ("blk", "lk", "v", "ct", "ci", "best", "bt", "bi", "active", "start", "used", "fresh", "out", "d")
    A = "_acc"

    def _state(self, **changes: str) -> str:
        parts = [changes.get(name, f"{self.A}.{i + 1}") for i, name in enumerate(self._NAMES)]
        return "(" + ", ".join(parts) + ")"

    def _el(self, field: int, p: str, s: str) -> str:
        return f"{self.A}.{field}[({p}) * {self.n} + ({s}) + 1]"

    def _row(self, field: int, p: str) -> str:
        return f"arraySlice({self.A}.{field}, ({p}) * {self.n} + 1, {self.n})"

    def _set_row(self, field: int, k: str, row: str) -> str:
        n = self.n
        return f"arrayConcat(arraySlice({self.A}.{field}, 1, ({k}) * {n}), {row}, arraySlice({self.A}.{field}, ({k} + 1) * {n} + 1))"

    def _set_el(self, field: int, k: str, value: str) -> str:
        return f"arrayConcat(arraySlice({self.A}.{field}, 1, {k}), [{value}], arraySlice({self.A}.{field}, {k} + 2))"

    def _ext_row(self, field: int, k: str, p: str, value: str, fill: str) -> str:
        """Chain ``p``'s steps up to p, skipped steps up to k, then ``value`` at step k."""
        n = self.n
        p0 = f"greatest(toInt16({p}), 0)"
        return (f"arrayConcat(arraySlice({self._row(field, p0)}, 1, {p0} + 1), "
                f"arrayWithConstant(greatest(toInt16({k}) - {p0} - 1, 0), {fill}), [{value}], "
                f"arrayWithConstant(greatest({n - 1} - toInt16({k}), 0), {fill}))")  # fmt: skip

    def _candidates(self, k: int) -> list[int]:
        out = []
        p = k - 1
        while p >= 0:
            out.append(p)
            if p > 0 and self.optional[p]:
                p -= 1
            else:
                break
        return out

    def _pred_static(self, k: int, t: str) -> str:
        """The chain step ``k`` may extend at ``t``: step k-1's, or an earlier one's across optional
        steps, unless an exclusion from a step it would skip blocked it (field 1); the latest
        start wins, then the latest last step, then the deeper chain (``_predecessor``'s tie
        rule). -1 when none."""
        keys = []
        for p in self._candidates(k):
            start = self._el(4, str(p), "0")
            last = self._el(4, str(p), str(p))
            ok = f"{self.A}.3[{p + 1}] = 1 AND {t} - {start} <= {self.window}"
            if self.gaps[k] > 0:
                ok += f" AND {t} - {last} <= {self.gaps[k]}"
            skipped = sum(1 << x for x, (lo, _) in enumerate(self.ex) if p < lo < k)
            if skipped:
                ok += f" AND bitAnd({self.A}.1[{p + 1}], toUInt64({skipped})) = 0"
            keys.append(f"if({ok}, ({start}, {last}, toInt16({p})), (toInt64({ABSENT}), toInt64({ABSENT}), toInt16(-1)))")
        if len(keys) == 1:
            return f"({keys[0]}).3"
        return f"arrayReverseSort([{', '.join(keys)}])[1].3"

    def _pred(self, t: str, k: str) -> str:
        cases = ", ".join(f"{k} = {kk}, {self._pred_static(kk, t)}" for kk in range(1, self.n))
        return f"multiIf({cases}, toInt16(-1))"

    def _start(self, t: str, i: str, *, fresh: bool = False) -> str:
        """Chain 0 starts at the event; ``fresh``: a new attempt (counting totals), nothing else valid."""
        n = self.n
        row_t = f"arrayConcat([{t}], arrayWithConstant({n - 1}, {_ABS}))"
        row_i = f"arrayConcat([{i}], arrayWithConstant({n - 1}, toUInt32(0)))"
        ct, ci = self._set_row(4, "0", row_t), self._set_row(5, "0", row_i)
        if fresh:
            return self._state(
                blk=f"arrayWithConstant({n}, toUInt64(0))",
                v=f"arrayConcat([toUInt8(1)], arrayWithConstant({n - 1}, toUInt8(0)))", ct=ct, ci=ci,
                best="toInt8(0)", bt=row_t, bi=row_i, active="toUInt8(1)", start=t, fresh="toUInt8(1)",
            )  # fmt: skip
        first = f"{self.A}.6 < 0"
        return self._state(
            blk=self._set_el(1, "0", "toUInt64(0)"), v=self._set_el(3, "0", "toUInt8(1)"), ct=ct, ci=ci,
            best=f"if({first}, toInt8(0), {self.A}.6)",
            bt=f"if({first}, {row_t}, {self.A}.7)",
            bi=f"if({first}, {row_i}, {self.A}.8)",
        )  # fmt: skip

    def _extend(self, t: str, k: str, i: str, **extra: str) -> str:
        """Ordered: step ``k`` at ``t`` extends the predecessor found by the operation before
        (field 14); recorded when deepest yet."""
        a = self.A
        row_t = self._ext_row(4, k, f"{a}.14", t, _ABS)
        row_i = self._ext_row(5, k, f"{a}.14", i, "toUInt32(0)")
        deeper = f"{k} > {a}.6"
        extended = self._state(
            blk=self._set_el(1, k, "toUInt64(0)"), v=self._set_el(3, k, "toUInt8(1)"),
            ct=self._set_row(4, k, row_t), ci=self._set_row(5, k, row_i),
            best=f"if({deeper}, toInt8({k}), {a}.6)", bt=f"if({deeper}, {row_t}, {a}.7)",
            bi=f"if({deeper}, {row_i}, {a}.8)", **extra,
        )  # fmt: skip
        return f"if({a}.14 < 0, {a}, {extended})"

    def _exclude(self, t: str, x: str, then: str | None = None) -> str:
        """Exclusion i stops every chain that reached its from-step, not its to-step, when the last
        step done up to the from-step is strictly earlier. A chain below an optional from-step
        (across optional steps only) whose last step is strictly earlier may still do the
        from-step, but no longer skip it: field 1 marks it (``_apply_exclusions``' ``blocked``).
        ``then``: a condition on the new valid flags (``{v}``) under which the attempt finishes
        (counting totals)."""
        a = self.A
        if not self.ex:
            return self._state() if then is None else self._finish_if(then, {})
        flags, masks = [], []
        for level in range(self.n):
            stops = [
                f"(bitTest({x}, {i}) AND arrayLast(_w -> _w != {_ABS}, arraySlice({a}.4, {level * self.n + 1}, {lo + 1})) < {t})"
                for i, (lo, hi) in enumerate(self.ex) if lo <= level < hi
            ]  # fmt: skip
            flag = f"{a}.3[{level + 1}]"
            flags.append(f"toUInt8({flag} = 1 AND NOT ({' OR '.join(stops)}))" if stops else flag)
            blocks = [i for i, (lo, _) in enumerate(self.ex) if level < lo and all(self.optional[level + 1 : lo + 1])]
            mask = f"{a}.1[{level + 1}]"
            if blocks:
                bits = " + ".join(f"bitShiftLeft(toUInt64(bitTest({x}, {i})), {i})" for i in blocks)
                last = self._el(4, str(level), str(level))
                mask = f"if({flag} = 1 AND {last} < {t}, bitOr({mask}, {bits}), {mask})"
            masks.append(mask)
        changes = {"v": "[" + ", ".join(flags) + "]", "blk": "[" + ", ".join(masks) + "]"}
        return self._state(**changes) if then is None else self._finish_if(then, changes)

    def _finish_if(self, then: str, changes: dict[str, str]) -> str:
        """The state with ``changes``, and the attempt finished when ``then`` holds of the new
        valid flags (``{v}``)."""
        done = then.format(v=changes.get("v", f"{self.A}.3"))
        finished = self._state(**changes, out=self._out(), active="toUInt8(0)")
        return f"if({done}, {finished}, {self._state(**changes)})"

    def _out(self) -> str:
        a = self.A
        return f"arrayPushBack({a}.13, ({a}.6, {a}.7, {a}.8))"

    def _emit(self) -> str:
        """Counting totals: the attempt in progress is finished."""
        return self._state(out=self._out(), active="toUInt8(0)")

    def _stopped(self, v: str) -> str:
        """No chain below the last step can go on."""
        return f"NOT has(arraySlice({v}, 1, {self.n - 1}), 1)"

    def _strict_advance(self, t: str, m: str, i: str) -> str:
        """Strict: every chain takes the action as its next step or ends (all at once, from the
        state before it); field 14 gets the deepest step extended (-1: none). No chain is
        blocked after it: the extended ones are new, the others ended."""
        n = self.n
        preds = {k: f"if(bitTest({m}, {k}), {self._pred_static(k, t)}, toInt16(-1))" for k in range(1, n)}
        flags = ["toUInt8(0)"] + [f"toUInt8(({preds[k]}) >= 0)" for k in range(1, n)]
        rows_t = [self._row(4, "0")] + [
            f"if(({preds[k]}) >= 0, {self._ext_row(4, str(k), preds[k], t, _ABS)}, {self._row(4, str(k))})"
            for k in range(1, n)
        ]
        rows_i = [self._row(5, "0")] + [
            f"if(({preds[k]}) >= 0, {self._ext_row(5, str(k), preds[k], i, 'toUInt32(0)')}, {self._row(5, str(k))})"
            for k in range(1, n)
        ]
        valid = "[" + ", ".join(flags) + "]"
        deepest = f"toInt16(toInt16(arrayLastIndex(_w -> _w = 1, {valid})) - 1)"
        return self._state(blk=f"arrayWithConstant({n}, toUInt64(0))", v=valid, ct=f"arrayConcat({', '.join(rows_t)})",
                           ci=f"arrayConcat({', '.join(rows_i)})", d=deepest)  # fmt: skip

    def _strict_record(self, t: str, *, totals: bool = False) -> str:
        """Strict: the deepest chain the action extended (field 14) becomes the reported attempt
        when deeper than the best, or (uniques) as deep, reached at this instant and started
        later. Totals: the action is used when it extended a chain; the attempt finishes when
        complete or broken."""
        a, n = self.A, self.n
        d = f"{a}.14"
        record = f"{d} >= 0 AND {d} > {a}.6"
        if not totals:
            record = f"{d} >= 0 AND ({d} > {a}.6 OR ({d} = {a}.6 AND {a}.7[{d} + 1] = {t} AND {self._el(4, d, '0')} > {a}.7[1]))"
        best = f"if({record}, toInt8({d}), {a}.6)"
        bt = f"if({record}, {self._row(4, f'greatest({d}, 0)')}, {a}.7)"
        bi = f"if({record}, {self._row(5, f'greatest({d}, 0)')}, {a}.8)"
        if not totals:
            return self._state(best=best, bt=bt, bi=bi)
        used = f"toUInt8({d} >= 0)"
        done = f"{a}.9 = 1 AND (({best}) = {n - 1} OR {self._stopped(f'{a}.3')})"
        recorded = dict(best=best, bt=bt, bi=bi, used=used)
        finished = f"arrayPushBack({a}.13, ({best}, {bt}, {bi}))"
        return (f"if({a}.9 = 0, {self._state(used=used)}, if({done}, {self._state(**recorded, out=finished, active='toUInt8(0)')}, "
                f"{self._state(**recorded)}))")  # fmt: skip

    def _ops(self) -> str:
        """The unit's operations, in the order the kernel takes them: tuples (t, kind, k, position,
        step mask, exclusion mask, sub-operation, taken only for the instant's first event
        with that step)."""
        n = self.n

        def op(kind: int, k: str = "toUInt8(0)", sub: int = 0, once: int = 0) -> str:
            return f"(_e.1, toUInt8({kind}), {k}, _i, _e.4, _e.5, toUInt8({sub}), toUInt8({once}))"

        def steps_of(kind: int, only_later: bool) -> str:
            later = "_k > 0 AND " if only_later else ""
            return (f"arrayFlatten(arrayMap(_k -> [{op(kind, 'toUInt8(_k)', 0, 1)}, {op(kind, 'toUInt8(_k)', 1, 1)}], "
                    f"arrayFilter(_k -> {later}bitTest(_e.4, _k), range({n}))))")  # fmt: skip

        excl = "if(_e.5 != 0, [{}], [])"
        if self.q.counting == "totals" and self.q.order == "ordered":
            # Per instant: the window check; the attempt in progress takes the instant's steps
            # (2..n), then its exclusions; else a new attempt starts at its step 1 and takes its
            # steps, then its exclusions.
            parts = [f"[{op(10)}]", steps_of(11, True), f"[{op(12)}]",
                     f"if(bitTest(_e.4, 0), [{op(13, 'toUInt8(0)', 0, 1)}], [])", steps_of(14, True), f"[{op(15)}]"]
            key = "(_o.1, _o.2, _o.3, _o.4, _o.7)"
        elif self.q.counting == "totals":
            # Per instant: the window check, each action (advance, record, maybe a new attempt),
            # then the instant's exclusions.
            parts = [f"[{op(10)}]", f"[{op(20)}]", f"[{op(23)}]", f"[{op(21)}]", excl.format(op(22))]
            key = "(_o.1, _o.2 != 10, _o.2 = 22, _o.4, multiIf(_o.2 = 20, 0, _o.2 = 23, 1, 2))"
        elif self.q.order == "ordered":
            # An instant's steps in step order (the first event of the instant with each step),
            # then its exclusions.
            parts = [steps_of(1, False), excl.format(op(2, f"toUInt8({_NO_STEP})"))]
            key = "(_o.1, _o.3, _o.4, _o.7)"
        else:
            # Strict: advance and record per action, then its start; an instant's exclusions after
            # its last action (they stop attempts for the steps strictly after the instant).
            parts = [f"[{op(3)}]", f"[{op(4)}]", f"if(bitTest(_e.4, 0), [{op(0)}], [])", excl.format(op(2))]
            key = "(_o.1, _o.2 = 2, _o.4, multiIf(_o.2 = 3, 0, _o.2 = 4, 1, 2))"
        ops = f"arraySort(_o -> {key}, arrayFlatten(arrayMap((_e, _i) -> arrayConcat({', '.join(parts)}), evs, arrayEnumerate(evs))))"
        # Each (instant, kind, step) taken once, by the first event of the instant with that step
        # (its ops come first): the first occurrence of each (instant, kind, step, sub-operation).
        return (f"arrayFilter((_o, _u) -> _o.8 = 0 OR _u = 1, {ops}, "
                f"arrayEnumerateUniq(arrayMap(_o -> (_o.1, _o.2, _o.3, _o.7), {ops})))")

    def fold(self) -> str:
        """Per unit, the final state: (uniques) its level, and the ts and positions of the
        reported attempt's steps in fields 6-8; (totals) every attempt in field 13."""
        n, a = self.n, self.A
        t, kind, k, i, m, x, sub = (f"_o.{j}" for j in range(1, 8))
        i32 = f"toUInt32({i})"
        pred = self._state(d=self._pred(t, k))
        if self.q.counting == "totals" and self.q.order == "ordered":
            branches = {
                10: f"if({a}.9 = 1 AND {t} - {a}.10 > {self.window}, {self._state(out=self._out(), active='toUInt8(0)', used='toUInt8(0)', fresh='toUInt8(0)')}, {self._state(used='toUInt8(0)', fresh='toUInt8(0)')})",
                11: f"if({a}.9 = 0, {a}, if({sub} = 0, {pred}, {self._extend(t, k, i32, used='toUInt8(1)')}))",
                12: f"if({a}.9 = 1, {self._exclude(t, x, then=f'{a}.6 = {n - 1} OR ' + self._stopped('{v}'))}, {a})",
                13: f"if({a}.9 = 0 AND {a}.11 = 0, {self._start(t, i32, fresh=True)}, {a})",
                14: f"if({a}.12 = 1 AND {a}.9 = 1, if({sub} = 0, {pred}, {self._extend(t, k, i32)}), {a})",
                15: f"if({a}.12 = 1 AND {a}.9 = 1, {self._exclude(t, x, then=f'{a}.6 = {n - 1}')}, {a})",
            }
        elif self.q.counting == "totals":
            branches = {
                10: f"if({a}.9 = 1 AND {t} - {a}.10 > {self.window}, {self._emit()}, {a})",
                20: f"if({a}.9 = 1, {self._strict_advance(t, m, i32)}, {self._state(d='toInt16(-1)')})",
                23: self._strict_record(t, totals=True),
                21: f"if({a}.9 = 0 AND {a}.11 = 0 AND bitTest({m}, 0), {self._start(t, i32, fresh=True)}, {a})",
                22: f"if({a}.9 = 1, {self._exclude(t, x, then=self._stopped('{v}'))}, {a})",
            }
        elif self.q.order == "ordered":
            branches = {1: f"if({k} = 0, {self._start(t, i32)}, if({sub} = 0, {pred}, {self._extend(t, k, i32)}))",
                        2: self._exclude(t, x)}  # fmt: skip
        else:
            branches = {3: self._strict_advance(t, m, i32), 4: self._strict_record(t), 0: self._start(t, i32),
                        2: self._exclude(t, x)}  # fmt: skip
        cases = ", ".join(f"{kind} = {kk}, {body}" for kk, body in list(branches.items())[:-1])
        body = f"multiIf({cases}, {list(branches.values())[-1]})"
        init = (
            f"(arrayWithConstant({n}, toUInt64(0)), toUInt16(0), arrayWithConstant({n}, toUInt8(0)), arrayWithConstant({n * n}, {_ABS}), "
            f"arrayWithConstant({n * n}, toUInt32(0)), toInt8(-1), arrayWithConstant({n}, {_ABS}), "
            f"arrayWithConstant({n}, toUInt32(0)), toUInt8(0), toInt64(0), toUInt8(0), toUInt8(0), "
            f"CAST([] AS Array(Tuple(Int8, Array(Int64), Array(UInt32)))), toInt16(-1))"
        )
        return f"arrayFold((_acc, _o) -> {body}, {self._ops()}, {init})"

    # -- the common case without a fold -----------------------------------------------------------

    _VECTOR_STEPS = 12  # optional steps carry a chain per step pair: quadratic in the steps

    def vectorized(self) -> bool:
        """Ordered funnels (counting uniques or sessions) are computed with whole-array functions
        instead of ``arrayFold``: ClickHouse runs a fold's lambda once per element, while
        arrayFill/arrayCumSum/arrayMap run once per block."""
        return (self.q.order in ("ordered", "strict") and self.q.counting != "totals"
                and (not (any(self.optional) or self.ex) or self.n <= self._VECTOR_STEPS))  # fmt: skip

    def ordered_sql(self, grouped: str) -> str:
        """Ordered funnels counting uniques or sessions: ``chain_sql`` where it applies, else
        ``vector_sql``."""
        if any(self.optional) or self.ex:
            return self.vector_sql(grouped)
        return self.chain_sql(grouped)

    def chain_sql(self, grouped: str) -> str:
        """``vector_sql`` for ordered funnels without optional steps or exclusions (the common
        case), in a few whole-array passes per step.

        Every step has one predecessor, so an attempt is known by its start: ``_S{k}`` is, at each
        event with step k, the start of the attempt that last reached step k-1 at this instant or
        before (carried forward by arrayFill, then to the end of the instant by arrayReverseFill),
        when it is within the window (and the time limit from that reach); ABSENT otherwise. The
        reported attempt is the first to reach the deepest step; its steps are found backwards:
        step k-1 was reached at the latest instant, at or before step k's, where an attempt reached
        k-1 (the one step k extended), by the first event of that instant with step k-1."""
        n, a = self.n, _ABS
        layers = [[
            "arrayMap(_e -> _e.1, evs) AS _T",
            "arrayMap(_e -> _e.4, evs) AS _M",
            f"arrayMap((_t, _x) -> _t != _x, _T, arrayConcat(arraySlice(_T, 2), [{a}])) AS _last",
            f"arrayMap((_m, _t) -> if(bitTest(_m, 0), _t, {a}), _M, _T) AS _S0",
        ]]

        def carry(array: str, k: int) -> str:
            """``array`` at the last event, at this instant or before, where step k was reached."""
            return (f"arrayReverseFill((_x, _l) -> _l, arrayFill((_x, _v) -> _v, {array}, "
                    f"arrayMap(_s -> _s != {a}, _S{k})), _last)")  # fmt: skip

        for k in range(1, n):
            cols = [f"{carry(f'_S{k - 1}', k - 1)} AS _G{k}"]
            args, params, ok = f"_M, _T, _G{k}", "_m, _t, _g", f"_g != {a} AND _t - _g <= {self.window}"
            if self.gaps[k] > 0:
                cols.append(f"{carry('_T', k - 1)} AS _Gl{k}")
                args, params, ok = f"{args}, _Gl{k}", f"{params}, _gl", f"{ok} AND _t - _gl <= {self.gaps[k]}"
            layers.append(cols)
            layers.append([f"arrayMap(({params}) -> if(bitTest(_m, {k}) AND {ok}, _g, {a}), {args}) AS _S{k}"])
        levels = ", ".join(f"has(arrayMap(_s -> _s != {a}, _S{k}), 1), toInt8({k})" for k in range(n - 1, -1, -1))
        layers.append([f"multiIf({levels}, toInt8(-1)) AS _L"])
        # Backwards from the deepest step: its first reach, then each predecessor's reach.
        for k in range(n - 1, -1, -1):
            first = f"toUInt32(arrayFirstIndex(_s -> _s != {a}, _S{k}))"
            if k == n - 1:
                layers.append([f"if(_L = {k}, {first}, toUInt32(0)) AS _p{k}"])
                continue
            instant = f"arrayMax(arrayFilter((_t, _s) -> _s != {a} AND _t <= _T[_p{k + 1}], _T, _S{k}))"
            before = f"toUInt32(arrayFirstIndex((_t, _s) -> _s != {a} AND _t = _i{k}, _T, _S{k}))"
            layers.append([f"if(_L > {k}, {instant}, {a}) AS _i{k}"])
            layers.append([f"multiIf(_L = {k}, {first}, _L > {k}, {before}, toUInt32(0)) AS _p{k}"])
        pos = ", ".join(f"_p{k}" for k in range(n))
        ts = ", ".join(f"if(_p{k} > 0, _T[_p{k}], {a})" for k in range(n))
        sql = grouped
        for layer in layers:
            sql = f"SELECT *, {', '.join(layer)} FROM ({sql})"
        return f"SELECT *, (_L, [{ts}], [{pos}]) AS r FROM ({sql})"

    def vector_sql(self, grouped: str) -> str:
        """Per unit of ``grouped``: its keys, ``evs`` and ``r`` = (level, ts, positions).

        The numba kernel keeps, per step k, the attempt that last reached k (``chain[k]``); it
        reaches k at an instant's first event with step k when the attempt that last reached its
        predecessor (k-1, or earlier across optional steps) — at this instant or before — is
        within the window (and the time limit) of it. So per step, over the unit's events:
        ``_S{k}`` is the start of the attempt that reached k at the event (ABSENT where none) and
        ``_C{k}_{s}`` the position of its step s (0: skipped), computed from its predecessors'
        by carrying the last reached values forward (arrayFill) to the end of each instant
        (arrayReverseFill). The reported attempt is the first to reach the deepest step.

        Exclusions: the attempt that last reached p (at event j) is stopped when an exclusion of
        one whose from-step is at or below p, and to-step above, falls at j's instant or later,
        before this instant, and strictly after its from-step (``_LP{p}_{lo}``, the time of the
        last step done up to it): counted from cumulative counts at instant bounds. Nor may it
        skip, on its way to k, the optional from-step of an exclusion that fell after j's
        instant and before this one (the kernel's ``blocked``).

        One subquery per step: a column an alias refers to is planned as a copy of its expression,
        so each step reads the previous steps' results as columns, not aliases."""
        n, a = self.n, _ABS
        layers = []
        cols = [
            "arrayMap(_e -> _e.1, evs) AS _T",
            "arrayMap(_e -> _e.4, evs) AS _M",
            "arrayEnumerate(evs) AS _I",
            f"arrayMap((_t, _p) -> _t != _p, _T, arrayConcat([{a}], arraySlice(_T, 1, length(_T) - 1))) AS _first",
            f"arrayMap((_t, _x) -> _t != _x, _T, arrayConcat(arraySlice(_T, 2), [{a}])) AS _last",
        ]
        for x in range(len(self.ex)):
            cols += [
                f"arrayMap(_e -> toUInt32(bitTest(_e.5, {x})), evs) AS _xb{x}",
                f"arrayCumSum(_xb{x}) AS _xc{x}",
                # exclusions x before the instant, and up to its end
                f"arrayFill((_v, _f) -> _f, arrayMap((_y, _z) -> _y - _z, _xc{x}, _xb{x}), _first) AS _Xb{x}",
                f"arrayReverseFill((_v, _l) -> _l, _xc{x}, _last) AS _Xe{x}",
            ]
        los = sorted({lo for lo, _ in self.ex})

        def carry(array: str, p: int) -> str:
            """``array``'s value at the last event, at this instant or before, where step p was reached."""
            return f"arrayReverseFill((_x, _l) -> _l, arrayFill((_x, _v) -> _v, {array}, _v{p}), _last)"

        for k in range(n):
            layers.append(cols)
            cols = []
            cols += [
                f"arrayMap(_m -> toUInt32(bitTest(_m, {k})), _M) AS _b{k}",
                f"arrayCumSum(_b{k}) AS _c{k}",
                # steps k done before the instant, carried from its first event
                f"arrayFill((_v, _f) -> _f, arrayMap((_x, _y) -> _x - _y, _c{k}, _b{k}), _first) AS _cs{k}",
                f"arrayMap((_x, _y, _z) -> _x = 1 AND _y - _z = 1, _b{k}, _c{k}, _cs{k}) AS _rep{k}",
            ]
            if k == 0:
                cols += [f"arrayMap((_r, _t) -> if(_r, _t, {a}), _rep0, _T) AS _S0",
                         "arrayMap((_r, _i) -> if(_r, _i, 0), _rep0, _I) AS _C0_0",
                         f"arrayMap(_s -> _s != {a}, _S0) AS _v0"]  # fmt: skip
                if 0 in los:
                    cols.append(f"arrayMap((_r, _t) -> if(_r, _t, {a}), _rep0, _T) AS _LP0_0")
                continue
            cands = self._candidates(k)
            for p in cands:
                cols += [f"{carry(f'_S{p}', p)} AS _Gs{k}_{p}", f"{carry('_T', p)} AS _Gl{k}_{p}"]
                cols += [f"{carry(f'_C{p}_{s}', p)} AS _Gc{k}_{p}_{s}" for s in range(p + 1)]
                cols += [f"{carry(f'_LP{p}_{lo}', p)} AS _Glp{k}_{p}_{lo}" for lo in los if lo <= p]
                for x, (lo, hi) in enumerate(self.ex):
                    if lo <= p < hi:
                        cols += [f"{carry(f'_Xb{x}', p)} AS _Gxb{k}_{p}_{x}", f"{carry(f'_Xe{x}', p)} AS _Gxe{k}_{p}_{x}"]
                    elif p < lo < k:
                        cols.append(f"{carry(f'_Xe{x}', p)} AS _Gxe{k}_{p}_{x}")
            # The predecessor: reached, not stopped by an exclusion since, not blocked from
            # skipping the from-step of one since, within the window and the time limit; the
            # latest start, then the latest last step, then the deeper one (``_predecessor``'s
            # order).
            arg_list = [f"_Gs{k}_{p}, _Gl{k}_{p}" for p in cands]
            param_list = [f"_s{p}, _l{p}" for p in cands]
            stops: dict[int, list[str]] = {p: [] for p in cands}
            for p in cands:
                for x, (lo, hi) in enumerate(self.ex):
                    if lo <= p < hi:
                        arg_list.append(f"_Glp{k}_{p}_{lo}, _Gxb{k}_{p}_{x}, _Gxe{k}_{p}_{x}, _Xb{x}")
                        param_list.append(f"_lp{p}_{x}, _gb{p}_{x}, _ge{p}_{x}, _xi{x}_{p}")
                        stops[p].append(f"if(_lp{p}_{x} < _l{p}, _xi{x}_{p} - _gb{p}_{x}, _xi{x}_{p} - _ge{p}_{x}) > 0")
                    elif p < lo < k:
                        # Going from p to k skips x's optional from-step: an exclusion x after p's
                        # instant and before this one (the kernel's ``blocked``) refuses p.
                        arg_list.append(f"_Gxe{k}_{p}_{x}, _Xb{x}")
                        param_list.append(f"_ge{p}_{x}, _xi{x}_{p}")
                        stops[p].append(f"_xi{x}_{p} - _ge{p}_{x} > 0")
            args, params = ", ".join(arg_list), ", ".join(param_list)
            keys = []
            for p in cands:
                ok = f"_s{p} != {a} AND _t - _s{p} <= {self.window}"
                if self.gaps[k] > 0:
                    ok += f" AND _t - _l{p} <= {self.gaps[k]}"
                if stops[p]:
                    ok += f" AND NOT ({' OR '.join(stops[p])})"
                keys.append(f"if({ok}, (_s{p}, _l{p}, toInt16({p})), ({a}, {a}, toInt16(-1)))")
            best = keys[0] if len(keys) == 1 else f"arrayReverseSort([{', '.join(keys)}])[1]"
            cols.append(f"arrayMap((_r, _t, {params}) -> if(_r, ({best}).3, toInt16(-1)), _rep{k}, _T, {args}) AS _P{k}")
            cols += self._take_predecessor(k, cands, lambda p, k=k: f"_Gs{k}_{p}", lambda p, s, k=k: f"_Gc{k}_{p}_{s}")
            cols.append(f"arrayMap(_s -> _s != {a}, _S{k}) AS _v{k}")
            for lo in los:
                if lo == k:
                    cols.append(f"arrayMap((_q, _t) -> if(_q >= 0, _t, {a}), _P{k}, _T) AS _LP{k}_{k}")
                elif lo < k:
                    # the last step done up to lo: the predecessor's, or its own last step when
                    # lo was skipped past it
                    values = [f"_Glp{k}_{p}_{lo}" if p >= lo else f"_Gl{k}_{p}" for p in cands]
                    picks = ", ".join(f"_q = {p}, _w{j}" for j, p in enumerate(cands))
                    cols.append(f"arrayMap((_q, {', '.join(f'_w{j}' for j in range(len(cands)))}) -> multiIf({picks}, {a}), "
                                f"_P{k}, {', '.join(values)}) AS _LP{k}_{lo}")  # fmt: skip
        cases = []
        for level in range(n - 1, -1, -1):
            e = f"arrayFirstIndex(_s -> _s, _v{level})"
            pos = [f"toUInt32(_C{level}_{s}[{e}])" if s <= level else "toUInt32(0)" for s in range(n)]
            ts = [f"if({pos[s]} > 0, _T[{pos[s]}], {a})" if s <= level else a for s in range(n)]
            cases.append(f"has(_v{level}, 1), (toInt8({level}), [{', '.join(ts)}], [{', '.join(pos)}])")
        none = f"(toInt8(-1), arrayWithConstant({n}, {a}), arrayWithConstant({n}, toUInt32(0)))"
        layers.append(cols)
        sql = grouped
        for layer in layers:
            sql = f"SELECT *, {', '.join(layer)} FROM ({sql})"
        return f"SELECT *, multiIf({', '.join(cases)}, {none}) AS r FROM ({sql})"

    @staticmethod
    def _take_predecessor(k: int, cands: list[int], start_of, position_of) -> list[str]:
        """Columns of the attempt step k extends, ``_P{k}`` naming the chosen candidate step (-1:
        none): its start ``_S{k}`` and the position of each of its steps ``_C{k}_{s}`` (0 where
        skipped; step k's own is the event). ``start_of(p)`` and ``position_of(p, s)`` are the
        arrays of candidate p's start and step positions as seen at each event."""
        a = _ABS
        pick = ", ".join(f"_q = {p}, _s{p}" for p in cands)
        starts = ", ".join(start_of(p) for p in cands)
        cols = [f"arrayMap((_q, {', '.join(f'_s{p}' for p in cands)}) -> multiIf({pick}, {a}), _P{k}, {starts}) AS _S{k}"]
        for s in range(k):
            having = [p for p in cands if s <= p]
            if not having:
                cols.append(f"arrayMap(_q -> toUInt32(0), _P{k}) AS _C{k}_{s}")
                continue
            picks = ", ".join(f"_q = {p}, _g{p}" for p in having)
            cols.append(f"arrayMap((_q, {', '.join(f'_g{p}' for p in having)}) -> multiIf({picks}, toUInt32(0)), "
                        f"_P{k}, {', '.join(position_of(p, s) for p in having)}) AS _C{k}_{s}")  # fmt: skip
        cols.append(f"arrayMap((_q, _i) -> if(_q >= 0, _i, 0), _P{k}, _I) AS _C{k}_{k}")
        return cols

    def strict_vector_sql(self, grouped: str) -> str:
        """Strict funnels counting uniques or sessions, with whole-array functions: every action
        takes each attempt one step on or ends it, so the attempt that reached step k at action
        j extends the one that reached its predecessor at action j-1 (the arrays shifted by one),
        unless an exclusion of that earlier action's instant stopped it (exclusions apply after
        an instant's last action, so only when action j is at a later instant). The reported
        attempt: the first instant the deepest step was reached, the latest start there.

        An exclusion from an optional step the attempt skips (the kernel's ``blocked``) never
        refuses a predecessor here: it blocks the attempt that reached p only when it falls at an
        instant strictly after p's, and it is applied after that instant's last action; but that
        attempt can be extended only by the action right after the one that reached p, before any
        later instant's exclusions are applied (an exclusion is an action too: one in between
        would have ended the attempt)."""
        n, a = self.n, _ABS
        los = sorted({lo for lo, _ in self.ex})

        def shift(array: str, none: str) -> str:
            return f"arrayConcat([{none}], arraySlice({array}, 1, length({array}) - 1))"

        layers = []
        cols = [
            "arrayMap(_e -> _e.1, evs) AS _T",
            "arrayMap(_e -> _e.4, evs) AS _M",
            "arrayEnumerate(evs) AS _I",
            f"{shift('_T', a)} AS _Tp",
            f"arrayMap((_t, _x) -> _t != _x, _T, arrayConcat(arraySlice(_T, 2), [{a}])) AS _last",
            "arrayMap((_t, _p) -> _t != _p, _T, _Tp) AS _first",
        ]
        for x in range(len(self.ex)):
            cols += [
                f"arrayMap(_e -> toUInt32(bitTest(_e.5, {x})), evs) AS _xb{x}",
                f"arrayCumSum(_xb{x}) AS _xc{x}",
                # exclusions x at the previous action's instant
                f"arrayFill((_v, _f) -> _f, arrayMap((_y, _z) -> _y - _z, _xc{x}, _xb{x}), _first) AS _Xb{x}",
                f"arrayReverseFill((_v, _l) -> _l, _xc{x}, _last) AS _Xe{x}",
                f"{shift(f'arrayMap((_y, _z) -> _y - _z > 0, _Xe{x}, _Xb{x})', '0')} AS _Xp{x}",
            ]
        for k in range(n):
            layers.append(cols)
            cols = []
            if k == 0:
                cols += [f"arrayMap((_m, _t) -> if(bitTest(_m, 0), _t, {a}), _M, _T) AS _S0",
                         "arrayMap((_m, _i) -> if(bitTest(_m, 0), _i, 0), _M, _I) AS _C0_0"]  # fmt: skip
                if 0 in los:
                    cols.append("_S0 AS _LP0_0")
                continue
            cands = self._candidates(k)
            arg_list, param_list = ["_M", "_T", "_Tp"], ["_m", "_t", "_tp"]
            keys = []
            for p in cands:
                arg_list.append(shift(f"_S{p}", a))
                param_list.append(f"_s{p}")
                ok = f"_s{p} != {a} AND _t - _s{p} <= {self.window}"
                if self.gaps[k] > 0:
                    ok += f" AND _t - _tp <= {self.gaps[k]}"
                stops = []
                for x, (lo, hi) in enumerate(self.ex):
                    if lo <= p < hi:
                        arg_list += [shift(f"_LP{p}_{lo}", a), f"_Xp{x}"]
                        param_list += [f"_lp{p}_{x}", f"_xp{p}_{x}"]
                        stops.append(f"(_t > _tp AND _xp{p}_{x} AND _lp{p}_{x} < _tp)")
                if stops:
                    ok += f" AND NOT ({' OR '.join(stops)})"
                keys.append(f"if({ok}, (_s{p}, toInt16({p})), ({a}, toInt16(-1)))")
            best = keys[0] if len(keys) == 1 else f"arrayReverseSort([{', '.join(keys)}])[1]"
            cols.append(f"arrayMap(({', '.join(param_list)}) -> if(bitTest(_m, {k}), ({best}).2, toInt16(-1)), "
                        f"{', '.join(arg_list)}) AS _P{k}")  # fmt: skip
            cols += self._take_predecessor(k, cands, lambda p: shift(f"_S{p}", a), lambda p, s: shift(f"_C{p}_{s}", "0"))
            for lo in los:
                if lo == k:
                    cols.append(f"arrayMap((_q, _t) -> if(_q >= 0, _t, {a}), _P{k}, _T) AS _LP{k}_{k}")
                elif lo < k:
                    values = [shift(f"_LP{p}_{lo}", a) if p >= lo else "_Tp" for p in cands]
                    picks = ", ".join(f"_q = {p}, _w{j}" for j, p in enumerate(cands))
                    cols.append(f"arrayMap((_q, {', '.join(f'_w{j}' for j in range(len(cands)))}) -> multiIf({picks}, {a}), "
                                f"_P{k}, {', '.join(values)}) AS _LP{k}_{lo}")  # fmt: skip
        layers.append(cols)
        cases = []
        for level in range(n - 1, -1, -1):
            reached = f"arrayMap(_s -> _s != {a}, _S{level})"
            first = f"arrayMin(arrayFilter((_t, _r) -> _r, _T, {reached}))"
            latest = f"arrayMax(arrayFilter((_s, _t) -> _t = _first_t{level}, _S{level}, _T))"
            e = f"arrayFirstIndex((_s, _t) -> _t = _first_t{level} AND _s = _latest{level}, _S{level}, _T)"
            pos = [f"toUInt32(_C{level}_{s}[{e}])" if s <= level else "toUInt32(0)" for s in range(n)]
            ts = [f"if({pos[s]} > 0, _T[{pos[s]}], {a})" if s <= level else a for s in range(n)]
            cols_level = [f"has({reached}, 1) AS _has{level}", f"if(_has{level}, {first}, {a}) AS _first_t{level}",
                          f"if(_has{level}, {latest}, {a}) AS _latest{level}"]  # fmt: skip
            layers.append(cols_level)
            cases.append(f"_has{level}, (toInt8({level}), [{', '.join(ts)}], [{', '.join(pos)}])")
        none = f"(toInt8(-1), arrayWithConstant({n}, {a}), arrayWithConstant({n}, toUInt32(0)))"
        sql = grouped
        for layer in layers:
            if layer:
                sql = f"SELECT *, {', '.join(layer)} FROM ({sql})"
        return f"SELECT *, multiIf({', '.join(cases)}, {none}) AS r FROM ({sql})"

    def unordered(self) -> str:
        """Unordered: for each step event as anchor, the steps done within the window from it (an
        event matching several steps counts as each); the level is the most distinct steps of any
        anchor, the reported window the one reaching that many first (then the latest start), its
        steps the first event of each step, in the order done. (level, ts, positions)."""
        n = self.n
        # Per anchor a: the events from a on within the window; per step its first position there.
        def firsts_from(a: str) -> str:
            return (f"arrayMap(_k -> arrayFirstIndex((_e, _j) -> _j >= {a} AND _e.1 - evs[{a}].1 <= {self.window} "
                    f"AND bitTest(_e.4, _k), evs, arrayEnumerate(evs)), range({n}))")  # fmt: skip

        firsts = firsts_from("_a")
        anchors = "arrayFilter(_a -> evs[_a].4 != 0, arrayEnumerate(evs))"
        # (distinct steps, reach time, start time, positions in the order done)
        per_anchor = _let(
            "_f", firsts,
            "(toInt16(countEqual(arrayMap(_z -> _z > 0, _f), 1)), _f)",
        )  # fmt: skip
        windows = f"arrayMap(_a -> tuple(_a, {per_anchor}), {anchors})"
        # the best count, then the window reaching it first, latest start on ties
        choose = _let(
            "_b", "arrayMax(arrayMap(_w -> _w.2.1, _W))",
            _let("_cands",
                 "arrayMap(_w -> (_w.1, arrayElement(arraySort(arrayFilter(_z -> _z > 0, _w.2.2)), _b)), "
                 "arrayFilter(_w -> _w.2.1 = _b, _W))",
                 "(_b - 1, arraySort(_c -> (evs[_c.2].1, -evs[_c.1].1, _c.1), _cands)[1].1)"),
        )  # fmt: skip
        chosen = _let("_W", windows, choose)
        # The chosen anchor's steps: the first event of each step up to the reach event, in order.
        result = _let(
            "_ch", chosen,
            _let("_f2", firsts_from("_ch.2"),
                 # an event that is the first of several steps stands for each of them
                 _let("_pos", "arraySort(arrayFilter(_z -> _z > 0, _f2))",
                      f"(toInt8(_ch.1), arrayMap(_s -> if(_s < length(_pos), evs[_pos[_s + 1]].1, {_ABS}), range({n})), "
                      f"arrayMap(_s -> if(_s < length(_pos), toUInt32(_pos[_s + 1]), toUInt32(0)), range({n})))")),
        )  # fmt: skip
        return f"if(empty({anchors}), (toInt8(-1), arrayMap(_s -> {_ABS}, range({n})), arrayMap(_s -> toUInt32(0), range({n}))), {result})"


def units_sql(ctx: ClickHouseContext, q: FunnelQuery, *, date_from=None, date_to=None,
              p: Predicates | None = None) -> UnitsSQL:  # fmt: skip
    """The counted units of ``q`` over ``[date_from, date_to]`` (see ``UnitsSQL``)."""
    p = p or Predicates()
    held = _held_for(q)
    c = _Compiler(ctx, q, held, p)
    n = c.n
    events = c.events(date_from, date_to)
    grouped = c.grouped(events)
    keys = c.unit_keys()
    if q.counting == "totals":
        per_unit = _totals(c, grouped, keys)
    elif c.vectorized():
        vector = c.ordered_sql(grouped) if q.order == "ordered" else c.strict_vector_sql(grouped)
        per_unit = f"SELECT {', '.join(keys)}, evs, r.1 AS level, r.2 AS ts, r.3 AS pos FROM ({vector}) WHERE level >= 0"
    else:
        fold = c.unordered() if q.order == "unordered" else c.fold()
        if q.order == "unordered":
            body = f"SELECT {', '.join(keys)}, evs, {fold} AS r, r.1 AS level, r.2 AS ts, r.3 AS pos FROM ({grouped})"
        else:
            body = f"SELECT {', '.join(keys)}, evs, {fold} AS r, r.6 AS level, r.7 AS ts, r.8 AS pos FROM ({grouped})"
        per_unit = f"SELECT * FROM ({body}) WHERE level >= 0"
    bd = _attributed(q, n)
    ukey = "tuple(" + ", ".join(k for k in keys[1:]) + ", ts[1])" if len(keys) > 1 else "tuple(ts[1])"
    mids = "arrayMap(_z -> if(_z > 0, evs[_z].3, ''), pos)"
    rows = (f"SELECT person, toInt8(level) AS level, ts, ts[level + 1] AS reach, {bd} AS bd, {ukey} AS ukey, "
            f"{mids} AS mids FROM ({per_unit})")  # fmt: skip
    if held and q.counting == "uniques":
        # A person counts once, by the value that took them deepest (reached first). Ties: the
        # embedded store takes the value it met first in storage; here the smallest value.
        rows = (f"SELECT person, best.1 AS level, best.2 AS ts, best.3 AS reach, best.4 AS bd, best.5 AS ukey, "
                f"best.6 AS mids FROM (SELECT person, "
                f"arraySort(_u -> (-_u.1, _u.3, _u.5), groupArray((level, ts, reach, bd, ukey, mids)))[1] AS best "
                f"FROM ({rows}) GROUP BY person)")  # fmt: skip
    return UnitsSQL(rows, p.params)


def _attributed(q: FunnelQuery, n: int) -> str:
    """The breakdown value of a unit: on its step 1 (first_touch, all_events), its last step done
    (last_touch) or step N; NULL where there is none."""
    bd = q.breakdown
    if bd is None:
        return "CAST(NULL AS Nullable(String))"
    if bd.attribution in ("first_touch", "all_events"):
        at = "pos[1]"
    elif bd.attribution == "last_touch":
        at = "arrayLast(_z -> _z > 0, pos)"
    else:
        at = f"pos[{bd.step}]"
    return f"if({at} > 0, evs[{at}].6, CAST(NULL AS Nullable(String)))"


def _totals(c: _Compiler, grouped: str, keys: list[str]) -> str:
    """Every attempt of every unit: the fold's finished attempts, and the one still in progress."""
    attempts = "if(r.9 = 1, arrayPushBack(r.13, (r.6, r.7, r.8)), r.13)"
    return (f"SELECT {', '.join(keys)}, evs, attempt.1 AS level, attempt.2 AS ts, attempt.3 AS pos "
            f"FROM (SELECT {', '.join(keys)}, evs, {c.fold()} AS r FROM ({grouped})) ARRAY JOIN {attempts} AS attempt")  # fmt: skip


# -- running ----------------------------------------------------------------------------------------


@contextmanager
def _materialized(ctx: ClickHouseContext, units: UnitsSQL):
    """The units in a Memory table for the few aggregate queries that read them."""
    name = f"{ctx.client.database}._funnel_{uuid.uuid4().hex[:12]}"
    ctx.client.command(f"CREATE TABLE {name} ENGINE = Memory AS {units.sql}", units.params)
    try:
        yield name
    finally:
        ctx.client.command(f"DROP TABLE IF EXISTS {name}")


def _reached(q: FunnelQuery, k: str) -> str:
    """SQL: the unit reached step ``k`` (0-based expression); an optional step only when done."""
    opt = _int_array([int(s.optional and q.order != "unordered") for s in q.steps], "UInt8")
    return f"(level >= {k} AND ({opt}[{k} + 1] = 0 OR ts[{k} + 1] != {_ABS}))"


def _mean(total_us: int, n: int) -> float:
    """Mean seconds from an exact sum of microseconds: the sum in seconds first, then the division,
    as numpy's mean of the seconds does (exact when the times are whole seconds; otherwise both
    are within an ulp, which the rounding to milliseconds hides but at a boundary)."""
    return (total_us / 1e6) / n if n else 0.0


def _stats(median, average, p90, n) -> dict[str, float | None]:
    if not n:
        return {"median": None, "average": None, "p90": None}
    return {"median": round(float(median), 3), "average": round(float(average), 3), "p90": round(float(p90), 3)}


def _grouped_rows(ctx: ClickHouseContext, q: FunnelQuery, table: str, group: str = "0",
                  params: dict[str, Any] | None = None) -> dict[int, list[dict]]:  # fmt: skip
    """Step rows per group of units: counts, and the seconds from the previous step done."""
    n = len(q.steps)
    prev = f"arrayLast(_w -> _w != {_ABS}, arraySlice(ts, 1, k))"
    timed = f"(k > 0 AND ts[k + 1] != {_ABS} AND level >= k)"
    sql = (
        f"SELECT g, k, countIf({_reached(q, 'k')}) AS n, countIf({timed}) AS m, "
        f"quantilesExactInclusiveIf(0.5, 0.9)((ts[k + 1] - {prev}) / 1e6, {timed}) AS qs, "
        f"sumIf(ts[k + 1] - {prev}, {timed}) AS total "
        f"FROM (SELECT {group} AS g, level, ts FROM {table}) ARRAY JOIN range({n}) AS k GROUP BY g, k"
    )
    table_rows = ctx.arrow(sql, params).to_pylist()
    by_group: dict[int, tuple[list[int], list[dict]]] = {}
    for r in table_rows:
        counts, stats = by_group.setdefault(int(r["g"]), ([0] * n, [_stats(0, 0, 0, 0) for _ in range(n)]))
        k = int(r["k"])
        counts[k] = int(r["n"])
        if k and r["m"]:
            stats[k] = _stats(r["qs"][0], _mean(r["total"], r["m"]), r["qs"][1], r["m"])
    return {g: rows_from_stats(q, counts, stats) for g, (counts, stats) in by_group.items()}


def _step_rows(ctx: ClickHouseContext, q: FunnelQuery, table: str) -> list[dict]:
    rows = _grouped_rows(ctx, q, table)
    if 0 in rows:
        return rows[0]
    return rows_from_stats(q, [0] * len(q.steps), [_stats(0, 0, 0, 0) for _ in q.steps])


def _time_to_convert(ctx: ClickHouseContext, q: FunnelQuery, table: str) -> dict[str, Any]:
    last = len(q.steps) - 1
    sec = f"(ts[{last + 1}] - ts[1]) / 1e6"
    bins = ttc_bins(q)
    counts = ", ".join(
        f"countIf({sec} >= {low} AND {sec} {'<' if high != q.window else '<='} {high}) AS b{j}"
        for j, (low, high) in enumerate(bins)
    )
    row = ctx.arrow(
        f"SELECT count() AS n, quantilesExactInclusive(0.5, 0.9)({sec}) AS qs, sum(ts[{last + 1}] - ts[1]) AS total, "
        f"{counts} FROM {table} WHERE level = {last}"
    ).to_pylist()[0]
    n = int(row["n"])
    stats = _stats(row["qs"][0], _mean(row["total"], n), row["qs"][1], n)
    return {
        "converted": n,
        **{f"{k}_seconds": v for k, v in stats.items()},
        "bins": [{"from_seconds": low, "to_seconds": high, "count": int(row[f"b{j}"])} for j, (low, high) in enumerate(bins)],
    }


_PERIODS = {"day": "{d}", "week": "toMonday({d})", "month": "toStartOfMonth({d})"}


def _trend(ctx: ClickHouseContext, q: FunnelQuery, table: str) -> list[dict[str, Any]]:
    if q.trend is None:
        return []
    tz = ctx.tz.key.replace("'", "")
    day = f"toDate(fromUnixTimestamp64Micro(ts[1], 'UTC'), '{tz}')"
    period = _PERIODS[q.trend].format(d=day)
    rows = ctx.arrow(
        f"SELECT {period} AS period, count() AS entered, countIf(level = {len(q.steps) - 1}) AS converted "
        f"FROM {table} GROUP BY period ORDER BY period"
    ).to_pylist()
    return [
        {"period": r["period"].isoformat(), "entered": int(r["entered"]), "converted": int(r["converted"]),
         "conversion": _ratio(int(r["converted"]), int(r["entered"]))}
        for r in rows
    ]  # fmt: skip


def _breakdown_rows(ctx: ClickHouseContext, q: FunnelQuery, table: str) -> list[dict[str, Any]]:
    bd = q.breakdown
    assert bd is not None
    # Values by units at step 1, most first; a unit without a value ranks as the empty text.
    ranked = ctx.arrow(
        f"SELECT bd, count() AS n FROM {table} GROUP BY bd "
        f"ORDER BY n DESC, ifNull(bd, '') ASC, isNotNull(bd) ASC LIMIT {int(bd.limit)}"
    ).to_pylist()
    if not ranked:
        return []
    distinct = ctx.arrow(f"SELECT uniqExact(bd) + (countIf(isNull(bd)) > 0) AS n FROM {table}").to_pylist()[0]["n"]
    top = [r["bd"] for r in ranked]
    rest = int(distinct) - len(top)
    group = "indexOf({top:Array(Nullable(String))}, bd)"
    groups = _grouped_rows(ctx, q, table, group, {"top": top})
    out: list[dict[str, Any]] = [{"value": value, "steps": groups[rank + 1]} for rank, value in enumerate(top)]
    if rest:
        out.append({"value": OTHER, "other_values": rest, "steps": groups[0]})
    return out


def run_funnel(ctx: ClickHouseContext, q: FunnelQuery) -> FunnelResult:
    data: dict[str, Any] = {
        "kind": "funnel",
        "source": ctx.source.name,
        "order": q.order,
        "counting": q.counting,
        "window_seconds": q.window,
        "range": _range_dict(q.date_from, q.date_to),
    }
    with _materialized(ctx, units_sql(ctx, q, date_from=q.date_from, date_to=q.date_to)) as table:
        data["steps"] = _step_rows(ctx, q, table)
        data["breakdown"] = _breakdown_rows(ctx, q, table) if q.breakdown is not None else []
        data["breakdown_property"] = q.breakdown.property if q.breakdown is not None else None
        data["time_to_convert"] = _time_to_convert(ctx, q, table)
        data["trend"] = _trend(ctx, q, table)
        data["compare"] = None
    if q.compare is not None:
        units = units_sql(ctx, q, date_from=q.compare.date_from, date_to=q.compare.date_to)
        with _materialized(ctx, units) as table:
            data["compare"] = {
                "range": _range_dict(q.compare.date_from, q.compare.date_to),
                "steps": _step_rows(ctx, q, table),
                "time_to_convert": _time_to_convert(ctx, q, table),
            }
    return FunnelResult(data)


def run_funnel_people(ctx: ClickHouseContext, q: FunnelPeopleQuery) -> FunnelResult:
    """The people who reached step ``q.step`` or dropped out just before it, newest last step first."""
    if q.step > len(q.steps):
        raise InvalidInput(f"step must be between 1 and {len(q.steps)}", code="invalid_query")
    if q.status == "dropped" and q.step == 1:
        raise InvalidInput("nobody drops out before step 1: ask for step 2 or later", code="invalid_query")
    k = q.step - 1
    cond = _reached(q, str(k)) if q.status == "reached" else f"{_reached(q, str(k - 1))} AND NOT {_reached(q, str(k))}"
    units = units_sql(ctx, q, date_from=q.date_from, date_to=q.date_to)
    params = dict(units.params)
    if q.breakdown is not None and q.breakdown_value is not None:
        cond += " AND ifNull(bd = {masar_value:String}, false)"
        params["masar_value"] = q.breakdown_value
    rows = ctx.arrow(
        f"SELECT person, level, reach, count() OVER () AS total FROM ({units.sql}) WHERE {cond} "
        f"ORDER BY reach DESC, person ASC, ukey ASC LIMIT {int(q.limit)} OFFSET {int(q.offset)}",
        params,
    ).to_pylist()
    if rows:
        total = int(rows[0]["total"])
    else:
        total = int(ctx.arrow(f"SELECT count() AS n FROM ({units.sql}) WHERE {cond}", params).to_pylist()[0]["n"])
    ids = ctx.store.identities_of(ctx.source, [int(r["person"]) for r in rows])
    people = []
    for r in rows:
        person = int(r["person"])
        known = ids.get(person, {})
        people.append({
            "person_id": person,
            "user_id": known.get("user_id"),
            "anonymous_ids": known.get("anonymous_ids", []),
            "deepest_step": int(r["level"]) + 1,
            "last_step_at": _iso(int(r["reach"])),
        })  # fmt: skip
    return FunnelResult({
        "kind": "funnel_people",
        "source": ctx.source.name,
        "step": q.step,
        "status": q.status,
        "total": total,
        "offset": q.offset,
        "people": people,
    })  # fmt: skip


RUNNERS = {"funnel": run_funnel, "funnel_people": run_funnel_people}
