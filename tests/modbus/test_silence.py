"""Silence and late answers (issue #13, items 1 and 2), against real servers.

A peer that accepts the connection and never answers must make the device
offline within its timeout budget and keep it offline until it answers; a late
answer to a timed-out request must never be taken for the next request's, also
from pymodbus's own TCP server, which stamps it with the newest transaction id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from labdevices.client import LabClient
from labdevices.daemon import (
    BusConfig,
    Daemon,
    DaemonConfig,
    DeviceConfig,
    InterlockConfig,
    StoreConfig,
    check_config,
)
from labdevices.devices import DeviceState, Sample
from labdevices.devices.modbus import ModbusDevice
from labdevices.errors import DeviceTimeoutError
from labdevices.profiles import ModbusProfile, load_profile
from labdevices.testing._auth import issue_session
from labdevices.testing._modbus import ModbusSim
from labdevices.testing._mqtt import MosquittoBroker

ROOT = Path(__file__).resolve().parents[2]

WAIT_S = 10.0  # an upper bound on waiting for an event, never a delay


def fast(profile: ModbusProfile, **connection: object) -> ModbusProfile:
    conn = profile.connection.model_copy(
        update={
            "timeout_s": 0.1,
            "retries": 1,
            "timeouts_before_reconnect": 3,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.2,
            **connection,
        }
    )
    return profile.model_copy(update={"connection": conn})


def budget_s(profile: ModbusProfile) -> float:
    """How long a device may stay silent before it is offline."""
    c = profile.connection
    return c.timeouts_before_reconnect * c.timeout_s * (1 + c.retries)


class SilentPeer:
    """A TCP server that accepts every connection, reads what is sent and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while data := await reader.read(4096):
            self.received += len(data)
        writer.close()


@pytest.fixture
async def silent_peer() -> AsyncIterator[tuple[SilentPeer, int]]:
    peer = SilentPeer()
    server = await asyncio.start_server(peer._client, "127.0.0.1", 0)
    try:
        yield peer, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in peer._writers:
            writer.transport.abort()
        await server.wait_closed()


async def test_silent_tcp_peer_is_offline_within_the_timeout_budget(
    silent_peer: tuple[SilentPeer, int],
) -> None:
    peer, port = silent_peer
    profile = fast(load_profile("co2-incubator"))  # type: ignore[arg-type]
    states: list[tuple[float, DeviceState]] = []
    dev = ModbusDevice(
        "incubator-4", profile, f"tcp://127.0.0.1:{port}?unit=1", poll_interval_s=0.05
    )
    dev.on_state_change(lambda _old, new: states.append((time.monotonic(), new)))
    async with dev, dev.subscribe() as q:
        opened = time.monotonic()
        async with asyncio.timeout(WAIT_S):
            await dev.wait_for_state(DeviceState.OFFLINE)
        took = time.monotonic() - opened
        assert took < 2 * budget_s(profile) + 0.5, f"offline only after {took:.2f} s"
        # Never a value: no good sample, every sample says why.
        seen: list[Sample] = []
        async with asyncio.timeout(WAIT_S):
            while len(seen) < 30:
                seen.append(await q.get())
        assert {s.quality for s in seen} == {"bad"}
        assert all(s.value is None for s in seen)
        assert "offline: 3 requests in a row unanswered" in (seen[-1].reason or "")
        # The socket is reopened (the peer accepts again), yet the device stays offline.
        connections = peer.connections
        async with asyncio.timeout(WAIT_S):
            while peer.connections < connections + 2:
                await q.get()
        assert dev.state == DeviceState.OFFLINE
    assert DeviceState.IDLE not in [s for t, s in states if t > opened + took]


async def test_silence_then_answers_again_offline_then_idle(
    modbus_sim: Callable[..., Any],
) -> None:
    running: ModbusSim = await modbus_sim("incubator")
    profile = fast(running.profile)
    async with (
        ModbusDevice("inc", profile, running.address, poll_interval_s=0.05) as dev,
        dev.subscribe() as q,
    ):
        good = [s async for s in _take(q, lambda s: s.signal == "co2" and s.quality == "good")]
        running.sim.faults.timeout_rate = 1.0  # the connection stays open, nothing is answered
        async with asyncio.timeout(WAIT_S):
            await dev.wait_for_state(DeviceState.OFFLINE)
        stale = [s async for s in _take(q, lambda s: s.signal == "co2" and s.quality == "stale")]
        assert stale[0].value == good[0].value  # the last good value, marked stale
        running.sim.faults.clear()
        async with asyncio.timeout(WAIT_S):
            await dev.wait_for_state(DeviceState.IDLE)
        assert [s async for s in _take(q, lambda s: s.signal == "co2" and s.quality == "good")]


async def test_silent_rtu_device_is_offline_and_the_bus_stays_open(
    modbus_sim: Callable[..., Any],
) -> None:
    running: ModbusSim = await modbus_sim("bioreactor", units=(1, 2))
    profile = fast(running.profile, timeout_s=0.1, retries=0)
    a = ModbusDevice("vessel-a", profile, running.address_for(1), poll_interval_s=0.05)
    b = ModbusDevice("vessel-b", profile, running.address_for(5), poll_interval_s=0.05)
    async with a, b, a.subscribe() as qa:
        # unit 5 is not on the bus: nobody answers it
        async with asyncio.timeout(WAIT_S):
            await b.wait_for_state(DeviceState.OFFLINE)
        assert a.link is b.link and a.link.connected
        assert [s async for s in _take(qa, lambda s: s.signal == "ph" and s.quality == "good")]
        assert a.state == DeviceState.IDLE


