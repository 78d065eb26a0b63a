"""Identity: every event of a person resolves to one person id, before and after they identify.

Distinct ids are namespaced: ``u:<userId>`` and ``a:<anonymousId>``. The ``identities`` table maps
each to a person id (small integers per source, so per-person analyses can use dense arrays).

Merge rules (docs/identity.md):

1. A message carrying both a userId and an anonymousId links them. If the anonymous id is new it
   joins the user's person; if the user is new it joins the anonymous id's person.
2. If both are known and belong to different persons, the anonymous person is merged into the
   user's person — unless the anonymous person is already identified as another user (a shared
   device): two known users are never merged by a link. The message itself still belongs to its
   userId's person, and later anonymous-only events of that device stay with the first user.
3. ``alias(previousId, userId)`` is an explicit merge: previousId's person (looked up as a user id,
   then as an anonymous id) is merged into userId's person, even if both are identified.
4. A merge never rewrites stored events: it re-points the distinct ids and records
   ``old person → new person`` in ``person_overrides``, which queries apply (and compaction may
   fold in later). Events that arrived before the link was known therefore resolve to the
   merged person too.

A batch is resolved with set operations: its distinct ids are looked up in one statement, ids
never seen get one block of new person ids, and only the *operations* — distinct links, in event
order, that are not already true, and aliases — go through the rules above one by one. Rows with
only a userId or only an anonymousId (the bulk of any import) never reach a Python loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from masar.store.metadata import counters, identities, person_overrides

# Above this share of the source's persons, reading all its identities beats a keyed lookup.
_SCAN_SHARE = 0.25


@dataclass(frozen=True)
class Operation:
    """One step of the merge rules: ``link`` (anonymous key, user key) or ``alias`` (previousId, user key)."""

    kind: str
    left: str
    right: str


@dataclass
class _Resolution:
    """The rules' working state: persons of the keys the operations touch, merged through ``parent``."""

    mapping: dict[str, int]
    identified: set[int]
    parent: dict[int, int] = field(default_factory=dict)
    new_keys: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)
    provisional: int = 0  # new persons get ids -1, -2, … until one block is allocated at the end

    def new_person(self) -> int:
        self.provisional += 1
        return -self.provisional

    def find(self, person: int) -> int:
        while person in self.parent:
            person = self.parent[person]
        return person

    def person(self, key: str) -> int | None:
        person = self.mapping.get(key)
        return None if person is None else self.find(person)

    def assign(self, key: str, person: int) -> None:
        self.mapping[key] = person
        self.new_keys[key] = person

    def merge(self, old: int, new: int) -> None:
        self.parent[old] = new
        if old in self.identified:
            self.identified.add(new)
        self.merges.append((old, new))


def _real(person: int, first: int) -> int:
    """A provisional person (-1, -2, …) → its id in the block starting at ``first``."""
    return first + (-person) - 1 if person < 0 else person


class IdentityStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def resolve(
        self,
        source_id: int,
        anonymous_ids: pa.Array,
        user_ids: pa.Array,
        previous_ids: pa.Array,
        types: pa.Array,
    ) -> np.ndarray:
        """Person id for each row; rows must be in event-time order so links apply in order."""
        anon_keys = pc.binary_join_element_wise("a:", anonymous_ids, "")
        user_keys = pc.binary_join_element_wise("u:", user_ids, "")
        row_keys = pc.coalesce(user_keys, anon_keys)
        ops = operations(anon_keys, user_keys, previous_ids, types, row_keys)
        keys, persons = self.resolve_keys(source_id, pc.unique(row_keys.drop_null()), ops)
        return persons[pc.index_in(row_keys, value_set=keys).to_numpy(zero_copy_only=False)]

    def resolve_keys(self, source_id: int, row_keys: pa.Array, ops: list[Operation]) -> tuple[pa.Array, np.ndarray]:
        """Persons of the distinct ``row_keys`` after applying ``ops`` (in order): (keys, persons).

        Ids that are neither stored nor given a person by an operation get new persons, in the
        order of their sorted keys.
        """
        row_keys = pa.array(row_keys, pa.string()) if not isinstance(row_keys, pa.Array) else row_keys
        row_keys = pc.unique(row_keys.drop_null())
        op_keys = _op_keys(ops)
        wanted = pc.unique(pa.concat_arrays([row_keys, pa.array(sorted(op_keys), pa.string())]))
        with self.engine.begin() as conn:
            known_keys, known_persons = self._load(conn, source_id, wanted)
            ops = _effective(ops, known_keys, known_persons)
            res = None
            if ops:
                res = self._rules_state(conn, source_id, known_keys, known_persons, _op_keys(ops))
                for op in ops:
                    if op.kind == "link":
                        self._link(res, op.left, op.right)
                    else:
                        self._alias(res, op.left, op.right)
            settled = known_keys
            if res is not None and res.mapping:
                settled = pa.concat_arrays([known_keys, pa.array(list(res.mapping), pa.string())])
            missing = pc.filter(row_keys, pc.invert(pc.is_in(row_keys, value_set=settled)))
            missing = missing.take(pc.sort_indices(missing))
            provisional = res.provisional if res is not None else 0
            count = provisional + len(missing)
            first = self._allocate(conn, source_id, count) if count else 0
            missing_persons = np.arange(first + provisional, first + count, dtype=np.int64)

            keys = [known_keys, missing]
            persons = [known_persons, missing_persons]
            if res is not None:
                redirect = {old: _real(res.find(old), first) for old in {o for o, _ in res.merges} if old > 0}
                if redirect:  # stored keys of merged persons now belong to the survivor
                    merged = np.isin(known_persons, np.fromiter(redirect, np.int64, len(redirect)))
                    known_persons = known_persons.copy()
                    known_persons[merged] = [redirect[int(p)] for p in known_persons[merged]]
                    persons[0] = known_persons
                rule_keys = list(res.mapping)
                keys.append(pa.array(rule_keys, pa.string()))
                persons.append(np.array([_real(res.person(k), first) for k in rule_keys], dtype=np.int64))
                new_rule_keys = {k: _real(res.person(k), first) for k in res.new_keys}
                merges = [(old, _real(res.find(new), first)) for old, new in res.merges if old > 0]
                self._persist_merges(conn, source_id, merges)
                self._insert(conn, source_id, list(new_rule_keys), list(new_rule_keys.values()))
            self._insert(conn, source_id, missing.to_pylist(), missing_persons.tolist())
        all_keys = pa.concat_arrays(keys)
        all_persons = np.concatenate(persons)
        if res is not None and res.mapping:
            # a key both stored and re-assigned by the rules: the rules' answer wins (it comes last)
            all_keys, last = _last_of_each(all_keys)
            all_persons = all_persons[last]
        return all_keys, all_persons

    # -- rules ---------------------------------------------------------------------------------

    @staticmethod
    def _link(res: _Resolution, anon: str, user: str) -> None:
        pa_, pu = res.person(anon), res.person(user)
        if pa_ is None and pu is None:
            person = res.new_person()
            res.assign(anon, person)
            res.assign(user, person)
            res.identified.add(person)
        elif pu is None:
            if pa_ in res.identified:  # shared device: this user is a different person
                person = res.new_person()
                res.assign(user, person)
                res.identified.add(person)
            else:
                res.assign(user, pa_)
                res.identified.add(pa_)
        elif pa_ is None:
            res.assign(anon, pu)
        elif pa_ != pu and pa_ not in res.identified:
            res.merge(pa_, pu)

    @staticmethod
    def _alias(res: _Resolution, previous: str, target: str) -> None:
        prev_key = f"u:{previous}" if res.person(f"u:{previous}") is not None else f"a:{previous}"
        pp, pt = res.person(prev_key), res.person(target)
        if pp is None and pt is None:
            person = res.new_person()
            res.assign(target, person)
            res.assign(f"u:{previous}", person)
            res.identified.add(person)
        elif pp is None:
            res.assign(f"u:{previous}", pt)
        elif pt is None:
            res.assign(target, pp)
            res.identified.add(pp)
        elif pp != pt:
            res.merge(pp, pt)

    # -- storage -------------------------------------------------------------------------------

    def _load(self, conn: Connection, source_id: int, keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """Stored persons of ``keys``: (keys found, their persons).

        A source with no persons yet needs no lookup. When the batch names a good share of the
        source's persons, one scan of its identities is cheaper than a keyed lookup; otherwise the
        keys go into a temporary table joined against ``identities`` (one statement either way).
        """
        empty = (pa.array([], pa.string()), np.zeros(0, dtype=np.int64))
        allocated = self._allocated(conn, source_id)
        if not allocated or len(keys) == 0:
            return empty
        if len(keys) >= _SCAN_SHARE * allocated:
            rows = conn.exec_driver_sql(
                "SELECT distinct_id, person_id FROM identities WHERE source_id = ?", (source_id,)
            ).fetchall()
        else:
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS masar_wanted (k TEXT PRIMARY KEY)")
            conn.exec_driver_sql("DELETE FROM masar_wanted")
            conn.exec_driver_sql("INSERT OR IGNORE INTO masar_wanted (k) VALUES (?)", [(k,) for k in keys.to_pylist()])
            rows = conn.exec_driver_sql(
                "SELECT i.distinct_id, i.person_id FROM masar_wanted w "
                "JOIN identities i ON i.source_id = ? AND i.distinct_id = w.k",
                (source_id,),
            ).fetchall()
        if not rows:
            return empty
        found_keys = pa.array([r[0] for r in rows], pa.string())
        found_persons = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        wanted = pc.is_in(found_keys, value_set=keys)
        if pc.all(wanted).as_py():
            return found_keys, found_persons
        mask = wanted.to_numpy(zero_copy_only=False)
        return found_keys.filter(wanted), found_persons[mask]

    @staticmethod
    def _rules_state(
        conn: Connection, source_id: int, known_keys: pa.Array, known_persons: np.ndarray, op_keys: set[str]
    ) -> _Resolution:
        """The rules' state for the keys the operations name, and which of their persons are identified."""
        mask = pc.is_in(known_keys, value_set=pa.array(sorted(op_keys), pa.string())).to_numpy(zero_copy_only=False)
        mapping = dict(zip(known_keys.filter(pa.array(mask)).to_pylist(), known_persons[mask].tolist(), strict=True))
        identified: set[int] = set()
        persons = sorted(set(mapping.values()))
        if persons:
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS masar_persons (p INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("DELETE FROM masar_persons")
            conn.exec_driver_sql("INSERT OR IGNORE INTO masar_persons (p) VALUES (?)", [(p,) for p in persons])
            rows = conn.exec_driver_sql(
                "SELECT DISTINCT i.person_id FROM masar_persons m JOIN identities i "
                "ON i.source_id = ? AND i.person_id = m.p WHERE i.distinct_id >= 'u:' AND i.distinct_id < 'u;'",
                (source_id,),
            ).fetchall()
            identified = {int(person) for (person,) in rows}
        return _Resolution(mapping, identified)

    @staticmethod
    def _allocated(conn: Connection, source_id: int) -> int:
        value = conn.execute(sa.select(counters.c.value).where(counters.c.name == f"person:{source_id}")).scalar()
        return int(value or 0)

    @staticmethod
    def _allocate(conn: Connection, source_id: int, count: int) -> int:
        """Reserve ``count`` person ids; the caller's transaction holds SQLite's write lock."""
        name = f"person:{source_id}"
        current = conn.execute(sa.select(counters.c.value).where(counters.c.name == name)).scalar()
        if current is None:
            conn.execute(counters.insert().values(name=name, value=count))
            return 1
        conn.execute(counters.update().where(counters.c.name == name).values(value=current + count))
        return int(current) + 1

    @staticmethod
    def _persist_merges(conn: Connection, source_id: int, merges: list[tuple[int, int]]) -> None:
        now = datetime.now(UTC)
        for old, new in merges:
            conn.execute(
                identities.update()
                .where(identities.c.source_id == source_id, identities.c.person_id == old)
                .values(person_id=new)
            )
            conn.execute(
                person_overrides.update()
                .where(person_overrides.c.source_id == source_id, person_overrides.c.new_person_id == old)
                .values(new_person_id=new)
            )
            conn.execute(
                sa.dialects.sqlite.insert(person_overrides)
                .values(source_id=source_id, old_person_id=old, new_person_id=new, created_at=now)
                .on_conflict_do_update(
                    index_elements=["source_id", "old_person_id"], set_={"new_person_id": new}
                )
            )

    @staticmethod
    def _insert(conn: Connection, source_id: int, keys: list[str], persons: list[int]) -> None:
        if keys:
            conn.exec_driver_sql(
                "INSERT INTO identities (source_id, distinct_id, person_id) VALUES (?, ?, ?) "
                "ON CONFLICT (source_id, distinct_id) DO UPDATE SET person_id = excluded.person_id",
                list(zip(itertools.repeat(source_id), keys, persons)),
            )

    def overrides(self, source_id: int) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(person_overrides.c.old_person_id, person_overrides.c.new_person_id).where(
                    person_overrides.c.source_id == source_id
                )
            )
            return {int(old): int(new) for old, new in rows}

    def person_of(self, source_id: int, *, user_id: str | None = None, anonymous_id: str | None = None) -> int | None:
        key = f"u:{user_id}" if user_id is not None else f"a:{anonymous_id}"
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(identities.c.person_id).where(
                    identities.c.source_id == source_id, identities.c.distinct_id == key
                )
            ).scalar()
        return int(found) if found is not None else None


