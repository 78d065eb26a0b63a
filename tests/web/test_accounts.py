"""Dashboard accounts on a real embedded store: argon2 hashes, roles, the last owner, sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import masar
from masar.errors import Conflict, InvalidInput, NotFound
from masar.store.metadata import users, web_sessions
from tests.conftest import masar_cli, masar_cli_json

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path):
    s = masar.open(tmp_path / "data")
    yield s
    s.close()


def test_passwords_are_argon2_hashes_and_checked(store):
    user = store.accounts.create_user(" Owner@Example.com ", PASSWORD, "owner")
    assert user.email == "owner@example.com" and user.role == "owner"
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert store.accounts.authenticate("OWNER@example.com", PASSWORD) == user
    assert store.accounts.authenticate("owner@example.com", PASSWORD + "x") is None
    assert store.accounts.authenticate("nobody@example.com", PASSWORD) is None


@pytest.mark.parametrize(
    ("email", "password", "role", "code"),
    [
        ("not-an-email", PASSWORD, "viewer", "invalid_email"),
        ("a@example.com", "short", "viewer", "weak_password"),
        ("a@example.com", PASSWORD, "admin", "invalid_role"),
    ],
)
def test_bad_accounts_are_refused_with_a_reason(store, email, password, role, code):
    with pytest.raises(InvalidInput) as caught:
        store.accounts.create_user(email, password, role)
    assert caught.value.code == code
    assert store.accounts.users() == []


def test_roles_rank_and_the_last_owner_stays(store):
    owner = store.accounts.create_user("o@example.com", PASSWORD, "owner")
    analyst = store.accounts.create_user("a@example.com", PASSWORD, "analyst")
    viewer = store.accounts.create_user("v@example.com", PASSWORD, "viewer")
    assert owner.can("owner") and owner.can("viewer")
    assert analyst.can("analyst") and not analyst.can("owner")
    assert viewer.can("viewer") and not viewer.can("analyst")
    with pytest.raises(Conflict):
        store.accounts.create_user("O@example.com", PASSWORD, "viewer")
    with pytest.raises(Conflict) as caught:
        store.accounts.set_role("o@example.com", "viewer")
    assert caught.value.code == "last_owner"
    with pytest.raises(Conflict):
        store.accounts.delete_user("o@example.com")
    store.accounts.set_role("a@example.com", "owner")
    store.accounts.set_role("o@example.com", "viewer")  # another owner exists now
    assert store.accounts.user("o@example.com").role == "viewer"
    store.accounts.delete_user("v@example.com")
    with pytest.raises(NotFound):
        store.accounts.user("v@example.com")


def test_sessions_store_only_a_hash_expire_and_end(store):
    user = store.accounts.create_user("o@example.com", PASSWORD, "owner")
    token, session = store.accounts.start_session(user)
    assert store.accounts.session(token).user == user
    assert store.accounts.session(token).csrf == session.csrf
    with store.engine.connect() as conn:
        hashes = [r.token_hash for r in conn.execute(sa.select(web_sessions))]
    assert token not in hashes and len(hashes) == 1
    assert store.accounts.session(token + "x") is None and store.accounts.session(None) is None
    # Expired: not a session any more.
    with store.engine.begin() as conn:
        conn.execute(web_sessions.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert store.accounts.session(token) is None
    token, _ = store.accounts.start_session(user)
    store.accounts.end_session(token)
    assert store.accounts.session(token) is None
    # A new password signs the user out everywhere.
    token, _ = store.accounts.start_session(user)
    store.accounts.set_password("o@example.com", PASSWORD + "!")
    assert store.accounts.session(token) is None
    assert store.accounts.authenticate("o@example.com", PASSWORD + "!") is not None


def test_users_cli(tmp_path):
    data = tmp_path / "data"
    made = masar_cli_json("users", "create", "--email", "a@example.com", "--role", "analyst",
                          "--password", PASSWORD, "--data-dir", data)  # fmt: skip
    assert (made["email"], made["role"]) == ("a@example.com", "analyst")
    listed = masar_cli_json("users", "list", "--data-dir", data)
    assert [(u["email"], u["role"]) for u in listed] == [("a@example.com", "analyst")]
    import subprocess
    import sys

    from tests.conftest import REPO, _env

    again = subprocess.run(
        [sys.executable, "-m", "masar.cli", "users", "create", "--email", "a@example.com", "--password", PASSWORD,
         "--data-dir", str(data)], capture_output=True, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert again.returncode == 1 and "exists already" in again.stderr and "Traceback" not in again.stderr
    masar_cli("users", "role", "--email", "a@example.com", "--role", "viewer", "--data-dir", data)
    assert masar_cli_json("users", "list", "--data-dir", data)[0]["role"] == "viewer"