async def test_silent_unit_behind_a_gateway_leaves_the_others_alone() -> None:
    """One unit behind a TCP gateway stops answering: it goes offline, its neighbour never
    notices (the shared socket is not dropped), and it comes back when it answers."""
    from labdevices.sim.bioreactor import bioreactor_simulator

    sim = bioreactor_simulator(units=(1, 2))
    port = await sim.serve_tcp()
    try:
        profile = fast(sim.units[1].profile)
        a = ModbusDevice(
            "vessel-a", profile, f"tcp://127.0.0.1:{port}?unit=1", poll_interval_s=0.05
        )
        b = ModbusDevice(
            "vessel-b", profile, f"tcp://127.0.0.1:{port}?unit=2", poll_interval_s=0.05
        )
        a_states: list[DeviceState] = []
        a.on_state_change(lambda _old, new: a_states.append(new))
        async with a, b, a.subscribe() as qa:
            a_states.clear()  # entered: connecting, idle
            sim.silent_units.add(2)
            async with asyncio.timeout(WAIT_S):
                await b.wait_for_state(DeviceState.OFFLINE)
            for _ in range(3):  # a is read on, across b's timeouts
                assert [
                    s async for s in _take(qa, lambda s: s.signal == "ph" and s.quality == "good")
                ]
            sim.silent_units.clear()
            async with asyncio.timeout(WAIT_S):
                await b.wait_for_state(DeviceState.IDLE)
            assert a.state == DeviceState.IDLE and a_states == []
            assert a.link is b.link and a.link.resets >= 3
    finally:
        await sim.stop()


async def _take(q: asyncio.Queue[Sample], pred: Callable[[Sample], bool]) -> AsyncIterator[Sample]:
    """The first sample that meets ``pred`` (as an async iterator of one, for comprehensions)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            s = await q.get()
            if pred(s):
                yield s
                return


# -- late answers -------------------------------------------------------------------------


class LateFirstAnswer:
    """A datastore for pymodbus's own server: the first request is answered only once the
    next one has arrived (a busy device), on whichever connection it came in."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.held = False
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        if not self.held:
            self.held = True
            await self.release.wait()
        else:
            self.release.set()
        return await self.inner.async_getValues(device_id, func_code, address, count)


@pytest.fixture
async def pymodbus_server() -> AsyncIterator[tuple[LateFirstAnswer, int]]:
    """pymodbus's ModbusTcpServer; holding register n holds 1000 + n."""
    device = SimDevice(
        id=1,
        simdata=[SimData(0, values=[1000 + n for n in range(200)], datatype=DataType.REGISTERS)],
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    late = LateFirstAnswer(server.context)
    server.context = late
    await server.serve_forever(background=True)
    assert server.transport is not None
    port = server.transport.sockets[0].getsockname()[1]
    try:
        yield late, port
    finally:
        late.release.set()
        await server.shutdown()


@pytest.mark.parametrize("retries", [0, 1])
async def test_late_answer_from_pymodbus_server_is_not_taken_for_the_next(
    pymodbus_server: tuple[LateFirstAnswer, int], retries: int
) -> None:
    late, port = pymodbus_server
    profile = fast(load_profile("co2-incubator"), timeout_s=0.2, retries=retries)  # type: ignore[arg-type]
    async with ModbusDevice("inc", profile, f"tcp://127.0.0.1:{port}?unit=1", poll=False) as dev:
        if retries == 0:
            with pytest.raises(DeviceTimeoutError, match=r"^inc: reading 1 holding at 100"):
                await dev.read("temperature_setpoint")
        else:
            # the retry goes out on a new connection; the late answer lands on the old one
            assert (await dev.read("temperature_setpoint")).value == pytest.approx(11.0)
        assert late.held
        # Same function code and count: register 100's late answer (raw 1100) must not pass for 101's.
        sample = await dev.read("co2_setpoint")
        assert (sample.value, sample.quality) == (pytest.approx(11.01), "good")
        assert dev.link.resets == 1


# -- the daemon: the offline interlock raises its alarm ----------------------------------


async def test_silent_peer_trips_the_daemons_offline_interlock(
    silent_peer: tuple[SilentPeer, int], mqtt_broker: MosquittoBroker, tmp_path: Path
) -> None:
    _peer, port = silent_peer
    profile = tmp_path / "incubator.toml"
    text = (ROOT / "drivers" / "co2-incubator.toml").read_text()
    profile.write_text(text.replace("timeout_s = 1.0", "timeout_s = 0.1"))
    site = f"lab-{uuid.uuid4().hex[:8]}"
    config = check_config(
        DaemonConfig(
            site=site,
            devices={
                "incubator": DeviceConfig(
                    profile=str(profile),
                    address=f"tcp://127.0.0.1:{port}?unit=1",
                    poll_interval_s=0.05,
                )
            },
            bus=BusConfig(url=mqtt_broker.url, client_id=f"daemon-{site}"),
            store=StoreConfig(path=tmp_path / "lab.db", flush_interval_s=0.1),
            interlocks=[
                InterlockConfig(
                    name="incubator-offline", device="incubator", condition="offline", hold_s=0.5
                )
            ],
            device_retry_min_s=0.05,
            device_retry_max_s=0.5,
        ),
        "test-config",
    )
    async with asyncio.timeout(30):
        async with (
            LabClient(
                mqtt_broker.url,
                site=site,
                session=issue_session(tmp_path / "lab.db", "vera", site=site, roles=["viewer"]),
            ) as lab,
            lab.alarm_events() as alarm_events,
            Daemon(config),
        ):
            raised = await anext(alarm_events)
            assert (raised.event, raised.device, raised.name) == (
                "raised",
                "incubator",
                "incubator-offline",
            )
            (device,) = [d for d in await lab.devices() if d.name == "incubator"]
            assert device.state == "offline"
