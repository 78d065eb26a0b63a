"""Identity rules (docs/identity.md) on a real SQLite metadata database."""

from __future__ import annotations

import pyarrow as pa
import pytest

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
