"""The daemon's Ed25519 key: kept in a file outside the database, created at first start.

It signs the audit chain's checkpoints, and keys derived from it (HKDF) give each login
session its secret, so the database file alone can neither forge a checkpoint nor act
as a user. The public key, given from outside the database, is what ``audit verify``
trusts.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import StoreError
from ._paths import local_stand_in

__all__ = [
    "default_key_path",
    "derive_key",
    "fingerprint",
    "load_or_create_signing_key",
    "load_public_key",
    "public_key_bytes",
]


def default_key_path(db_path: str | Path) -> Path:
    """Where the key lives unless configured: beside the store, ``<db>.key`` (public: ``.pub``);
    for a PostgreSQL URL see ``local_stand_in``."""
    p = local_stand_in(db_path)
    return p.with_name(p.name + ".key")


def load_or_create_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """The private key in ``path`` (PEM, PKCS#8), created with mode 0600 if there is none.

    A key file readable by group or others is refused: whoever reads it can forge the
    record's checkpoints.
    """
    p = Path(path)
    if p.exists():
        mode = p.stat().st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            raise StoreError(
                f"signing key is readable by others (mode {mode:o}); chmod 600 it", file=str(p)
            )
        try:
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot read the signing key: {exc}", file=str(p)) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise StoreError("the signing key is not an Ed25519 private key", file=str(p))
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        pub = p.with_name(p.name + ".pub")
        pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except OSError as exc:
        raise StoreError(f"cannot create the signing key: {exc}", file=str(p)) from exc
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """A public key from a PEM file (``<key>.pub``) or a private key file (its public half)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read the public key: {exc}", file=str(p)) from exc
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return private.public_key()
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, Ed25519PublicKey):
                return public
    except (ValueError, TypeError) as exc:
        raise StoreError(f"not a PEM key: {exc}", file=str(p)) from exc
    raise StoreError("not an Ed25519 key", file=str(p))


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:<base64>`` of the raw public key, as ssh-keygen prints fingerprints."""
    digest = hashlib.sha256(public_key_bytes(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def derive_key(key: Ed25519PrivateKey, purpose: str, length: int = 32) -> bytes:
    """A secret for one ``purpose`` (e.g. ``"labdevices session v1"``), derived with HKDF-SHA256."""
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode("utf-8")
    ).derive(seed)
