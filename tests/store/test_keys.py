"""The daemon's signing key: created once with mode 0600, refused when others can read it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labdevices.store import (
    StoreError,
    default_key_path,
    derive_key,
    fingerprint,
    load_or_create_signing_key,
    load_public_key,
    public_key_bytes,
)


def test_key_is_created_private_and_loaded_again(tmp_path: Path) -> None:
    path = default_key_path(tmp_path / "lab.db")
    assert path.name == "lab.db.key"
    key = load_or_create_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create_signing_key(path)
    assert public_key_bytes(again.public_key()) == public_key_bytes(key.public_key())
    for source in (path, path.with_name(path.name + ".pub")):
        pub = load_public_key(source)
        assert fingerprint(pub) == fingerprint(key.public_key())


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    load_or_create_signing_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(StoreError, match="readable by others"):
        load_or_create_signing_key(path)


def test_garbage_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(StoreError, match=r"k: cannot read the signing key"):
        load_or_create_signing_key(path)


def test_derived_keys_differ_by_purpose_and_key(tmp_path: Path) -> None:
    a = load_or_create_signing_key(tmp_path / "a")
    b = load_or_create_signing_key(tmp_path / "b")
    assert derive_key(a, "session") == derive_key(a, "session")
    assert derive_key(a, "session") != derive_key(a, "broker")
    assert derive_key(a, "session") != derive_key(b, "session")


def test_a_postgresql_store_s_key_and_witness_default_to_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labdevices.store import default_witness_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("LABDEVICES_DB", raising=False)
    url = "postgresql://lab:pw@db.example:5433/site1"
    assert default_key_path(url) == tmp_path / "labdevices" / "postgresql-db.example-5433-site1.key"
    assert default_witness_path(url).name == "postgresql-db.example-5433-site1.witness"
    assert default_key_path("postgresql:///site1").name == "postgresql-local-5432-site1.key"
