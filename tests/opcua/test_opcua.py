"""The OPC UA driver against the simulated sensor hub, over real OPC UA connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import Client, ua

from labdevices import ConfigurationError, LabDeviceError, LimitViolation
from labdevices.devices import DeviceState, Sample, create_device
from labdevices.devices.opcua import OpcUaDevice
from labdevices.errors import DeviceConnectionError, DeviceTimeoutError
from labdevices.profiles import OpcUaProfile, load_profile
from labdevices.sim._opcua_hub import OpcUaSensorHub, SensorHubThread
from labdevices.testing._opcua import SecureSensorHub

SENSORS = ("ph", "dissolved_oxygen", "temperature", "biomass")


@pytest.fixture(scope="module")
def profile() -> OpcUaProfile:
    p = load_profile("opcua-sensor-hub")
    assert isinstance(p, OpcUaProfile)
    return p


async def next_sample(q: asyncio.Queue[Sample], signal: str, quality: str = "good") -> Sample:
    """The next sample of ``signal`` with ``quality`` (bounded: a missing one fails the test)."""
    async with asyncio.timeout(20):
        while True:
            s = await q.get()
            if s.signal == signal and s.quality == quality:
                return s


# -- profile and option errors ---------------------------------------------------------


def test_profile_error_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "hub.toml"
    f.write_text(
        'driver = "opcua"\n'
        "[signals.ph]\n"
        'node = "ns=2;pH"\n'
        "[signals.oxygen]\n"
        'unit = "%"\n'
        "[security]\n"
        'policy = "Basic256Sha256"\n'
        'mode = "None"\n'
    )
    with pytest.raises(ConfigurationError) as info:
        load_profile(f)
    text = str(info.value)
    assert f"{f}: signals.ph.node: String should match pattern" in text
    assert "signals.oxygen: Value error, give exactly one of `node` or `browse_path`" in text
    assert "security: Value error, policy 'Basic256Sha256' needs mode" in text
    assert "needs certificate and private_key" in text


def test_options_and_address_errors_name_the_field(profile: OpcUaProfile, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"hub1: options: colour: unknown field"):
        OpcUaDevice("hub1", profile, "opc.tcp://127.0.0.1:4840", colour="red")
    with pytest.raises(ConfigurationError, match=r"address: 'tcp://x:1' is not an OPC UA address"):
        OpcUaDevice("hub1", profile, "tcp://x:1")
    missing = tmp_path / "nope.der"
    with pytest.raises(ConfigurationError, match=r"security.certificate: cannot read .*nope.der"):
        OpcUaDevice(
            "hub1",
            profile,
            "opc.tcp://127.0.0.1:4840",
            policy="Basic256Sha256",
            mode="Sign",
            certificate=str(missing),
            private_key=str(missing),
        )


async def test_profile_that_does_not_match_the_server_names_the_signals(
    opcua_sensor_hub_shared: SensorHubThread, profile: OpcUaProfile
) -> None:
    data = profile.model_dump(exclude_none=True)
    data["signals"]["ghost"] = {"node": "nsu=urn:labdevices:sensor-hub;s=SensorHub.Ghost"}
    data["signals"]["lost"] = {"browse_path": ["SensorHub", "Lost"]}
    bad = OpcUaProfile.model_validate(data)
    with pytest.raises(ConfigurationError) as info:
        async with OpcUaDevice("hub1", bad, opcua_sensor_hub_shared.endpoint):
            pass
    text = str(info.value)
    assert (
        "signals.ghost: node ns=2;s=SensorHub.Ghost not found on the server (BadNodeIdUnknown)"
        in text
    )
    assert "signals.lost.browse_path: SensorHub/Lost not found on the server" in text


async def test_connection_refused_is_a_connection_error(profile: OpcUaProfile) -> None:
    # The hub fixture's free-port helper gives a port nobody listens on once released.
    from labdevices.sim._opcua_hub import _free_port

    url = f"opc.tcp://127.0.0.1:{_free_port('127.0.0.1')}/x"
    with pytest.raises(DeviceConnectionError, match=r"hub1: connect to .* connection refused"):
        async with OpcUaDevice("hub1", profile, url):
            pass


# -- data: subscription, read, write, methods --------------------------------------------


async def test_subscription_read_and_write_with_limits(
    opcua_sensor_hub_shared: SensorHubThread, profile: OpcUaProfile
) -> None:
    device = create_device("hub1", profile, opcua_sensor_hub_shared.endpoint)
    async with device as dev:
        assert isinstance(dev, OpcUaDevice)
        assert dev.state == DeviceState.IDLE
        async with dev.subscribe() as q:
            for name in SENSORS:
                s = await next_sample(q, name)
                assert isinstance(s.value, float)
                assert s.unit == profile.signals[name].unit
            # the culture keeps changing: a second pH notification arrives
            await next_sample(q, "ph")
        ph = await dev.read("ph")
        assert 6.0 < float(ph.value or 0) < 8.0
        assert ph.quality == "good"

        await dev.write("ph_alarm_low", 6.2)
        assert (await dev.read("ph_alarm_low")).value == pytest.approx(6.2)

        with pytest.raises(
            LimitViolation, match=r"hub1: ph_alarm_low = 4.0 pH is below the limit 5.0"
        ):
            await dev.write("ph_alarm_low", 4.0)
        with pytest.raises(LimitViolation, match=r"signal 'ph' is read-only"):
            await dev.write("ph", 7.0)
        # nothing reached the server
        assert (await dev.read("ph_alarm_low")).value == pytest.approx(6.2)
        assert await opcua_sensor_hub_shared.acall(_value("ph_alarm_low")) == pytest.approx(6.2)
        await dev.write("ph_alarm_low", 6.6)


def _value(name: str):  # type: ignore[no-untyped-def]
    async def get(hub: OpcUaSensorHub) -> object:
        return hub.value(name)

    return get


async def test_method_call_with_checked_arguments(
    opcua_sensor_hub_shared: SensorHubThread, profile: OpcUaProfile
) -> None:
    async with OpcUaDevice("hub1", profile, opcua_sensor_hub_shared.endpoint) as dev:
        (offset,) = await dev.call("calibrate_ph", 7.0)
        assert abs(offset) < 0.1
        assert (await dev.read("ph_offset")).value == pytest.approx(offset)
        with pytest.raises(
            LimitViolation, match=r"calibrate_ph\(buffer_ph = 14.0 pH\) is above the limit 13.0"
        ):
            await dev.call("calibrate_ph", 14.0)
        with pytest.raises(
            LabDeviceError, match=r"calibrate_ph takes 1 argument\(s\) \(buffer_ph\), got 0"
        ):
            await dev.call("calibrate_ph")
        with pytest.raises(
            LabDeviceError, match=r"unknown method 'reboot' \(known: calibrate_ph\)"
        ):
            await dev.call("reboot")


async def test_third_party_client_sees_what_the_profile_says(
    opcua_sensor_hub_shared: SensorHubThread, profile: OpcUaProfile
) -> None:
    """asyncua's own client, knowing only the profile, browses, reads and calls."""
    async with Client(opcua_sensor_hub_shared.endpoint, timeout=5) as client:
        ns = await client.get_namespace_index("urn:labdevices:sensor-hub")
        hub = await client.nodes.objects.get_child(f"{ns}:SensorHub")
        children = {(await c.read_browse_name()).Name for c in await hub.get_children()}
        assert {"pH", "DissolvedOxygen", "Temperature", "Biomass", "Calibrate"} <= children
        for name, sig in profile.signals.items():
            if sig.node is not None:
                node = client.get_node(
                    sig.node.replace("nsu=urn:labdevices:sensor-hub", f"ns={ns}")
                )
            else:
                assert sig.browse_path is not None
                node = await client.nodes.objects.get_child([f"{ns}:{p}" for p in sig.browse_path])
            dv = await node.read_data_value()
            assert dv.StatusCode.is_good(), name
            assert dv.Value.VariantType == getattr(ua.VariantType, sig.data_type), name
            access = await node.read_attribute(ua.AttributeIds.UserAccessLevel)
            writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
            assert writable == sig.writable, name
            if sig.unit:
                eu = await (await node.get_child("0:EngineeringUnits")).read_value()
                assert eu.DisplayName.Text == sig.unit
        calibrate = await hub.get_child(f"{ns}:Calibrate")
        offset = await hub.call_method(calibrate, ua.Variant(7.0, ua.VariantType.Double))
        assert isinstance(offset, float)


