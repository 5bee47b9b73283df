"""`labdevices users …` on a store file: the first admin, then changes by an admin who proves
their password, each audited with who and why; a non-admin and a wrong password are refused."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from labdevices.store import SqliteDatabase

ADMIN_PW = "correct horse 1234"
ALICE_PW = "blue fish swims 42"


async def cli(*args: str, stdin: str = "") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labdevices",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if k != "LABDEVICES_PASSWORD"},
            "COLUMNS": "200",
        },
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_user_administration_is_authenticated_and_audited(tmp_path: Path) -> None:
    db = str(tmp_path / "lab.db")
    # The first user of an empty registry must be an admin; no --by needed.
    code, out = await cli(
        "users",
        "add",
        "bob",
        "--name",
        "Bob",
        "--role",
        "operator",
        "--reason",
        "x",
        "--db",
        db,
        stdin=ALICE_PW + "\n",
    )
    assert code != 0 and "no admin yet" in out
    code, out = await cli(
        "users",
        "add",
        "ada",
        "--name",
        "Ada Admin",
        "--role",
        "admin",
        "--reason",
        "first admin",
        "--db",
        db,
        stdin=ADMIN_PW + "\n",
    )
    assert code == 0, out
    # From now on: --by an admin, with her password, and a reason.
    code, out = await cli(
        "users",
        "add",
        "alice",
        "--name",
        "Alice Smith",
        "--role",
        "operator",
        "--reason",
        "new operator",
        "--db",
        db,
    )
    assert code != 0 and "--by" in out
    code, out = await cli(
        "users",
        "add",
        "alice",
        "--name",
        "Alice Smith",
        "--role",
        "operator",
        "--by",
        "ada",
        "--reason",
        "new operator",
        "--db",
        db,
        stdin=f"{ADMIN_PW}\n{ALICE_PW}\n",
    )
    assert code == 0, out
    code, out = await cli(
        "users",
        "roles",
        "alice",
        "--role",
        "viewer",
        "--by",
        "alice",
        "--reason",
        "more power",
        "--db",
        db,
        stdin=ALICE_PW + "\n",
    )
    assert code == 2 and "may not manage users" in out
    code, out = await cli(
        "users",
        "deactivate",
        "alice",
        "--by",
        "ada",
        "--reason",
        "x",
        "--db",
        db,
        stdin="wrong password!!\n",
    )
    assert code == 2 and "wrong user name or password" in out
    code, out = await cli(
        "users",
        "roles",
        "alice",
        "--role",
        "supervisor",
        "--by",
        "ada",
        "--reason",
        "trained for release",
        "--db",
        db,
        stdin=ADMIN_PW + "\n",
    )
    assert code == 0, out
    code, out = await cli(
        "users",
        "reset-password",
        "alice",
        "--by",
        "ada",
        "--reason",
        "forgotten",
        "--db",
        db,
        stdin=f"{ADMIN_PW}\nnew password 9876\n",
    )
    assert code == 0, out
    code, out = await cli(
        "users",
        "deactivate",
        "alice",
        "--by",
        "ada",
        "--reason",
        "left the lab",
        "--db",
        db,
        stdin=ADMIN_PW + "\n",
    )
    assert code == 0, out
    code, out = await cli("users", "list", "--json", "--db", db)
    assert code == 0, out
    listed = {u["user"]: u for u in json.loads(out)}
    assert listed["alice"]["active"] is False and listed["alice"]["roles"] == ["supervisor"]

    with SqliteDatabase(db, readonly=True) as store:
        records = store.audit_records(object="user/alice")
        assert store.verify().ok
    changes = [(r.actor, r.action, r.reason) for r in records if r.action != "user.login_failed"]
    assert changes == [
        ("ada", "user.add", "new operator"),
        ("ada", "user.roles", "trained for release"),
        ("ada", "user.password", "forgotten"),
        ("ada", "user.deactivate", "left the lab"),
    ]
    assert all(ALICE_PW not in (r.new or "") for r in records)


async def test_the_daemon_config_s_password_policy_applies_to_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'site = "lab"\n[store]\npath = "{tmp_path / "lab.db"}"\n[auth]\npassword_min_length = 20\n'
    )
    code, out = await cli(
        "users",
        "add",
        "ada",
        "--name",
        "Ada",
        "--role",
        "admin",
        "--reason",
        "first admin",
        "-c",
        str(config),
        stdin=ADMIN_PW + "\n",
    )
    assert code == 2 and "at least 20 characters" in out, out
    code, out = await cli(
        "users",
        "add",
        "ada",
        "--name",
        "Ada",
        "--role",
        "admin",
        "--reason",
        "first admin",
        "-c",
        str(config),
        stdin="a much longer pass phrase\n",
    )
    assert code == 0, out