def operations(
    anon_keys: pa.Array, user_keys: pa.Array, previous_ids: pa.Array, types: pa.Array, row_keys: pa.Array
) -> list[Operation]:
    """The rule operations of rows in event-time order: each distinct link once, at its first row,
    and every alias. A link seen before is a no-op whatever happened in between (once linked, two
    ids only ever move together), so keeping its first occurrence is exact."""
    linking = pc.and_(pc.is_valid(user_keys), pc.is_valid(anon_keys))
    link_rows = np.flatnonzero(linking.to_numpy(zero_copy_only=False))
    indexed: list[tuple[int, Operation]] = []
    if len(link_rows):
        pairs = pc.binary_join_element_wise(pc.take(anon_keys, link_rows), pc.take(user_keys, link_rows), "\x1f")
        codes = pairs.dictionary_encode().indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        first.sort()
        anons = pc.take(anon_keys, link_rows[first]).to_pylist()
        users = pc.take(user_keys, link_rows[first]).to_pylist()
        indexed += [(int(i), Operation("link", a, u)) for i, a, u in zip(link_rows[first], anons, users, strict=True)]
    is_alias = pc.and_(pc.equal(types, "alias"), pc.and_(pc.is_valid(previous_ids), pc.is_valid(row_keys)))
    alias_rows = np.flatnonzero(is_alias.fill_null(False).to_numpy(zero_copy_only=False))
    if len(alias_rows):
        prevs = pc.take(previous_ids, alias_rows).to_pylist()
        targets = pc.take(row_keys, alias_rows).to_pylist()
        indexed += [(int(i), Operation("alias", p, t)) for i, p, t in zip(alias_rows, prevs, targets, strict=True)]
    indexed.sort(key=lambda item: item[0])
    return [op for _, op in indexed]


