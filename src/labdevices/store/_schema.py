"""The SQLite schema, as an ordered list of migrations recorded in ``schema_migrations``."""

from __future__ import annotations

from ._audit import GENESIS_HASH

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

# (version, description, statements). Append new migrations; never edit an applied one.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "jobs, job events, alarms, telemetry, audit chain",
        [
            """CREATE TABLE jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                printer TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'paused',
                    'completed', 'failed', 'cancelled', 'interrupted')),
                batch_id TEXT,
                patient_id TEXT,
                bioinks TEXT NOT NULL DEFAULT '[]',
                gcode_sha256 TEXT,
                lines_total INTEGER NOT NULL DEFAULT 0,
                last_ack_line INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                started_at REAL,
                ended_at REAL,
                error TEXT
            )""",
            "CREATE INDEX jobs_by_state ON jobs (state)",
            """CREATE TABLE job_events (
                id INTEGER PRIMARY KEY,
                job_id INTEGER NOT NULL REFERENCES jobs (id),
                t REAL NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL
            )""",
            "CREATE INDEX job_events_by_job ON job_events (job_id, id)",
            """CREATE TABLE alarms (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                device TEXT NOT NULL,
                name TEXT NOT NULL,
                severity TEXT NOT NULL,
                raised_at REAL NOT NULL,
                cleared_at REAL,
                acknowledged_at REAL,
                acknowledged_by TEXT,
                reason TEXT
            )""",
            "CREATE INDEX alarms_active ON alarms (cleared_at, acknowledged_at)",
            # value has no declared type: numbers, booleans and strings keep their own
            """CREATE TABLE telemetry (
                device TEXT NOT NULL,
                signal TEXT NOT NULL,
                t REAL NOT NULL,
                value,
                unit TEXT NOT NULL,
                quality TEXT NOT NULL
            )""",
            "CREATE INDEX telemetry_by_signal ON telemetry (device, signal, t)",
            """CREATE TABLE audit (
                seq INTEGER PRIMARY KEY,
                time TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                object TEXT NOT NULL,
                old_value TEXT,
                new_value TEXT,
                reason TEXT,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
            # The chain cannot see records cut from its end; the head, written in the
            # same transaction as each append, can.
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL
            )""",
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
            # Guards against accidents, not against someone with the file: that is what
            # the hash chain is for.
            """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
               BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
            """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
               BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
        ],
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
