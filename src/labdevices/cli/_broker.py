"""``labdevices broker-config``: Mosquitto's password file and ACL, written from the user registry.

Only the daemon's account may publish state, telemetry, alarms, job events, replies and
checkpoints; each user may publish requests and read the public topics and its own inboxes
(``auth/_acl.py``). Regenerate after adding, deactivating or re-passwording users, then
reload Mosquitto (SIGHUP).
"""

from __future__ import annotations

import getpass
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ..auth import DEFAULT_DAEMON_ACCOUNT, BrokerRules
from ..store import mosquitto_hash, open_database
from . import app
from ._output import stdout_console
from ._store import DbOption, store_location

__all__ = ["write_broker_config"]


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_broker_config(
    db: str | Path, out: Path, daemon: str = DEFAULT_DAEMON_ACCOUNT
) -> dict[str, Path]:
    """Write ``passwd``, ``acl``, ``daemon-password`` (0600) and ``mosquitto.conf`` into ``out``.

    The daemon's password is new on every run (only its hash goes into ``passwd``).
    Deactivated users and users without a password get no broker account.
    """
    with open_database(db) as store:
        users = store.broker_credentials()
        if store.find_user(daemon) is not None:
            raise typer.BadParameter(f"{daemon!r} is a user id; choose another --daemon-user")
        store.audit(
            f"cli:{getpass.getuser()}",
            "broker.config",
            f"broker/{out}",
            new={"daemon": daemon, "users": [u for u, _ in users]},
            reason="labdevices broker-config",
        )
    out.mkdir(parents=True, exist_ok=True)
    daemon_password = secrets.token_urlsafe(32)
    entries = [(daemon, mosquitto_hash(daemon_password)), *users]
    files = {
        "passwd": out / "passwd",
        "acl": out / "acl",
        "daemon-password": out / "daemon-password",
        "mosquitto.conf": out / "mosquitto.conf",
    }
    _write(files["passwd"], "".join(f"{u}:{h}\n" for u, h in entries), 0o600)
    _write(files["acl"], BrokerRules(daemon).mosquitto_acl(u for u, _ in users), 0o644)
    _write(files["daemon-password"], daemon_password + "\n", 0o600)
    _write(
        files["mosquitto.conf"],
        "# include from the broker's config (with a TLS listener: mqtts://)\n"
        "allow_anonymous false\n"
        f"password_file {files['passwd'].resolve()}\n"
        f"acl_file {files['acl'].resolve()}\n",
        0o644,
    )
    return files


@app.command("broker-config")
def broker_config(
    out: Annotated[Path, typer.Option("-o", "--out", help="folder to write the files into")],
    db: DbOption = None,
    daemon_user: Annotated[
        str, typer.Option("--daemon-user", help="the daemon's broker account")
    ] = DEFAULT_DAEMON_ACCOUNT,
) -> None:
    """Write Mosquitto's password file and ACL from the user registry (only the daemon speaks)."""
    files = write_broker_config(store_location(db), out, daemon_user)
    console = stdout_console()
    console.print(f"wrote {', '.join(str(p) for p in files.values())}", highlight=False)
    console.print("daemon config:", highlight=False)
    print(
        f'[bus]\nusername = "{daemon_user}"\npassword_file = "{files["daemon-password"].resolve()}"'
    )
