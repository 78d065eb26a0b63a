"""Dashboard accounts from the command line: ``masar users create|list|role|password|delete``.

Registered on the same Typer app as ``masar.cli`` (imported at its end). A password comes from
``--password``, else ``$MASAR_PASSWORD``, else a hidden prompt (asked twice).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from masar.cli import DataDir, Json, StoreOpt, _open, _print_json, app, edge, out

users_app = typer.Typer(help="Dashboard users and their roles (owner, analyst, viewer).", no_args_is_help=True)
app.add_typer(users_app, name="users")

Email = Annotated[str, typer.Option("--email", help="The user's email (their login).")]
Password = Annotated[
    str | None,
    typer.Option("--password", help="The password (default: $MASAR_PASSWORD, else asked).", show_default=False),
]


def _password(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("MASAR_PASSWORD"):
        return os.environ["MASAR_PASSWORD"]
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("create")
@edge
def create(email: Email, role: Annotated[str, typer.Option("--role", help="owner, analyst or viewer.")] = "viewer",
           password: Password = None, data_dir: DataDir = None,
           store_url: StoreOpt = None, json: Json = False) -> None:  # fmt: skip
    """Create a dashboard user."""
    store = _open(data_dir, store_url)
    try:
        user = store.accounts.create_user(email, _password(password), role)
    finally:
        store.close()
    if json:
        _print_json(user.to_dict())
    else:
        out.print(f"Created {user.email} ({user.role}).")


@users_app.command("list")
@edge
def list_users(data_dir: DataDir = None, store_url: StoreOpt = None, json: Json = False) -> None:
    """The dashboard's users."""
    store = _open(data_dir, store_url)
    try:
        users = store.accounts.users()
    finally:
        store.close()
    if json:
        _print_json([u.to_dict() for u in users])
        return
    table = Table("Email", "Role", "Created")
    for u in users:
        table.add_row(u.email, u.role, u.created_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table)


@users_app.command("role")
@edge
def set_role(email: Email, role: Annotated[str, typer.Option("--role", help="owner, analyst or viewer.")],
             data_dir: DataDir = None, store_url: StoreOpt = None) -> None:  # fmt: skip
    """Change a user's role (the last owner stays an owner)."""
    store = _open(data_dir, store_url)
    try:
        user = store.accounts.set_role(email, role)
    finally:
        store.close()
    out.print(f"{user.email} is now {user.role}.")


@users_app.command("password")
@edge
def set_password(email: Email, password: Password = None, data_dir: DataDir = None, store_url: StoreOpt = None) -> None:
    """Set a user's password (signs them out everywhere)."""
    store = _open(data_dir, store_url)
    try:
        store.accounts.set_password(email, _password(password))
    finally:
        store.close()
    out.print(f"Password of {email} changed.")


@users_app.command("delete")
@edge
def delete(email: Email, data_dir: DataDir = None, store_url: StoreOpt = None) -> None:
    """Delete a user (not the last owner)."""
    store = _open(data_dir, store_url)
    try:
        store.accounts.delete_user(email)
    finally:
        store.close()
    out.print(f"Deleted {email}.")
