"""The Modbus driver against the simulated incubator (TCP) and bioreactor (RTU over a pty)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from labdevices.devices import DeviceState, Sample, create_device
from labdevices.devices.modbus import ModbusDevice
from labdevices.errors import (
    ConfigurationError,
    DeviceConnectionError,
    DeviceFault,
    DeviceTimeoutError,
    LimitViolation,
)
from labdevices.profiles import ModbusProfile, load_profile
from labdevices.sim.modbus import FaultPlan
from labdevices.testing._modbus import ModbusSim
from labdevices.transports._modbus import ModbusExceptionResponse

WAIT_S = 10.0  # an upper bound on waiting for an event, never a delay


def device(running: ModbusSim, name: str = "dev", **options: object) -> ModbusDevice:
    dev = create_device(name, running.profile, running.address, **options)
    assert isinstance(dev, ModbusDevice)
    return dev


def fast(profile: ModbusProfile, **connection: object) -> ModbusProfile:
    """The profile with a short timeout, for fault tests."""
    conn = profile.connection.model_copy(
        update={"timeout_s": 0.2, "retries": 0, "reconnect_min_s": 0.05, **connection}
    )
    return profile.model_copy(update={"connection": conn})


async def next_sample(q: asyncio.Queue[Sample], pred: Callable[[Sample], bool]) -> Sample:
    async with asyncio.timeout(WAIT_S):
        while True:
            s = await q.get()
            if pred(s):
                return s


# -- profiles -----------------------------------------------------------------------


def write_profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text('driver = "modbus"\n' + body)
    return path


def test_overlapping_float32_names_the_field(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        "[signals.temperature]\ntable = 'input'\naddress = 100\ntype = 'float32'\n"
        "[signals.humidity]\ntable = 'input'\naddress = 101\n",
    )
    with pytest.raises(ConfigurationError) as info:
        load_profile(path)
    text = str(info.value)
    assert str(path) in text
    assert "signals: humidity.address = 101" in text
    assert "temperature (float32 at 100–101)" in text


def test_every_overlap_is_reported_beside_the_other_problems(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        "[signals.temperature]\ntable = 'input'\naddress = 100\ntype = 'float32'\n"
        "[signals.humidity]\ntable = 'input'\naddress = 101\n"
        "[signals.co2]\ntable = 'input'\naddress = 99\ntype = 'float32'\n"
        "[signals.setpoint]\naddress = 100\n"  # holding 100: another table, no overlap
        "[signals.pump]\ntable = 'coil'\naddress = 4\n"
        "[signals.valve]\ntable = 'coil'\naddress = 4\n"
        "[signals.bad]\ntable = 'input'\naddress = 7\nwritable = true\n"
        "[signals.wide]\naddress = 1\nscale = 0.1\nmax = 7000\n",
    )
    with pytest.raises(ConfigurationError) as info:
        load_profile(path)
    problems = info.value.problems
    assert len(problems) == 5, problems
    assert [p.split(": ", 2)[1] for p in problems] == [
        "signals.bad.table",
        "signals.wide",
        "signals",
        "signals",
        "signals",
    ]
    text = "\n".join(problems)
    assert "humidity.address = 101: input register 101 is already used by temperature" in text
    assert "co2.address = 99: input register 100 is already used by temperature" in text
    assert "valve.address = 4: coil 4 is already used by pump (bool at 4–4)" in text
    assert "setpoint" not in text
    assert "range 0 … 6553.5" in text  # the limit message, with its numbers filled in
    assert "read-only" in text


def test_valid_profile_has_no_false_overlaps() -> None:
    for name in ("co2-incubator", "stirred-tank-bioreactor"):
        profile = load_profile(name)
        assert isinstance(profile, ModbusProfile) and profile.signals


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ("table = 'input'\naddress = 3\nwritable = true\n", "signals.x.table", "read-only"),
        ("address = 65535\ntype = 'uint32'\n", "signals.x.address", "past the last address"),
        ("table = 'coil'\naddress = 1\ntype = 'int16'\n", "signals.x.type", "must be 'bool'"),
        ("address = 1\nscale = 0.1\nmax = 7000\n", "signals.x", "max = 7000"),
        ("address = 70000\n", "signals.x.address", "less than or equal to 65535"),
    ],
)
def test_profile_errors_name_the_field(tmp_path: Path, body: str, field: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_profile(write_profile(tmp_path, "[signals.x]\n" + body))
    assert f": {field}: " in str(info.value)
    assert words in str(info.value)


def test_bad_address_names_the_device() -> None:
    profile = load_profile("co2-incubator")
    with pytest.raises(
        ConfigurationError, match=r"incubator-3: bad Modbus address .*unknown scheme"
    ):
        create_device("incubator-3", profile, "udp://127.0.0.1:502")


# -- a third-party client reads what the profile says --------------------------------


async def test_pymodbus_client_reads_incubator_per_profile(modbus_incubator: ModbusSim) -> None:
    sim, profile = modbus_incubator.sim, modbus_incubator.profile
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, reconnect_delay=0)
    assert await client.connect()
    try:
        rr = await client.read_input_registers(0, count=9, device_id=1)
        temperature = client.convert_from_registers(rr.registers[0:1], client.DATATYPE.INT16) / 100
        co2 = client.convert_from_registers(rr.registers[2:4], client.DATATYPE.FLOAT32)
        assert temperature == pytest.approx(sim.value("chamber_temperature"), abs=0.2)
        assert co2 == pytest.approx(sim.value("co2"), abs=0.05)
        assert rr.registers[1] / 10 == pytest.approx(sim.value("humidity"), abs=1.0)
        hr = await client.read_holding_registers(100, count=4, device_id=1)
        assert hr.registers == [3700, 500, 10, 60]
        bits = await client.read_discrete_inputs(0, count=2, device_id=1)
        assert bits.bits[:2] == [False, False]  # door closed, no alarm
        await client.write_register(101, 650, device_id=1)  # co2_setpoint 6.5 %
        assert sim.value("co2_setpoint") == pytest.approx(6.5)
        bits = await client.read_discrete_inputs(0, count=2, device_id=1)
        assert bits.bits[:2] == [False, True]  # CO2 now more than 1 % below its setpoint
        # An address the profile does not name does not exist on the device.
        missing = await client.read_input_registers(9, count=1, device_id=1)
        assert missing.isError() and missing.exception_code == 2
        # Writes outside the profile's limits are refused by the device too.
        refused = await client.write_register(100, 5000, device_id=1)
        assert refused.isError() and refused.exception_code == 3
    finally:
        client.close()
    assert profile.signals["co2_setpoint"].address == 101


async def test_pymodbus_client_reads_bioreactor_over_rtu(modbus_bioreactor: ModbusSim) -> None:
    client = AsyncModbusSerialClient(
        modbus_bioreactor.sim.pty_path, baudrate=19200, timeout=1, reconnect_delay=0
    )
    assert await client.connect()
    try:
        rr = await client.read_input_registers(0, count=10, device_id=1)
        assert rr.registers[1] / 1000 == pytest.approx(7.2, abs=0.05)  # pH
        cells = client.convert_from_registers(rr.registers[5:7], client.DATATYPE.FLOAT32)
        assert cells == pytest.approx(0.5, rel=0.05)
    finally:
        client.close()


# -- reads, block reads, writes -----------------------------------------------------------


async def test_snapshot_reads_each_table_in_one_request(modbus_incubator: ModbusSim) -> None:
    sim = modbus_incubator.sim
    async with device(modbus_incubator, poll=False) as dev:
        before = sim.request_count()
        snap = await dev.snapshot()
        assert sim.request_count() - before == 4  # input, holding, coil, discrete blocks
        assert dev.link.requests == 4
    assert set(snap) == set(modbus_incubator.profile.signals)
    assert all(s.quality == "good" for s in snap.values())
    assert snap["chamber_temperature"].value == pytest.approx(37.0, abs=0.3)
    assert snap["uptime"].value == int(snap["uptime"].value or 0)
    assert snap["heater_enable"].value is True


async def test_blocks_respect_the_request_limit_and_gaps(modbus_incubator: ModbusSim) -> None:
    profile = modbus_incubator.profile
    conn = profile.connection.model_copy(update={"max_registers_per_request": 4})
    small = profile.model_copy(update={"connection": conn})
    sim = modbus_incubator.sim
    async with ModbusDevice("dev", small, modbus_incubator.address, poll=False) as dev:
        before = sim.request_count(function_code=4)
        snap = await dev.snapshot()
        # input registers 0..8 in blocks of at most 4 without splitting the float32 at 2–3
        assert sim.request_count(function_code=4) - before == 3
    assert all(s.quality == "good" for s in snap.values())


async def test_setpoint_write_is_read_back(modbus_incubator: ModbusSim) -> None:
    sim = modbus_incubator.sim
    async with device(modbus_incubator, poll=False) as dev, dev.subscribe() as q:
        await dev.write("temperature_setpoint", 36.5)
        assert sim.value("temperature_setpoint") == pytest.approx(36.5)
        sample = q.get_nowait()
        assert (sample.signal, sample.value, sample.quality) == (
            "temperature_setpoint",
            36.5,
            "good",
        )
        await dev.write("co2_enable", False)
        assert sim.value("co2_enable") is False
        assert (await dev.read("co2_enable")).value is False


async def test_out_of_limit_setpoint_is_refused_before_the_wire(
    modbus_incubator: ModbusSim,
) -> None:
    sim = modbus_incubator.sim
    async with device(modbus_incubator, "incubator-1", poll=False) as dev:
        writes = sim.request_count(function_code=6) + sim.request_count(function_code=16)
        with pytest.raises(LimitViolation) as info:
            await dev.write("temperature_setpoint", 45.0)
        assert str(info.value) == (
            "incubator-1: temperature_setpoint = 45.0 degC is above the limit 42.0 degC"
        )
        with pytest.raises(LimitViolation, match="'chamber_temperature' is read-only"):
            await dev.write("chamber_temperature", 30.0)
        assert sim.request_count(function_code=6) + sim.request_count(function_code=16) == writes
    assert sim.value("temperature_setpoint") == pytest.approx(37.0)


# -- faults ----------------------------------------------------------------------------------


async def test_exception_response_is_a_typed_error(modbus_incubator: ModbusSim) -> None:
    modbus_incubator.sim.faults.inject("exception", arg=6)
    async with device(modbus_incubator, "incubator-1", poll=False) as dev:
        with pytest.raises(ModbusExceptionResponse) as info:
            await dev.read("co2")
        assert isinstance(info.value, DeviceFault)
        assert info.value.exception_name == "SERVER_DEVICE_BUSY"
        assert str(info.value).startswith("incubator-1: reading 2 input at 2 (unit 1)")
        assert (await dev.read("co2")).quality == "good"  # the next request is answered


async def test_polled_exception_gives_bad_samples_with_the_reason(
    modbus_incubator: ModbusSim,
) -> None:
    async with device(modbus_incubator, poll_interval_s=0.01) as dev, dev.subscribe() as q:
        await next_sample(q, lambda s: s.signal == "co2" and s.quality == "good")
        modbus_incubator.sim.faults.inject("exception", count=8, arg=4)
        bad = await next_sample(q, lambda s: s.signal == "co2" and s.quality == "bad")
        assert bad.value is None
        assert "SERVER_DEVICE_FAILURE" in (bad.reason or "")
        await next_sample(q, lambda s: s.signal == bad.signal and s.quality == "good")


async def test_no_answer_is_a_timeout_naming_the_device(modbus_sim: Callable[..., object]) -> None:
    running: ModbusSim = await modbus_sim("incubator")  # type: ignore[operator]
    running.sim.faults.inject("timeout", count=2)
    profile = fast(running.profile, retries=1)
    async with ModbusDevice("incubator-2", profile, running.address, poll=False) as dev:
        with pytest.raises(DeviceTimeoutError, match=r"^incubator-2: reading .* no answer"):
            await dev.read("chamber_temperature")
        assert running.sim.request_count() == 2  # the first try and one retry
        assert (await dev.read("chamber_temperature")).quality == "good"


async def test_slow_reply_within_and_beyond_the_timeout(modbus_sim: Callable[..., object]) -> None:
    running: ModbusSim = await modbus_sim("incubator")  # type: ignore[operator]
    profile = fast(running.profile, timeout_s=0.5)
    async with ModbusDevice("inc", profile, running.address, poll=False) as dev:
        running.sim.faults.inject("slow", arg=0.05)
        assert (await dev.read("temperature_setpoint")).value == pytest.approx(37.0)
        running.sim.faults.inject("slow", arg=0.7)
        with pytest.raises(DeviceTimeoutError):
            await dev.read("temperature_setpoint")
        # The late answer to the timed-out request must not be taken for this one's.
        assert (await dev.read("co2_setpoint")).value == pytest.approx(5.0)


async def test_stale_during_server_restart_then_reconnect(
    modbus_sim: Callable[..., object],
) -> None:
    running: ModbusSim = await modbus_sim("incubator")  # type: ignore[operator]
    profile = fast(running.profile)
    async with (
        ModbusDevice("inc", profile, running.address, poll_interval_s=0.02, seed=1) as dev,
        dev.subscribe() as q,
    ):
        good = await next_sample(q, lambda s: s.signal == "co2" and s.quality == "good")
        async with running.sim.outage():
            stale = await next_sample(q, lambda s: s.signal == "co2" and s.quality != "good")
            assert stale.quality == "stale"
            assert stale.value == good.value  # the last good value, never an invented one
            assert stale.reason
            await dev.wait_for_state(DeviceState.CONNECTING)
            with pytest.raises(DeviceConnectionError):
                await dev.read("co2")
        await next_sample(q, lambda s: s.signal == "co2" and s.quality == "good")
        assert dev.stats.reconnects >= 1
        await dev.wait_for_state(DeviceState.IDLE)


async def test_disconnect_fault_reconnects(modbus_sim: Callable[..., object]) -> None:
    running: ModbusSim = await modbus_sim("incubator", faults=FaultPlan(seed=3))  # type: ignore[operator]
    profile = fast(running.profile)
    async with (
        ModbusDevice("inc", profile, running.address, poll_interval_s=0.02) as dev,
        dev.subscribe() as q,
    ):
        # every poll group has read once, so the outage has a last value to mark stale
        good: set[str] = set()
        while len(good) < len(profile.signals):
            good.add((await next_sample(q, lambda s: s.quality == "good")).signal)
        running.sim.faults.inject("disconnect")
        await next_sample(q, lambda s: s.quality == "stale")
        await next_sample(q, lambda s: s.quality == "good")
        assert dev.stats.reconnects == 1


async def test_seeded_random_faults_never_stop_polling(modbus_sim: Callable[..., object]) -> None:
    plan = FaultPlan(seed=7, exception_rate=0.1, timeout_rate=0.05, slow_rate=0.1, slow_s=0.01)
    running: ModbusSim = await modbus_sim("incubator", faults=plan)  # type: ignore[operator]
    async with (
        ModbusDevice("inc", fast(running.profile), running.address, poll_interval_s=0) as dev,
        dev.subscribe() as q,
    ):
        qualities: set[str] = set()
        async with asyncio.timeout(WAIT_S):
            while len(qualities) < 3:
                qualities.add((await q.get()).quality)
        assert dev.stats.failures > 0
        assert dev.stats.polls > 0


# -- RTU bus ----------------------------------------------------------------------------------


async def test_two_devices_on_one_rtu_bus_never_interleave(
    modbus_sim: Callable[..., object],
) -> None:
    running: ModbusSim = await modbus_sim("bioreactor", units=(1, 2))  # type: ignore[operator]
    profile = running.profile
    a = ModbusDevice("vessel-a", profile, running.address_for(1), poll_interval_s=0)
    b = ModbusDevice("vessel-b", profile, running.address_for(2), poll_interval_s=0)
    async with a, b, a.subscribe() as qa, b.subscribe() as qb:
        assert a.link is b.link  # one serial port, one client, one lock
        for q in (qa, qb):
            for _ in range(40):
                s = await next_sample(q, lambda s: s.signal == "ph")
                assert s.quality == "good"
        await b.write("agitation", 200)
    sim = running.sim
    assert sim.garbage_frames == 0
    assert sim.request_count(unit=1) > 10 and sim.request_count(unit=2) > 10
    assert sim.value("agitation", unit=2) == 200
    assert sim.value("agitation", unit=1) == 150


async def test_two_devices_behind_one_tcp_gateway_share_the_link() -> None:
    """Two bioreactors behind one Modbus TCP gateway: one socket, their answers never mixed up."""
    from labdevices.sim.bioreactor import bioreactor_simulator

    sim = bioreactor_simulator(units=(1, 2))
    port = await sim.serve_tcp()
    try:
        profile = sim.units[1].profile
        a = ModbusDevice("vessel-a", profile, f"tcp://127.0.0.1:{port}?unit=1", poll_interval_s=0)
        b = ModbusDevice("vessel-b", profile, f"tcp://127.0.0.1:{port}?unit=2", poll_interval_s=0)
        async with a, b, a.subscribe() as qa, b.subscribe() as qb:
            assert a.link is b.link
            # writes (with their read-back) while both poll loops run
            await asyncio.gather(b.write("agitation", 200), a.write("agitation", 120))
            for q, want in ((qa, 120), (qb, 200)):
                s = await next_sample(
                    q, lambda s, want=want: s.signal == "agitation" and s.value == want
                )
                assert s.quality == "good"
            for _ in range(20):
                for q in (qa, qb):
                    assert (await next_sample(q, lambda s: True)).quality == "good"
        assert sim.request_count(unit=1) > 10 and sim.request_count(unit=2) > 10
        assert sim.value("agitation", unit=1) == 120
        assert sim.value("agitation", unit=2) == 200
    finally:
        await sim.stop()


async def test_bioreactor_feed_raises_the_level(modbus_sim: Callable[..., object]) -> None:
    running: ModbusSim = await modbus_sim("bioreactor", time_scale=3600.0)  # type: ignore[operator]
    async with device(running, "str-1", poll=False) as dev:
        await dev.write("feed_rate", 100.0)
        await dev.write("feed_pump", True)
        before = (await dev.read("volume")).value
        assert isinstance(before, float)
        # Each read is one request; the simulated hour passes in a wall-clock second.
        async with asyncio.timeout(WAIT_S):
            while (after := (await dev.read("volume")).value) == before:
                pass
        assert isinstance(after, float) and after > before
        level = (await dev.read("level")).value
        assert level == pytest.approx((await dev.read("volume")).value / 2.0 * 100.0, abs=0.6)
        with pytest.raises(
            LimitViolation, match=r"ph_setpoint = 9\.0 pH is above the limit 7\.8 pH"
        ):
            await dev.write("ph_setpoint", 9.0)


async def test_deadband_holds_back_small_changes_but_not_recovery(
    modbus_sim: Callable[..., object],
) -> None:
    running: ModbusSim = await modbus_sim("incubator")  # type: ignore[operator]
    profile = fast(running.profile)
    signals = dict(profile.signals)
    signals["chamber_temperature"] = signals["chamber_temperature"].model_copy(
        update={"deadband": 5.0}
    )
    profile = profile.model_copy(update={"signals": signals})
    async with (
        ModbusDevice("inc", profile, running.address, poll_interval_s=0.01) as dev,
        dev.subscribe() as q,
    ):
        seen: list[Sample] = []
        async with asyncio.timeout(WAIT_S):
            while sum(s.signal == "humidity" for s in seen) < 20:
                seen.append(await q.get())
        temps = [s for s in seen if s.signal == "chamber_temperature"]
        assert len(temps) == 1  # noise of 0.01 degC stays inside the 5 degC deadband
        # uptime has its own poll interval (10 s in the profile): polled once so far
        assert sum(s.signal == "uptime" for s in seen) == 1
        async with running.sim.outage():
            await next_sample(
                q, lambda s: s.signal == "chamber_temperature" and s.quality == "stale"
            )
        # Sent although inside the deadband: the value is good again.
        await next_sample(q, lambda s: s.signal == "chamber_temperature" and s.quality == "good")


async def test_rtu_late_answer_is_not_taken_for_the_next(modbus_sim: Callable[..., object]) -> None:
    running: ModbusSim = await modbus_sim("bioreactor")  # type: ignore[operator]
    profile = fast(running.profile, timeout_s=0.3)
    async with ModbusDevice("str-1", profile, running.address, poll=False) as dev:
        running.sim.faults.inject("slow", arg=0.4)
        with pytest.raises(DeviceTimeoutError, match=r"^str-1: reading 1 holding at 100"):
            await dev.read("temperature_setpoint")
        # Same function code and size: only the bus discipline keeps 37.00 degC out of agitation.
        assert (await dev.read("agitation")).value == 150


def test_register_block_decoder_matches_pymodbus_and_drops_bad_frames() -> None:
    """The link's one-call register decoder gives pymodbus's values and refuses what pymodbus refuses."""
    import struct

    from pymodbus.exceptions import ModbusIOException
    from pymodbus.pdu.register_message import ReadInputRegistersResponse

    from labdevices.transports._modbus import _InputRegisters

    values = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 1234]
    frame = bytes([2 * len(values)]) + struct.pack(f">{len(values)}H", *values)
    ours, theirs = _InputRegisters(), ReadInputRegistersResponse()
    ours.decode(frame)
    theirs.decode(frame)
    assert ours.registers == theirs.registers == values
    for bad in (frame[:-1], bytes([5]) + frame[1:6], bytes([40]) + frame[1:]):
        with pytest.raises(ModbusIOException):
            _InputRegisters().decode(bad)
