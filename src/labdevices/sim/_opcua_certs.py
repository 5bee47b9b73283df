"""Self-signed OPC UA application certificates, made at run time for simulators and tests.

Nothing here is ever committed: certificates and keys are generated in memory or
into a folder the caller owns (a pytest ``tmp_path``).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateFiles", "generate_certificate", "write_certificate"]


def generate_certificate(
    application_uri: str,
    common_name: str,
    *,
    server: bool,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 30,
) -> tuple[bytes, bytes]:
    """A self-signed application certificate: (certificate DER, private key PEM).

    Shaped as OPC UA Part 6 asks: the application URI and host names in the
    subject alternative names, signing and encipherment key usages, RSA 2048 and
    SHA-256 as Basic256Sha256 needs.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labdevices (generated, test only)"),
        ]
    )
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in hostnames:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            )
            if server
            else x509.ExtendedKeyUsage([usage]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.DER), key_pem


@dataclass(frozen=True)
class CertificateFiles:
    """Paths of a generated certificate (DER) and its private key (PEM)."""

    certificate: Path
    private_key: Path
    application_uri: str


def write_certificate(
    folder: Path, stem: str, application_uri: str, *, server: bool = False
) -> CertificateFiles:
    """Generate a certificate and write ``stem.der`` and ``stem.key.pem`` into ``folder``."""
    cert_der, key_pem = generate_certificate(application_uri, stem, server=server)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / f"{stem}.der"
    key_path = folder / f"{stem}.key.pem"
    cert_path.write_bytes(cert_der)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return CertificateFiles(cert_path, key_path, application_uri)
