"""Identity rules (docs/identity.md) on a real SQLite metadata database."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.enrich.identity import IdentityStore
from masar.store.metadata import create_engine
from masar.store.migrations import migrate


@pytest.fixture
def ids(tmp_path):
    engine = create_engine(tmp_path / "m.db")
    migrate(engine)
    yield IdentityStore(engine)
    engine.dispose()


def resolve(store, rows, source=1):
    """rows: (type, anonymous_id, user_id, previous_id)"""
    col = lambda i: pa.array([r[i] for r in rows], pa.string())  # noqa: E731
    return list(store.resolve(source, col(1), col(2), col(3), col(0)))


def effective(store, person, source=1):
    return store.overrides(source).get(person, person)


def test_anonymous_then_identify_then_order_one_person(ids):
    persons = resolve(ids, [("page", "a1", None, None), ("identify", "a1", "u1", None), ("track", None, "u1", None)])
    assert len(set(persons)) == 1


def test_link_arrives_later_merges_earlier_events(ids):
    [anon] = resolve(ids, [("page", "a1", None, None)])
    [order] = resolve(ids, [("track", None, "u1", None)])
    assert anon != order
    [linked] = resolve(ids, [("identify", "a1", "u1", None)])
    assert effective(ids, anon) == effective(ids, order) == effective(ids, linked)
    [later] = resolve(ids, [("track", "a1", None, None)])
    assert effective(ids, later) == effective(ids, order)


def test_shared_device_does_not_merge_two_users(ids):
    p1 = resolve(ids, [("identify", "dev", "alice", None)])[0]
    p2 = resolve(ids, [("track", None, "bob", None)])[0]
    p3 = resolve(ids, [("identify", "dev", "bob", None)])[0]
    assert p3 == p2 and effective(ids, p1) != effective(ids, p2)
    # anonymous-only events of the device stay with the first user
    assert resolve(ids, [("page", "dev", None, None)])[0] == p1


def test_new_user_on_identified_device_is_a_new_person(ids):
    alice = resolve(ids, [("identify", "dev", "alice", None)])[0]
    carol = resolve(ids, [("identify", "dev", "carol", None)])[0]
    assert alice != carol


def test_alias_merges_two_identified_users(ids):
    old = resolve(ids, [("track", None, "old-id", None)])[0]
    new = resolve(ids, [("track", None, "new-id", None)])[0]
    resolve(ids, [("alias", None, "new-id", "old-id")])
    assert effective(ids, old) == effective(ids, new)


def test_chained_merges_flatten(ids):
    a = resolve(ids, [("page", "a", None, None)])[0]
    b = resolve(ids, [("page", "b", None, None)])[0]
    resolve(ids, [("identify", "a", "u", None)])
    resolve(ids, [("identify", "b", "u", None)])
    c = resolve(ids, [("track", None, "v", None)])[0]
    resolve(ids, [("alias", None, "v", "u")])
    assert effective(ids, a) == effective(ids, b) == effective(ids, c)
    # overrides point straight at the survivor: no chains to follow at query time
    overrides = ids.overrides(1)
    assert all(target not in overrides for target in overrides.values())


def test_same_batch_order_independent_of_arrival(ids):
    rows = [("page", "x", None, None), ("track", None, "ux", None), ("identify", "x", "ux", None)]
    persons = resolve(ids, rows)
    assert len({effective(ids, p) for p in persons}) == 1


def test_sources_are_separate(ids):
    p1 = resolve(ids, [("track", None, "u", None)], source=1)[0]
    p2 = resolve(ids, [("track", None, "u", None)], source=2)[0]
    assert ids.person_of(1, user_id="u") == p1 and ids.person_of(2, user_id="u") == p2


# -- the batch resolver against the rules applied row by row ---------------------------------------


class ReferenceIdentities:
    """The merge rules as plainly as possible: every link and alias row in order, merges rewriting
    every key at once, new persons numbered in rule order then by sorted key (one block per batch)."""

    def __init__(self):
        self.mapping: dict[str, int] = {}
        self.overrides: dict[int, int] = {}
        self.allocated = 0

    def resolve(self, rows):
        mapping = dict(self.mapping)
        identified = {p for k, p in mapping.items() if k.startswith("u:")}
        provisional = []  # new persons of this batch, in order; stand-ins until the block is known
        merges = []

        def new_person():
            provisional.append(object())
            return provisional[-1]

        def merge(old, new):
            for key, person in mapping.items():
                if person is old or person == old:
                    mapping[key] = new
            if old in identified:
                identified.add(new)
            merges.append((old, new))

        for kind, anon, user, previous in rows:
            a = None if anon is None else f"a:{anon}"
            u = None if user is None else f"u:{user}"
            if a is not None and u is not None:
                pa_, pu = mapping.get(a), mapping.get(u)
                if pa_ is None and pu is None:
                    p = new_person()
                    mapping[a] = mapping[u] = p
                    identified.add(p)
                elif pu is None:
                    if pa_ in identified:
                        p = new_person()
                        mapping[u] = p
                        identified.add(p)
                    else:
                        mapping[u] = pa_
                        identified.add(pa_)
                elif pa_ is None:
                    mapping[a] = pu
                elif pa_ != pu and pa_ not in identified:
                    merge(pa_, pu)
            target = u if u is not None else a
            if kind == "alias" and previous is not None and target is not None:
                prev_key = f"u:{previous}" if f"u:{previous}" in mapping else f"a:{previous}"
                pp, pt = mapping.get(prev_key), mapping.get(target)
                if pp is None and pt is None:
                    p = new_person()
                    mapping[target] = mapping[f"u:{previous}"] = p
                    identified.add(p)
                elif pp is None:
                    mapping[f"u:{previous}"] = pt
                elif pt is None:
                    mapping[target] = pp
                    identified.add(pp)
                elif pp != pt:
                    merge(pp, pt)
        row_keys = {(f"u:{u}" if u is not None else f"a:{a}") for _, a, u, _ in rows if (a, u) != (None, None)}
        for key in sorted(k for k in row_keys if k not in mapping):
            mapping[key] = new_person()
        first = self.allocated + 1
        self.allocated += len(provisional)
        real = {id(p): first + i for i, p in enumerate(provisional)}
        final = lambda p: real[id(p)] if not isinstance(p, int) else p  # noqa: E731
        self.mapping = {k: final(p) for k, p in mapping.items()}
        for old, new in merges:
            old, new = final(old), final(new)
            self.overrides = {o: (new if n == old else n) for o, n in self.overrides.items()}
            self.overrides[old] = new
        return [self.mapping[f"u:{u}" if u is not None else f"a:{a}"] for _, a, u, _ in rows]

    def effective(self, person):
        return self.overrides.get(person, person)


ids_pool = st.sampled_from(["x", "y", "z", "w"])
row = st.tuples(
    st.sampled_from(["track", "identify", "page", "alias"]),
    st.none() | ids_pool,
    st.none() | ids_pool,
    st.none() | ids_pool,
).filter(lambda r: r[1] is not None or r[2] is not None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(row, min_size=1, max_size=12), min_size=1, max_size=4))
def test_batch_resolution_matches_rules_row_by_row(tmp_path_factory, batches):
    engine = create_engine(tmp_path_factory.mktemp("ids") / "m.db")
    migrate(engine)
    store = IdentityStore(engine)
    reference = ReferenceIdentities()
    try:
        got_rows, want_rows = [], []
        for batch in batches:
            got_rows.append(resolve(store, batch))
            want_rows.append(reference.resolve(batch))
        assert got_rows == want_rows  # the same person ids, batch by batch
        for got, want in zip(got_rows, want_rows, strict=True):
            assert [effective(store, p) for p in got] == [reference.effective(p) for p in want]
        for key, person in reference.mapping.items():
            kind, name = key.split(":", 1)
            stored = store.person_of(1, **({"user_id": name} if kind == "u" else {"anonymous_id": name}))
            assert stored == person
    finally:
        engine.dispose()
