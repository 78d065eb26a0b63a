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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from masar.store.metadata import counters, identities, person_overrides


@dataclass
class _Resolution:
    mapping: dict[str, int]
    identified: set[int]
    new_keys: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)
    provisional: int = 0  # new persons get ids -1, -2, … until one block is allocated at the end

    def new_person(self) -> int:
        self.provisional += 1
        return -self.provisional

    def finalize(self, first: int) -> None:
        """Give provisional persons their real ids (``first``, ``first + 1``, …)."""
        real = lambda p: first + (-p) - 1 if p < 0 else p  # noqa: E731
        self.mapping = {k: real(p) for k, p in self.mapping.items()}
        self.new_keys = {k: real(p) for k, p in self.new_keys.items()}
        self.merges = [(real(a), real(b)) for a, b in self.merges]
        self.identified = {real(p) for p in self.identified}


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
        wanted = set(pc.unique(row_keys.drop_null()).to_pylist())
        wanted.update(pc.unique(anon_keys.drop_null()).to_pylist())

        linking = pc.and_(pc.is_valid(user_keys), pc.is_valid(anon_keys))
        link_idx = np.flatnonzero(linking.to_numpy(zero_copy_only=False))
        links = list(
            zip(
                pc.take(anon_keys, link_idx).to_pylist(),
                pc.take(user_keys, link_idx).to_pylist(),
                strict=True,
            )
        )
        aliases: list[tuple[int, str, str]] = []
        is_alias = pc.and_(pc.equal(types, "alias"), pc.is_valid(previous_ids))
        alias_idx = np.flatnonzero(is_alias.fill_null(False).to_numpy(zero_copy_only=False))
        if len(alias_idx):
            prevs = pc.take(previous_ids, alias_idx).to_pylist()
            targets = pc.take(row_keys, alias_idx).to_pylist()
            aliases = [(int(i), p, t) for i, p, t in zip(alias_idx, prevs, targets, strict=True) if t is not None]
            for _i, previous, _target in aliases:
                wanted.update((f"u:{previous}", f"a:{previous}"))
        # Order matters for the rules; apply links and aliases in row order.
        ops: list[tuple[int, str, str, str]] = [
            (int(i), "link", a, u) for i, (a, u) in zip(link_idx, links, strict=True)
        ]
        ops += [(i, "alias", p, t) for i, p, t in aliases]
        ops.sort(key=lambda op: op[0])

        with self.engine.begin() as conn:
            res = self._load(conn, source_id, sorted(wanted))
            for _i, kind, left, right in ops:
                if kind == "link":
                    self._link(res, left, right)
                else:
                    self._alias(res, left, right)
            missing = [key for key in row_keys.drop_null().unique().to_pylist() if key not in res.mapping]
            for key in sorted(missing):
                person = res.new_person()
                res.mapping[key] = person
                res.new_keys[key] = person
            if res.provisional:
                res.finalize(self._allocate(conn, source_id, res.provisional))
            self._persist(conn, source_id, res)

        keys = list(res.mapping)
        values = np.fromiter((res.mapping[k] for k in keys), dtype=np.int64, count=len(keys))
        index = pc.index_in(row_keys, value_set=pa.array(keys, pa.string()))
        return values[index.to_numpy(zero_copy_only=False)]

    # -- rules ---------------------------------------------------------------------------------

    @staticmethod
    def _link(res: _Resolution, anon: str, user: str) -> None:
        pa_, pu = res.mapping.get(anon), res.mapping.get(user)
        if pa_ is None and pu is None:
            person = res.new_person()
            IdentityStore._assign(res, anon, person)
            IdentityStore._assign(res, user, person)
            res.identified.add(person)
        elif pu is None:
            if pa_ in res.identified:  # shared device: this user is a different person
                person = res.new_person()
                IdentityStore._assign(res, user, person)
                res.identified.add(person)
            else:
                IdentityStore._assign(res, user, pa_)
                res.identified.add(pa_)
        elif pa_ is None:
            IdentityStore._assign(res, anon, pu)
        elif pa_ != pu and pa_ not in res.identified:
            IdentityStore._merge(res, pa_, pu)

    @staticmethod
    def _alias(res: _Resolution, previous: str, target: str) -> None:
        prev_key = f"u:{previous}" if f"u:{previous}" in res.mapping else f"a:{previous}"
        pp, pt = res.mapping.get(prev_key), res.mapping.get(target)
        if pp is None and pt is None:
            person = res.new_person()
            IdentityStore._assign(res, target, person)
            IdentityStore._assign(res, f"u:{previous}", person)
            res.identified.add(person)
        elif pp is None:
            IdentityStore._assign(res, f"u:{previous}", pt)
        elif pt is None:
            IdentityStore._assign(res, target, pp)
            res.identified.add(pp)
        elif pp != pt:
            IdentityStore._merge(res, pp, pt)

    @staticmethod
    def _assign(res: _Resolution, key: str, person: int) -> None:
        res.mapping[key] = person
        res.new_keys[key] = person

    @staticmethod
    def _merge(res: _Resolution, old: int, new: int) -> None:
        for key, person in res.mapping.items():
            if person == old:
                res.mapping[key] = new
                if key in res.new_keys:
                    res.new_keys[key] = new
        if old in res.identified:
            res.identified.add(new)
        res.merges.append((old, new))

    # -- storage -------------------------------------------------------------------------------

    def _load(self, conn: Connection, source_id: int, keys: list[str]) -> _Resolution:
        """Known persons of ``keys`` and which of them are identified.

        The keys go into a temporary table joined against ``identities``: one statement however
        many keys an import brings, instead of thousands of ``IN (...)`` queries.
        """
        conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS masar_wanted (k TEXT PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS masar_persons (p INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("DELETE FROM masar_wanted")
        conn.exec_driver_sql("DELETE FROM masar_persons")
        mapping: dict[str, int] = {}
        if keys:
            conn.exec_driver_sql("INSERT OR IGNORE INTO masar_wanted (k) VALUES (?)", [(k,) for k in keys])
            rows = conn.exec_driver_sql(
                "SELECT i.distinct_id, i.person_id FROM masar_wanted w "
                "JOIN identities i ON i.source_id = ? AND i.distinct_id = w.k",
                (source_id,),
            ).fetchall()
            mapping = {key: int(person) for key, person in rows}
        identified: set[int] = set()
        persons = set(mapping.values())
        if persons:
            conn.exec_driver_sql("INSERT OR IGNORE INTO masar_persons (p) VALUES (?)", [(p,) for p in persons])
            rows = conn.exec_driver_sql(
                "SELECT DISTINCT i.person_id FROM masar_persons m JOIN identities i "
                "ON i.source_id = ? AND i.person_id = m.p WHERE i.distinct_id >= 'u:' AND i.distinct_id < 'u;'",
                (source_id,),
            ).fetchall()
            identified = {int(person) for (person,) in rows}
        return _Resolution(mapping, identified)

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
    def _persist(conn: Connection, source_id: int, res: _Resolution) -> None:
        now = datetime.now(UTC)
        for old, new in res.merges:
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
        if res.new_keys:
            conn.exec_driver_sql(
                "INSERT INTO identities (source_id, distinct_id, person_id) VALUES (?, ?, ?) "
                "ON CONFLICT (source_id, distinct_id) DO UPDATE SET person_id = excluded.person_id",
                [(source_id, key, person) for key, person in res.new_keys.items()],
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
