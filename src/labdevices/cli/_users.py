"""``labdevices users …`` (the user registry, on the store file) and ``login``/``logout``/``whoami``.

User administration works on the store file directly (``--db``), so it needs no running
daemon and works before the first one starts: the acting admin is named with ``--by`` and
proves it with their password; every change states ``--reason`` and is audited with both.
The very first admin of an empty registry is added without ``--by`` (audited as
``bootstrap:<os user>``). Sessions are the daemon's: ``login`` asks the daemon over MQTT and
keeps the session in ``$XDG_CONFIG_HOME/labdevices/sessions/<site>.json`` (0600).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import Forbidden, LabDeviceError
from ..store import SqliteDatabase, StoreError, open_database
from . import app, err_console
from ._output import Table, stdout_console
from ._reach import (
    BrokerOption,
    CaOption,
    SessionOption,
    SiteOption,
    Target,
    UserOption,
    new_client,
    reach,
    resolve_target,
)
from ._store import DbOption, store_location

if TYPE_CHECKING:
    from ..client import LabClient

__all__ = [
    "DEMO_USERS",
    "client_options",
    "create_demo_users",
    "open_client",
    "read_secret",
]

console = stdout_console()
users_app = typer.Typer(
    help="The user registry: add, list, deactivate, reset passwords, set roles (audited).",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        help="daemon config: its [store] and [auth] password policy (instead of --store)",
    ),
]
ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        envvar="LABDEVICES_USER",
        help="the admin making the change (asked for their password)",
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="why (required, audited)")]


def read_secret(prompt: str, *, env: bool = True) -> str:
    """A password: from the terminal without echo, or one line of stdin when it is not a terminal
    (scripts, tests). ``$LABDEVICES_PASSWORD`` is used if set (service accounts' scripts)."""
    from_env = os.environ.get("LABDEVICES_PASSWORD") if env else None
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise typer.BadParameter(f"{prompt.strip()} expected on stdin")
    return line.rstrip("\r\n")


def _new_password(user: str) -> str:
    first = read_secret(f"new password for {user}: ", env=False)
    if sys.stdin.isatty() and getpass.getpass("again: ") != first:
        raise typer.BadParameter("the two passwords differ")
    return first


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (StoreError, LabDeviceError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _admin(db: SqliteDatabase, by: str | None, *, target: str | None = None) -> str:
    """The acting admin, authenticated by password (or a user acting on their own account)."""
    from ..auth import capabilities_of

    if by is None:
        raise typer.BadParameter("--by ADMIN is required (the admin making the change)")
    user = db.check_password(by, read_secret(f"password of {by}: "))
    if by != target and "users.manage" not in capabilities_of(user.roles):
        raise Forbidden(
            f"user {by!r} (roles: {', '.join(user.roles) or 'none'}) may not manage users"
        )
    return by


def _open(db: str | None, config: Path | None) -> SqliteDatabase:
    """The store, with the daemon config's password policy when a config is given (else the
    defaults: a site that changes [auth] passes its config, so that both apply the same)."""
    if config is None:
        return open_database(store_location(db))
    from ..daemon import load_config

    loaded = load_config(config)
    return open_database(
        db or loaded.config.store.location, auth_policy=loaded.config.auth.policy()
    )


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


@users_app.command("add")
def users_add(
    user: Annotated[str, typer.Argument(help="user id: lower case, never reused")],
    name: Annotated[str, typer.Option("--name", help="full name (printed on signatures)")],
    role: Annotated[list[str], typer.Option("--role", help="viewer, operator, supervisor, admin")],
    reason: ReasonOption,
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
    service: Annotated[
        bool, typer.Option("--service", help="a script's account: its password does not age")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="no password yet (set one with reset-password)")
    ] = False,
) -> None:
    """Register a user (the first admin of an empty registry needs no --by)."""
    with _errors(), _open(db, config) as store:
        admins = [u for u in store.list_users(include_inactive=False) if "admin" in u.roles]
        if admins:
            actor = _admin(store, by)
        else:
            if "admin" not in role:
                raise typer.BadParameter(
                    "the registry has no admin yet: add one first (--role admin)"
                )
            actor = f"bootstrap:{getpass.getuser()}"
        password = None if no_password else _new_password(user)
        added = store.add_user(
            user, name, role, by=actor, reason=reason, password=password, service=service
        )
    console.print(f"added {added.id} ({added.full_name}), roles {', '.join(added.roles)}")


@users_app.command("list")
def users_list(
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every user ever registered (deactivated ones too: ids are never reused)."""
    with _errors(), _open(db, config) as store:
        users = store.list_users()
        policy = store.auth_policy
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "user": u.id,
                        "full_name": u.full_name,
                        "roles": list(u.roles),
                        "active": u.active,
                        "service": u.service,
                        "password_expires_at": u.password_expires_at(policy),
                        "locked_until": u.locked_until,
                    }
                    for u in users
                ],
                indent=2,
            )
        )
        return
    table = Table("user", "full name", "roles", "active", "password expires", "locked until")
    for u in users:
        table.add_row(
            u.id + (" (service)" if u.service else ""),
            u.full_name,
            ", ".join(u.roles),
            "yes" if u.active else f"no (since {_when(u.deactivated_at)})",
            _when(u.password_expires_at(policy)) if u.has_password else "no password",
            _when(u.locked_until),
        )
    console.print(table)


@users_app.command("deactivate")
def users_deactivate(
    user: str,
    reason: ReasonOption,
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
) -> None:
    """Deactivate a user for good (no more logins, sessions revoked; the id is never reused)."""
    with _errors(), _open(db, config) as store:
        done = store.deactivate_user(user, by=_admin(store, by), reason=reason)
    console.print(f"deactivated {done.id}")


@users_app.command("reset-password")
def users_reset_password(
    user: str,
    reason: ReasonOption,
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
) -> None:
    """Set a new password (an admin for anyone; a user for themselves, even when expired).
    Unlocks the account and revokes its sessions."""
    with _errors(), _open(db, config) as store:
        if by == user:
            old = read_secret(f"current password of {user}: ")
            store.change_password(user, old, _new_password(user))
        else:
            actor = _admin(store, by)
            store.set_password(user, _new_password(user), by=actor, reason=reason)
    console.print(f"password of {user} set")


@users_app.command("roles")
def users_roles(
    user: str,
    role: Annotated[list[str], typer.Option("--role", help="the user's roles from now on")],
    reason: ReasonOption,
    db: DbOption = None,
    config: ConfigOption = None,
    by: ByOption = None,
) -> None:
    """Replace a user's roles."""
    with _errors(), _open(db, config) as store:
        done = store.set_roles(user, role, by=_admin(store, by), reason=reason)
    console.print(f"{done.id}: roles {', '.join(done.roles)}")


# ---- sessions ----------------------------------------------------------------------------


def client_options(
    target: Target, user: str | None, session_file: Path | None, ca_file: Path | None
) -> dict[str, Any]:
    """``LabClient`` arguments for a CLI command: ``--user`` (password asked) or the session file."""
    from ..client import default_session_path

    options: dict[str, Any] = {"ca_file": ca_file}
    if user is not None:
        options["user"] = user
        options["password"] = read_secret(f"password of {user}: ")
    else:
        options["session_file"] = session_file or default_session_path(target.site)
    return options


def open_client(
    broker: str | None,
    site: str | None,
    user: str | None = None,
    session_file: Path | None = None,
    ca_file: Path | None = None,
) -> AbstractAsyncContextManager[LabClient]:
    """The client of a CLI command, entered by ``async with``: it finds the daemon (``--broker``,
    ``$LABDEVICES_BROKER``, the daemon's runtime file) or says within 5 s that it cannot."""
    target = resolve_target(broker, site)
    return reach(new_client(target, **client_options(target, user, session_file, ca_file)), target)


@app.command("login")
def login(
    user: Annotated[str, typer.Option("--user", envvar="LABDEVICES_USER", help="who logs in")],
    broker: BrokerOption = None,
    site: SiteOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Log in to the daemon: keeps an expiring session (never the password) for the other commands."""
    from ..client import default_session_path

    with _errors():
        target = resolve_target(broker, site)
    password = read_secret(f"password of {user}: ")

    async def run() -> Any:
        client = new_client(target, user=user, password=password, ca_file=ca_file)
        async with reach(client, target) as lab:
            assert lab.session is not None
            return lab.session

    with _errors():
        session = asyncio.run(run())
    path = session.save(session_file or default_session_path(target.site))
    console.print(
        f"logged in as {session.user} ({', '.join(session.roles) or 'no roles'}) on site "
        f"{target.site!r} at {target.broker} until {_when(session.expires_at)}; session in {path}",
        highlight=False,
    )


@app.command("logout")
def logout(
    broker: BrokerOption = None,
    site: SiteOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """End the session at the daemon and remove the session file."""
    from ..client import default_session_path

    with _errors():
        target = resolve_target(broker, site)
    path = session_file or default_session_path(target.site)

    async def run() -> None:
        async with open_client(target.broker, target.site, None, path, ca_file) as lab:
            await lab.logout()

    with _errors():
        asyncio.run(run())
    path.unlink(missing_ok=True)
    console.print("logged out")


@app.command("whoami")
def whoami(
    broker: BrokerOption = None,
    site: SiteOption = None,
    user: UserOption = None,
    session_file: SessionOption = None,
    ca_file: CaOption = None,
) -> None:
    """Who the daemon sees behind this session: user, full name, roles, session expiry."""

    async def run() -> dict[str, Any]:
        async with open_client(broker, site, user, session_file, ca_file) as lab:
            return await lab.whoami()

    with _errors():
        info = asyncio.run(run())
    console.print(
        f"{info['user']} ({info['full_name']}), roles {', '.join(info['roles']) or 'none'}, "
        f"session until {_when(info.get('expires_at'))}",
        highlight=False,
    )


# ---- the demo's users --------------------------------------------------------------------

#: the demo lab's people: user id → (full name, roles)
DEMO_USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "demo-admin": ("Ada Admin (demo)", ("admin",)),
    # the GMP flow of `labdevices demo`: olivia submits, sam releases (two-person rule)
    "olivia": ("Olivia Operator", ("operator",)),
    "sam": ("Sam Supervisor", ("supervisor",)),
    "demo-viewer": ("Victor Viewer (demo)", ("viewer",)),
}


def create_demo_users(db_path: str | Path) -> dict[str, str]:
    """Register the demo's users in a (fresh) store with random passwords; user → password.

    Audited as added by ``bootstrap:demo``. A store that has them already keeps them (their
    passwords are then reset to new random ones, audited).
    """
    passwords: dict[str, str] = {}
    with open_database(db_path) as store:
        for user, (name, roles) in DEMO_USERS.items():
            password = secrets.token_urlsafe(18)
            if store.find_user(user) is None:
                store.add_user(
                    user, name, roles, by="bootstrap:demo", reason="demo lab", password=password
                )
            else:
                store.set_password(user, password, by="bootstrap:demo", reason="demo run")
            passwords[user] = password
    return passwords
