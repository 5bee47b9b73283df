"""The simulated OPC UA hub refuses what a real server refuses (issue #13, item 4).

Writes outside the profile's limits get ``BadOutOfRange`` (per item, nothing
written); a secured hub accepts a client certificate only from its trust list
(or when auto-accept is asked for), and never one that does not name the client's
application URI. Real asyncua clients and the labdevices driver, over real sockets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from labdevices.devices.opcua import OpcUaDevice
from labdevices.errors import DeviceConnectionError
from labdevices.profiles import OpcUaProfile, load_profile
from labdevices.sim._opcua_certs import CertificateFiles, write_certificate
from labdevices.sim._opcua_hub import OpcUaSensorHub

SECURE = ("Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")


@pytest.fixture(scope="module")
def profile() -> OpcUaProfile:
    p = load_profile("opcua-sensor-hub")
    assert isinstance(p, OpcUaProfile)
    return p


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertificateFiles]:
    folder = tmp_path_factory.mktemp("pki")
    return {
        name: write_certificate(folder, name, f"urn:labdevices:test:{name}")
        for name in ("trusted", "stranger")
    }


# -- limits --------------------------------------------------------------------------------


async def test_writes_outside_the_profiles_limits_are_bad_out_of_range(
    profile: OpcUaProfile,
) -> None:
    assert (profile.signals["ph_alarm_low"].min, profile.signals["ph_alarm_high"].max) == (5.0, 9.0)
    async with OpcUaSensorHub(profile) as hub, Client(hub.endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(profile.namespace or "")
        low = client.get_node(f"ns={ns};s=SensorHub.pHAlarmLow")
        high = client.get_node(f"ns={ns};s=SensorHub.pHAlarmHigh")
        with pytest.raises(ua.uaerrors.BadOutOfRange):
            await low.write_value(ua.Variant(3.0, ua.VariantType.Double))
        assert hub.value("ph_alarm_low") == pytest.approx(6.6)
        for bad in (8.5, float("nan"), float("inf")):
            with pytest.raises(ua.uaerrors.BadOutOfRange):
                await low.write_value(ua.Variant(bad, ua.VariantType.Double))
        # One request, two items: each gets its own status; the good one is written.
        results = await client.write_values(
            [low, high],
            [ua.Variant(5.5, ua.VariantType.Double), ua.Variant(9.5, ua.VariantType.Double)],
            raise_on_partial_error=False,
        )
        assert [r.name for r in results] == ["Good", "BadOutOfRange"]
        assert hub.value("ph_alarm_low") == pytest.approx(5.5)
        assert hub.value("ph_alarm_high") == pytest.approx(7.6)
        # the limits themselves are inside
        await low.write_value(ua.Variant(5.0, ua.VariantType.Double))
        assert hub.value("ph_alarm_low") == pytest.approx(5.0)


# -- trust list ------------------------------------------------------------------------------


def secure_device(
    profile: OpcUaProfile, hub: OpcUaSensorHub, cert: CertificateFiles
) -> OpcUaDevice:
    return OpcUaDevice(
        "hub1",
        profile,
        hub.endpoint,
        policy="Basic256Sha256",
        mode="SignAndEncrypt",
        certificate=str(cert.certificate),
        private_key=str(cert.private_key),
    )


async def test_secure_hub_accepts_only_trusted_client_certificates(
    profile: OpcUaProfile, clients: dict[str, CertificateFiles]
) -> None:
    trusted, stranger = clients["trusted"], clients["stranger"]
    async with OpcUaSensorHub(
        profile, security=SECURE, trusted_certificates=[trusted.certificate]
    ) as hub:
        async with secure_device(profile, hub, trusted) as dev:
            assert (await dev.read("ph")).quality == "good"
        with pytest.raises(
            DeviceConnectionError,
            match=r"^hub1: .*rejected the security settings \(BadCertificateUntrusted\)",
        ):
            async with secure_device(profile, hub, stranger):
                pass
        assert hub.trust.rejected == ["urn:labdevices:test:stranger: BadCertificateUntrusted"]


async def test_secure_hub_without_a_trust_list_trusts_nobody(
    profile: OpcUaProfile, clients: dict[str, CertificateFiles]
) -> None:
    async with OpcUaSensorHub(profile, security=SECURE) as hub:
        with pytest.raises(DeviceConnectionError, match=r"BadCertificateUntrusted"):
            async with secure_device(profile, hub, clients["trusted"]):
                pass


async def test_auto_accept_takes_any_well_formed_certificate(
    profile: OpcUaProfile, clients: dict[str, CertificateFiles]
) -> None:
    hub = OpcUaSensorHub(profile, security=SECURE, auto_accept_certificates=True)
    async with hub, secure_device(profile, hub, clients["stranger"]) as dev:
        assert (await dev.read("ph")).quality == "good"


@pytest.mark.parametrize("auto_accept", [False, True])
async def test_certificate_must_name_the_clients_application_uri(
    profile: OpcUaProfile, clients: dict[str, CertificateFiles], auto_accept: bool
) -> None:
    trusted = clients["trusted"]
    async with OpcUaSensorHub(
        profile,
        security=SECURE,
        trusted_certificates=[trusted.certificate.read_bytes()],
        auto_accept_certificates=auto_accept,
    ) as hub:
        client = Client(hub.endpoint, timeout=10)
        client.application_uri = "urn:someone-else"  # not the URI in the certificate
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(trusted.certificate),
            str(trusted.private_key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
            server_certificate=hub.server_certificate_der,
        )
        with pytest.raises(ua.uaerrors.BadCertificateUriInvalid):
            await client.connect()
        await client.disconnect()
        assert hub.trust.rejected == ["urn:someone-else: BadCertificateUriInvalid"]


def test_unreadable_trusted_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    from labdevices.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"trusted_certificates: .*nope\.der"):
        OpcUaSensorHub(security=SECURE, trusted_certificates=[tmp_path / "nope.der"])
