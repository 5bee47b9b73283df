"""Helpers for tests that edit a store by hand, as someone with the file could."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def tamper(db: Path, *statements: str) -> None:
    """Run SQL on the store file with the plain sqlite3 module, append-only guards removed."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        conn.execute("BEGIN")
        for sql in statements:
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()
