"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp folder, on a free
port, its unix socket in that folder. Installed by scripts/ensure-postgresql.sh.

PostgreSQL refuses to run as root: as root, the cluster is made and run as the
``postgres`` user (else ``nobody``), which owns the temp folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    raise RuntimeError(f"{name} not found: run `sh scripts/ensure-postgresql.sh` (make test does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int
    user: str | None  # the OS user it runs as (None: this process's)
    fsync: bool = False  # the tests kill processes, not the machine; benchmarks turn it on
    _databases: int = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}\n{tail}")

    @classmethod
    def start(cls, *, fsync: bool = False) -> PostgresServer:
        folder = Path(tempfile.mkdtemp(prefix="labdevices-pg-"))
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                user, entry = "nobody", pwd.getpwnam("nobody")
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = cls(folder, _free_port(), user, fsync)
        data = folder / "data"
        server._run(
            _bin("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        server.pg_ctl("start")
        return server

    def pg_ctl(self, action: str, *, mode: str = "fast") -> None:
        """start (waits until it accepts connections), stop or restart the server."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            f" -c max_connections=200 -c fsync={'on' if self.fsync else 'off'}"
        )
        argv = [_bin("pg_ctl"), "-D", str(self.folder / "data"), "-w", "-t", "60"]
        if action == "stop":
            self._run(*argv, "-m", mode, "stop")
        else:
            self._run(*argv, "-o", options, "-l", str(self.folder / "server.log"), action)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would (its children exit when it dies)."""
        pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)

    def create_database(self) -> str:
        self._databases += 1
        name = f"lab{os.getpid()}_{self._databases}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", mode="immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