# -- faults ---------------------------------------------------------------------------------


async def test_slow_replies_time_out_and_stalled_values_are_stale(
    opcua_sensor_hub_shared: SensorHubThread, profile: OpcUaProfile
) -> None:
    faults = opcua_sensor_hub_shared.hub.faults
    # asyncua's server applies a deadband to the value only, so a status-only change
    # would be filtered out: this client monitors temperature without one.
    data = profile.model_dump(exclude_none=True)
    del data["signals"]["temperature"]["deadband"]
    no_deadband = OpcUaProfile.model_validate(data)
    async with OpcUaDevice(
        "hub1", no_deadband, opcua_sensor_hub_shared.endpoint, timeout_s=0.3
    ) as dev:
        faults.slow_reply_s = 1.0
        try:
            with pytest.raises(DeviceTimeoutError, match=r"hub1: read ph: no answer within 0.3 s"):
                await dev.read("ph")
        finally:
            faults.slow_reply_s = 0.0
        async with dev.subscribe() as q:
            faults.flag_stalled = True
            faults.stalled = {"temperature"}
            try:
                s = await next_sample(q, "temperature", "stale")
            finally:
                faults.stalled = set()
                faults.flag_stalled = False
            assert s.reason == "server reports UncertainLastUsableValue"
            assert s.value is not None  # the last usable value, flagged, not replaced
            await next_sample(q, "temperature", "good")


