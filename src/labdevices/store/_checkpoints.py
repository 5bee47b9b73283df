"""Signed checkpoints of the audit chain: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note``s.

A checkpoint says "the chain had ``size`` records and its last hash was ``head``", signed
with the daemon's Ed25519 key (kept outside the database). Rewriting the chain without
that key cannot produce a matching checkpoint; each checkpoint also names the hash of the
one before it, so the checkpoints form a chain of their own. This module is pure: text
in, text out; the store writes checkpoints, the witness file and ``audit verify`` read them.

The note text (every line ends in a newline)::

    labdevices/<site>                 origin
    1234                              size: the audit seq of the last record covered
    <base64 of the 32-byte head hash> the hash of record 1234
    time 2026-11-26T13:21:07.123456Z  extension lines (labdevices')
    prev <hex SHA-256 of the previous checkpoint's signed note, or 64 zeros>
    state open|closed|running         open: the writer just opened the store; closed: it closed
                                      it (a record after a "closed" checkpoint was not written
                                      by the signer)

then a blank line and ``— <key name> <base64(key id || Ed25519 signature)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._audit import GENESIS_HASH
from ._errors import StoreError
from ._keys import load_public_key, public_key_bytes
from ._paths import local_stand_in

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "CheckpointState",
    "WitnessLog",
    "append_witness",
    "default_witness_path",
    "key_id",
    "load_verifier",
    "note_sha256",
    "parse_checkpoint",
    "parse_verifier_key",
    "read_witness",
    "verifier_key",
]

CheckpointState = Literal["open", "running", "closed"]
_STATES: tuple[CheckpointState, ...] = ("open", "running", "closed")
_ED25519 = b"\x01"
_DASH = "\u2014 "
_NAME = re.compile(r"^[^\s+]+$")
_VKEY = re.compile(r"^[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+$")


class CheckpointError(StoreError):
    """A checkpoint note is malformed, or its signature does not verify with the given key."""


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    """C2SP signed-note key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + _ED25519 + public_key_bytes(public)
    ).digest()[:4]


def verifier_key(name: str, public: Ed25519PublicKey) -> str:
    """The C2SP verifier key string ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
    raw = base64.b64encode(_ED25519 + public_key_bytes(public)).decode()
    return f"{name}+{key_id(name, public).hex()}+{raw}"


def parse_verifier_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """(name, public key) from a verifier key string; ``CheckpointError`` if it is not one."""
    parts = text.strip().split("+", 2)  # the base64 key may hold '+' itself
    if len(parts) != 3 or not _VKEY.match(text.strip()):
        raise CheckpointError(f"not a verifier key (<name>+<key id>+<key>): {text[:60]!r}")
    name, hex_id, b64 = parts
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"verifier key {name!r}: the key is not base64") from exc
    if len(raw) != 33 or raw[:1] != _ED25519:
        raise CheckpointError(f"verifier key {name!r}: not an Ed25519 key")
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, public).hex() != hex_id.lower():
        raise CheckpointError(f"verifier key {name!r}: its key id does not match the key")
    return name, public


def load_verifier(spec: str | Path) -> Ed25519PublicKey:
    """A public key from a verifier key string, a PEM public key file or a private key file."""
    text = str(spec)
    if _VKEY.match(text.strip()) and not Path(text).exists():
        return parse_verifier_key(text)[1]
    path = Path(text)
    try:
        head = path.read_bytes()[:200]
    except OSError as exc:
        raise StoreError(f"cannot read the public key: {exc}", file=str(path)) from exc
    if b"-----BEGIN" not in head and _VKEY.match(head.decode("utf-8", "replace").strip()):
        return parse_verifier_key(path.read_text(encoding="utf-8"))[1]
    return load_public_key(path)


def note_sha256(note: str) -> str:
    """Hex SHA-256 of a whole signed note: what the next checkpoint's ``prev`` names."""
    return hashlib.sha256(note.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed checkpoint: ``size`` records, the last one's hash ``head`` (hex)."""

    origin: str
    size: int
    head: str
    time: str
    prev: str
    state: CheckpointState
    note: str

    @property
    def sha256(self) -> str:
        return note_sha256(self.note)

    @property
    def text(self) -> str:
        """The signed body (everything before the blank line, with its final newline)."""
        return self.note[: self.note.rindex("\n\n") + 1]


def checkpoint_text(
    origin: str, size: int, head: str, time: str, prev: str, state: CheckpointState
) -> str:
    if not _NAME.match(origin):
        raise CheckpointError(f"checkpoint origin {origin!r} must have no spaces or '+'")
    root = base64.b64encode(bytes.fromhex(head)).decode()
    return f"{origin}\n{size}\n{root}\ntime {time}\nprev {prev}\nstate {state}\n"


class CheckpointSigner:
    """Signs checkpoints with the daemon's key under the key name ``origin`` (``labdevices/<site>``)."""

    def __init__(self, key: Ed25519PrivateKey, origin: str) -> None:
        if not _NAME.match(origin):
            raise StoreError(f"checkpoint origin {origin!r} must have no spaces or '+'")
        self.key = key
        self.origin = origin
        self.public = key.public_key()
        self._id = key_id(origin, self.public)

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.origin, self.public)

    def sign(
        self, *, size: int, head: str, time: str, prev: str, state: CheckpointState
    ) -> Checkpoint:
        text = checkpoint_text(self.origin, size, head, time, prev, state)
        sig = self.key.sign(text.encode("utf-8"))
        line = f"{_DASH}{self.origin} {base64.b64encode(self._id + sig).decode()}\n"
        return Checkpoint(self.origin, size, head, time, prev, state, f"{text}\n{line}")


