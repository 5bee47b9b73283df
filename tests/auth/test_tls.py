"""``mqtts://`` is honoured end to end: a TLS-only Mosquitto, the daemon and a client logging
in with a password over it; a client that does not trust the broker's CA gets nowhere."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labdevices.client import LabClient
from labdevices.daemon import Daemon
from labdevices.errors import DeviceConnectionError
from labdevices.sim.printer import SimPrinterConfig, SimulatedPrinter
from labdevices.testing._auth import TEST_PASSWORD, add_test_user
from labdevices.testing._mqtt import MosquittoBroker

from .conftest import make_config


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def make_ca_and_server(folder: Path, name: str = "test CA") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem(key))
    paths[2].chmod(0o600)
    return paths


async def test_login_and_commands_over_mqtts(site: str, tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server(tmp_path / "tls")
    (tmp_path / "mosquitto").mkdir()
    broker = MosquittoBroker(tmp_path / "mosquitto", tls=(ca, cert, key))
    broker.start()
    db = tmp_path / "lab.db"
    add_test_user(db, "alice", ["operator"], password=TEST_PASSWORD)
    try:
        assert broker.url.startswith("mqtts://")
        async with SimulatedPrinter(config=SimPrinterConfig(time_scale=0.01)) as sim:
            assert sim.port is not None
            config = make_config(site, broker.url, db, sim.port, ca_file=ca)
            async with Daemon(config) as daemon:
                await daemon.slots["printer"].wait_ready()
                async with LabClient(
                    broker.url, site=site, user="alice", password=TEST_PASSWORD, ca_file=ca
                ) as lab:
                    assert (await lab.whoami())["user"] == "alice"
                    assert (await lab.read("printer", "nozzle_temperature")).unit == "degC"
    finally:
        broker.stop()


# paho-mqtt leaves the socket of a failed TLS handshake for the garbage collector (a
# ResourceWarning per reconnect attempt); the refusal itself is what this test is about.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_broker_certificate_from_an_untrusted_ca_is_refused(
    site: str, tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_server(tmp_path / "tls")
    other_ca, _, _ = make_ca_and_server(tmp_path / "other", "someone else's CA")
    (tmp_path / "mosquitto").mkdir()
    broker = MosquittoBroker(tmp_path / "mosquitto", tls=(ca, cert, key))
    broker.start()
    try:
        with pytest.raises(DeviceConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            async with LabClient(
                broker.url,
                site=site,
                user="alice",
                password=TEST_PASSWORD,
                ca_file=other_ca,
                connect_timeout=1,
            ):
                pass
    finally:
        broker.stop()