async def test_restart_reconnects_resubscribes_and_marks_the_outage_stale(
    opcua_sensor_hub: OpcUaSensorHub, profile: OpcUaProfile
) -> None:
    hub = opcua_sensor_hub
    async with OpcUaDevice(
        "hub1", profile, hub.endpoint, reconnect_min_s=0.1, reconnect_max_s=0.5, jitter_seed=1
    ) as dev:
        async with dev.subscribe() as q:
            await next_sample(q, "ph")
            await hub.stop()
            lost = await next_sample(q, "ph", "stale")
            assert lost.value is None
            assert lost.reason is not None
            assert lost.reason.startswith("connection lost")
            assert dev.state == DeviceState.CONNECTING
            with pytest.raises(DeviceConnectionError, match=r"hub1: not connected \(reconnecting"):
                await dev.read("ph")
            retry = await next_sample(q, "ph", "stale")
            assert retry.reason is not None
            assert "connection refused" in retry.reason
            await hub.start()
            # the subscription is back: every sensor publishes good samples again
            for name in SENSORS:
                await next_sample(q, name)
        assert dev.reconnects == 1
        assert dev.state == DeviceState.IDLE
        assert (await dev.read("temperature")).quality == "good"

        # a dropped connection (no restart) is survived the same way
        async with dev.subscribe() as q:
            assert hub.disconnect_clients() >= 1
            await next_sample(q, "ph", "stale")
            await next_sample(q, "ph")
        assert dev.reconnects == 2


# -- security -------------------------------------------------------------------------------


async def test_sign_and_encrypt_with_certificate_and_user(
    opcua_secure_sensor_hub: SecureSensorHub, profile: OpcUaProfile
) -> None:
    s = opcua_secure_sensor_hub
    for mode in ("SignAndEncrypt", "Sign"):
        async with OpcUaDevice(
            "hub1",
            profile,
            s.endpoint,
            policy="Basic256Sha256",
            mode=mode,
            certificate=str(s.certificate),
            private_key=str(s.private_key),
            username=s.username,
            password=s.password,
        ) as dev:
            assert dev.security.label == f"Basic256Sha256 {mode}"
            assert (await dev.read("ph")).quality == "good"
            await dev.write("ph_alarm_high", 7.8)


async def test_wrong_password_and_missing_security_are_clear_errors(
    opcua_secure_sensor_hub: SecureSensorHub, profile: OpcUaProfile
) -> None:
    s = opcua_secure_sensor_hub
    secure = {
        "policy": "Basic256Sha256",
        "mode": "SignAndEncrypt",
        "certificate": str(s.certificate),
        "private_key": str(s.private_key),
        "server_certificate": str(s.server_certificate),
    }
    with pytest.raises(
        DeviceConnectionError, match=r"hub1: .*the server refused the login \(BadUserAccessDenied\)"
    ):
        async with OpcUaDevice(
            "hub1", profile, s.endpoint, username=s.username, password="wrong", **secure
        ):
            pass
    with pytest.raises(
        DeviceConnectionError, match=r"refused the login \(BadIdentityTokenRejected\)"
    ):
        async with OpcUaDevice("hub1", profile, s.endpoint, **secure):
            pass
    with pytest.raises(DeviceConnectionError, match=r"hub1: connect to .* \(None\)"):
        async with OpcUaDevice(
            "hub1", profile, s.endpoint, username=s.username, password=s.password
        ):
            pass