def parse_checkpoint(note: str, public: Ed25519PublicKey | None) -> Checkpoint:
    """Parse a signed checkpoint; with ``public``, require a valid signature by that key.

    ``CheckpointError`` names what is wrong. Without a key the note is only parsed (its
    content must then not be trusted).
    """
    if "\n\n" not in note or not note.endswith("\n"):
        raise CheckpointError("not a signed note (no blank line before the signatures)")
    split = note.rindex("\n\n")
    text, sigs = note[: split + 1], note[split + 2 :]
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckpointError("not a checkpoint: fewer than 3 lines")
    origin, size_text, root = lines[0], lines[1], lines[2]
    ext = dict(line.split(" ", 1) for line in lines[3:] if " " in line)
    if not size_text.isdigit():
        raise CheckpointError(f"checkpoint size {size_text!r} is not a number")
    try:
        head_raw = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError("checkpoint root hash is not base64") from exc
    if len(head_raw) != 32:
        raise CheckpointError("checkpoint root hash is not 32 bytes")
    state = ext.get("state", "running")
    if state not in _STATES or "time" not in ext or "prev" not in ext:
        raise CheckpointError("checkpoint lacks its time, prev or state line")
    if public is not None:
        _check_signature(text, sigs, origin, public)
    return Checkpoint(
        origin,
        int(size_text),
        head_raw.hex(),
        ext["time"],
        ext["prev"],
        state,
        note,
    )


def _check_signature(text: str, sigs: str, origin: str, public: Ed25519PublicKey) -> None:
    want = key_id(origin, public)
    for line in sigs.split("\n"):
        if not line:
            continue
        if not line.startswith(_DASH):
            raise CheckpointError("malformed signature line")
        name, _, b64 = line[len(_DASH) :].rpartition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError("signature is not base64") from exc
        if name != origin or raw[:4] != want:
            continue  # another key's signature (a cosigner): not ours to judge
        try:
            public.verify(raw[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise CheckpointError("the signature does not verify with the given key") from None
        return
    raise CheckpointError(
        f"not signed by the given key (no signature by {origin} with key id {want.hex()})"
    )


# -- the witness file ------------------------------------------------------------------------


def default_witness_path(db_path: str | Path) -> Path:
    """``<db>.witness``, beside the store, unless configured elsewhere (for a PostgreSQL URL:
    see ``local_stand_in``)."""
    p = local_stand_in(db_path)
    return p.with_name(p.name + ".witness")


def append_witness(path: str | Path, number: int, cp: Checkpoint) -> None:
    """Append checkpoint ``number`` to a witness file (JSON lines) and fsync it."""
    line = json.dumps({"n": number, "note": cp.note}, ensure_ascii=False) + "\n"
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot append to the witness file: {exc}", file=str(p)) from exc


def read_witness(path: str | Path) -> Iterator[tuple[int, str]]:
    """(checkpoint number, note) of each line of a witness file, in order.

    A last line cut short (a crash mid-append) is skipped; any other bad line raises
    ``StoreError`` naming its line number.
    """
    p = Path(path)
    try:
        data = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot read the witness file: {exc}", file=str(p)) from exc
    lines = data.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            n, note = item["n"], item["note"]
            if not isinstance(n, int) or not isinstance(note, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            if i == len(lines):  # no final newline: torn by a crash
                return
            raise StoreError(f"line {i} is not a witness entry", file=str(p)) from None
        yield n, note


def genesis_prev() -> str:
    return GENESIS_HASH


class WitnessLog:
    """A witness's own copy of a log's checkpoints, in a file it alone appends to.

    ``accept`` takes each checkpoint the daemon publishes: it must be signed by the
    given key and extend the last one held (next number and ``prev`` link, size not
    going back). A checkpoint that contradicts one held — another note under a number
    already held (a fork), or an older number (a rollback) — raises ``CheckpointError``
    and is not written.
    """

    def __init__(self, path: str | Path, public: Ed25519PublicKey) -> None:
        self.path = Path(path)
        self.public = public
        self.held: dict[int, str] = {}
        self.last: tuple[int, Checkpoint] | None = None
        if self.path.exists():
            for n, note in read_witness(self.path):
                cp = parse_checkpoint(note, public)
                self.held[n] = note
                self.last = (n, cp)

    def accept(self, number: int, note: str) -> bool:
        """Verify and append; False if it is already held (a retained copy seen again)."""
        cp = parse_checkpoint(note, self.public)
        if number in self.held:
            if self.held[number] == note:
                return False
            if self.last is not None and number < self.last[0]:
                raise CheckpointError(
                    f"ROLLBACK: checkpoint {number} (size {cp.size}, {cp.time}) is older than "
                    f"checkpoint {self.last[0]} held, and differs from the checkpoint {number} held"
                )
            raise CheckpointError(
                f"FORK: checkpoint {number} (size {cp.size}, {cp.time}) differs from the "
                f"checkpoint {number} this witness holds; the log was rewritten"
            )
        if self.last is not None:
            last_n, last = self.last
            if number < last_n:
                raise CheckpointError(
                    f"ROLLBACK: checkpoint {number} is older than checkpoint {last_n} held"
                )
            if cp.size < last.size:
                raise CheckpointError(
                    f"ROLLBACK: checkpoint {number} has {cp.size} records, fewer than the "
                    f"{last.size} of checkpoint {last_n}"
                )
            if number == last_n + 1 and cp.prev != last.sha256:
                raise CheckpointError(
                    f"FORK: checkpoint {number} does not extend checkpoint {last_n} (prev link)"
                )
        append_witness(self.path, number, cp)
        self.held[number] = note
        self.last = (number, cp)
        return True