def _op_keys(ops: list[Operation]) -> set[str]:
    keys: set[str] = set()
    for op in ops:
        if op.kind == "link":
            keys.update((op.left, op.right))
        else:
            keys.update((f"u:{op.left}", f"a:{op.left}", op.right))
    return keys


def _effective(ops: list[Operation], known_keys: pa.Array, known_persons: np.ndarray) -> list[Operation]:
    """Drop links between two ids that are stored as one person already: they can never do anything."""
    link_at = [i for i, op in enumerate(ops) if op.kind == "link"]
    if not link_at or len(known_keys) == 0:
        return ops
    links = [ops[i] for i in link_at]
    anon = pc.index_in(pa.array([op.left for op in links], pa.string()), value_set=known_keys)
    user = pc.index_in(pa.array([op.right for op in links], pa.string()), value_set=known_keys)
    both = pc.and_(pc.is_valid(anon), pc.is_valid(user)).to_numpy(zero_copy_only=False)
    same = np.zeros(len(links), dtype=np.bool_)
    if both.any():
        a = anon.fill_null(0).to_numpy(zero_copy_only=False)
        u = user.fill_null(0).to_numpy(zero_copy_only=False)
        same = both & (known_persons[a] == known_persons[u])
    if not same.any():
        return ops
    drop = {link_at[j] for j in np.flatnonzero(same)}
    return [op for i, op in enumerate(ops) if i not in drop]


def _last_of_each(keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Distinct ``keys`` and, for each, the position of its last occurrence."""
    codes = keys.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    reversed_first = np.unique(codes[::-1], return_index=True)[1]
    last = len(codes) - 1 - reversed_first
    return keys.take(pa.array(last)), last
