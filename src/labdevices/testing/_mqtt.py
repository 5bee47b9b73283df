"""A real Mosquitto broker on a free loopback port, for tests (see plugin.py).

``mosquitto_session`` runs one broker per test session; ``mqtt_broker`` hands
it to a test and makes sure it runs before and after, so a test that stopped it
(to test reconnects) cannot break the next one. ``bridged_brokers`` gives a test
two brokers of its own, the second bridging ``labdevices/#`` to the first. Persistence is on, in a temp
directory, so ``stop()``/``start()`` keep persistent sessions and their queued
QoS-1 messages, like a production broker restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._asyncio import async_fixture as _async_fixture

__all__ = [
    "BridgedBrokers",
    "MosquittoBroker",
    "bridged_brokers",
    "find_mosquitto",
    "mosquitto_session",
    "mqtt_broker",
]

_SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str:
    """Path of the ``mosquitto`` executable ($LABDEVICES_MOSQUITTO, PATH, then the usual sbin dirs)."""
    explicit = os.environ.get("LABDEVICES_MOSQUITTO")
    if explicit:
        return explicit
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _SEARCH:
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "mosquitto is not installed (looked in PATH and "
        + ", ".join(_SEARCH)
        + "); `make test` installs it (scripts/ensure-mosquitto.sh), "
        "or set LABDEVICES_MOSQUITTO to its path",
        pytrace=False,
    )


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    """One mosquitto process; ``stop()`` and ``start()`` restart it on the same port."""

    def __init__(
        self,
        workdir: Path,
        host: str = "127.0.0.1",
        *,
        ready_timeout_s: float = 10.0,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        bridge_to: MosquittoBroker | None = None,
    ) -> None:
        """``password_file`` and ``acl_file`` (as ``labdevices broker-config`` writes them)
        turn anonymous access off and apply them, like a production broker. ``tls`` = (CA,
        certificate, key) makes the listener TLS-only (``url`` is then ``mqtts://``).
        ``bridge_to`` (a plain broker) bridges ``labdevices/#`` both ways, QoS 1, with a
        persistent bridge session (docs/brokers.md); ``bridge_state_topic`` then holds a
        retained ``1`` while the bridge is up and ``0`` while it is down."""
        self.tls = tls is not None
        self.executable = find_mosquitto()
        self.host = host
        self.port = _free_port(host)
        self.workdir = workdir
        #: where the bridge (``bridge_to``) says whether it is up
        self.bridge_state_topic: str | None = None
        self.ready_timeout_s = ready_timeout_s
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {self.host}",
            *(
                [f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
                if tls is not None
                else []
            ),
            "allow_anonymous false" if password_file else "allow_anonymous true",
            f"password_file {password_file}" if password_file else "",
            f"acl_file {acl_file}" if acl_file else "",
            # Like a production broker for request/reply traffic: no Nagle delay on small packets.
            "set_tcp_nodelay true",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 0",
            # Room for what a persistent client misses while it is away in a test.
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            *(self._bridge_lines(bridge_to) if bridge_to is not None else []),
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # Running as root, mosquitto would switch to a 'mosquitto' user that cannot write here.
            "user root" if os.geteuid() == 0 else "",
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def _bridge_lines(self, remote: MosquittoBroker) -> list[str]:
        name = f"labdevices-bridge-{self.port}"
        self.bridge_state_topic = f"$SYS/broker/connection/{name}/state"
        return [
            f"connection {name}",
            f"address {remote.host}:{remote.port}",
            "topic labdevices/# both 1",
            "bridge_protocol_version mqttv311",
            # Mosquitto to Mosquitto: the remote does not send our own messages back (no loop).
            "try_private true",
            # Messages for the other side wait in the bridge's session while the link is down.
            "cleansession false",
            f"remote_clientid {name}",
            f"local_clientid {name}-local",
            "restart_timeout 1",
            "notifications true",
            "notifications_local_only true",
            f"notification_topic {self.bridge_state_topic}",
        ]

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and return once it accepts connections."""
        if self.running:
            return
        self._process = subprocess.Popen(
            [self.executable, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        # Readiness is a connection that succeeds: retry the connect (with a short
        # back-off between refusals) until it does or the process died.
        deadline = time.monotonic() + self.ready_timeout_s
        pause = 0.001
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                _, err = process.communicate()
                self._process = None
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(
                    f"mosquitto exited with {process.returncode} on port {self.port}:\n"
                    f"{err.decode(errors='replace')}{log[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mosquitto did not accept connections on {self.url} within {self.ready_timeout_s} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def stop(self) -> None:
        """Stop the broker as a service manager would (SIGTERM: it saves its persistence)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        else:
            process.communicate()

    def kill(self) -> None:
        """Kill the broker without letting it save anything (a crash)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.communicate()


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One Mosquitto for the whole test session; prefer ``mqtt_broker`` in tests."""
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_broker(mosquitto_session: MosquittoBroker) -> Iterator[MosquittoBroker]:
    """The session's Mosquitto, running; started again after a test that stopped it."""
    mosquitto_session.start()
    yield mosquitto_session
    mosquitto_session.start()


@dataclass(frozen=True)
class BridgedBrokers:
    """``primary`` and ``standby``; the standby's bridge carries ``labdevices/#`` both ways."""

    primary: MosquittoBroker
    standby: MosquittoBroker

    @property
    def urls(self) -> list[str]:
        """Both, the primary first: what ``[bus] url`` or ``LabClient`` takes for fail-over."""
        return [self.primary.url, self.standby.url]

    async def wait_bridged(self, timeout: float = 30.0) -> None:
        """Return once the standby's bridge is up (its state topic holds a retained ``1``)."""
        from ..bus import BusClient

        topic = self.standby.bridge_state_topic
        assert topic is not None
        async with (
            asyncio.timeout(timeout),
            BusClient(self.standby.host, self.standby.port, site="bridge-check") as bus,
            bus.subscribe(topic) as states,
        ):
            async for message in states:
                if message.payload == b"1":
                    return


@_async_fixture
async def bridged_brokers(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[BridgedBrokers]:
    """Two Mosquitto processes of this test's own, the standby bridged to the primary, the
    bridge up. Killing either (``kill()``) is the test's to do."""
    primary = MosquittoBroker(tmp_path_factory.mktemp("primary"))
    standby = MosquittoBroker(tmp_path_factory.mktemp("standby"), bridge_to=primary)
    try:
        primary.start()
        standby.start()
        brokers = BridgedBrokers(primary, standby)
        await brokers.wait_bridged()
        yield brokers
    finally:
        standby.stop()
        primary.stop()
