"""The schema, as an ordered list of migrations recorded in ``schema_migrations``.

To add one: append ``(version, description, statements)`` with the statements in SQLite's
SQL. PostgreSQL runs the same text translated by ``Dialect.ddl`` (types, the append-only
triggers, ``randomblob``); a statement it cannot translate is written for both,
``Both(sqlite=..., postgresql=...)`` ("" where a dialect has nothing to do). The test
``tests/store/test_migrations.py`` applies every migration on both databases.
"""

from __future__ import annotations

from ._audit import GENESIS_HASH
from ._dialect import Both

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

# (version, description, statements). Append new migrations; never edit an applied one.
MIGRATIONS: list[tuple[int, str, list[str | Both]]] = [
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
            Both(
                """CREATE TABLE telemetry (
                device TEXT NOT NULL,
                signal TEXT NOT NULL,
                t REAL NOT NULL,
                value,
                unit TEXT NOT NULL,
                quality TEXT NOT NULL
            )""",
                # json keeps a value's type as written; rowid is SQLite's insertion order
                """CREATE TABLE telemetry (
                rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                device TEXT NOT NULL,
                signal TEXT NOT NULL,
                t REAL NOT NULL,
                value JSON,
                unit TEXT NOT NULL,
                quality TEXT NOT NULL
            )""",
            ),
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

_JOB_STATES = (
    "'held', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled', 'interrupted'"
)

MIGRATIONS.append(
    (
        2,
        "identity and proof: users, sessions, signatures, checkpoints, telemetry blocks, "
        "job G-code, row hashes in the audit chain, the held job state",
        [
            # Each audit record may carry the SHA-256 of the row its action produced
            # (see _rows.py): that is how jobs, alarms, users, signatures and telemetry
            # blocks come under the chain, not only the audit table.
            "ALTER TABLE audit ADD COLUMN row_sha256 TEXT",
            # jobs is rebuilt (SQLite cannot change a CHECK constraint): the 'held'
            # state (awaiting a release signature), who submitted it, what a signature
            # signs, and the running hash of the job's events.
            Both(
                f"""CREATE TABLE jobs_v2 (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                printer TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ({_JOB_STATES})),
                batch_id TEXT,
                patient_id TEXT,
                bioinks TEXT NOT NULL DEFAULT '[]',
                gcode_sha256 TEXT,
                lines_total INTEGER NOT NULL DEFAULT 0,
                last_ack_line INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                started_at REAL,
                ended_at REAL,
                error TEXT,
                name TEXT,
                submitted_by TEXT,
                profile TEXT,
                spec TEXT,
                content_sha256 TEXT,
                release_required INTEGER NOT NULL DEFAULT 0,
                events_sha256 TEXT NOT NULL DEFAULT '{GENESIS_HASH}'
            )""",
                # PostgreSQL changes the table in place (and keeps job_events' reference)
                f"""ALTER TABLE jobs DROP CONSTRAINT jobs_state_check,
                ADD CONSTRAINT jobs_state_check CHECK (state IN ({_JOB_STATES})),
                ADD COLUMN name TEXT,
                ADD COLUMN submitted_by TEXT,
                ADD COLUMN profile TEXT,
                ADD COLUMN spec TEXT,
                ADD COLUMN content_sha256 TEXT,
                ADD COLUMN release_required INTEGER NOT NULL DEFAULT 0,
                ADD COLUMN events_sha256 TEXT NOT NULL DEFAULT '{GENESIS_HASH}'""",
            ),
            Both(
                """INSERT INTO jobs_v2 (id, printer, state, batch_id, patient_id, bioinks, gcode_sha256,
                lines_total, last_ack_line, created_at, started_at, ended_at, error)
               SELECT id, printer, state, batch_id, patient_id, bioinks, gcode_sha256,
                lines_total, last_ack_line, created_at, started_at, ended_at, error FROM jobs""",
                "",
            ),
            Both("DROP TABLE jobs", ""),
            Both("ALTER TABLE jobs_v2 RENAME TO jobs", ""),
            Both("CREATE INDEX jobs_by_state ON jobs (state)", ""),
            # The G-code a job streams, kept for the record; its hash is jobs.gcode_sha256.
            """CREATE TABLE job_gcode (
                job_id INTEGER PRIMARY KEY REFERENCES jobs (id),
                gcode TEXT NOT NULL
            )""",
            # Telemetry is stored in blocks (one per flush); each block's hash enters the chain.
            "ALTER TABLE telemetry ADD COLUMN block INTEGER",
            """CREATE TABLE telemetry_blocks (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                count INTEGER NOT NULL,
                t_first REAL NOT NULL,
                t_last REAL NOT NULL,
                sha256 TEXT NOT NULL
            )""",
            # Users are never deleted and their ids never reused: deactivated instead.
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                full_name TEXT NOT NULL,
                roles TEXT NOT NULL DEFAULT '[]',
                active INTEGER NOT NULL DEFAULT 1,
                service INTEGER NOT NULL DEFAULT 0,
                password_hash TEXT,
                password_set_at REAL,
                password_history TEXT NOT NULL DEFAULT '[]',
                broker_hash TEXT,
                failed_logins INTEGER NOT NULL DEFAULT 0,
                locked_until REAL,
                created_at REAL NOT NULL,
                deactivated_at REAL
            )""",
            """CREATE TRIGGER users_no_delete BEFORE DELETE ON users
               BEGIN SELECT RAISE(ABORT, 'users are deactivated, never deleted'); END""",
            # A session's secret is derived from the daemon's key, never stored here.
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id),
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                revoked_at REAL
            )""",
            "CREATE INDEX sessions_by_user ON sessions (user_id)",
            # Electronic signatures (21 CFR 11.50/11.70): bound to the hash of what was signed.
            """CREATE TABLE signatures (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                object TEXT NOT NULL,
                user_id TEXT NOT NULL REFERENCES users (id),
                full_name TEXT NOT NULL,
                meaning TEXT NOT NULL,
                comment TEXT,
                time TEXT NOT NULL,
                content_sha256 TEXT NOT NULL
            )""",
            "CREATE INDEX signatures_by_object ON signatures (object, id)",
            """CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures
               BEGIN SELECT RAISE(ABORT, 'signatures cannot change'); END""",
            """CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures
               BEGIN SELECT RAISE(ABORT, 'signatures cannot be deleted'); END""",
            # Signed checkpoints of the audit chain (C2SP signed-note text in ``note``).
            """CREATE TABLE checkpoints (
                id INTEGER PRIMARY KEY,
                size INTEGER NOT NULL,
                head TEXT NOT NULL,
                time TEXT NOT NULL,
                prev TEXT NOT NULL,
                note TEXT NOT NULL
            )""",
            """CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
               BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END""",
            """CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
               BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END""",
        ],
    )
)


MIGRATIONS.append(
    (
        3,
        "store identity: a random id, made once, that job events on the bus carry",
        [
            # Not a covered table: the id is not a record, it names the store. Job ids
            # restart at 1 in a new store; the bus tells jobs of different stores apart by it.
            """CREATE TABLE store_meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            "INSERT INTO store_meta (key, value) VALUES ('store_id', lower(hex(randomblob(16))))",
            """CREATE TRIGGER store_meta_no_update BEFORE UPDATE ON store_meta
               BEGIN SELECT RAISE(ABORT, 'the store id never changes'); END""",
        ],
    )
)

MIGRATIONS.append(
    (
        4,
        "telemetry retention: per-minute roll-ups, audited removals of raw blocks",
        [
            # One retention step: the raw blocks it removed whole (id ranges, and the hash of
            # their rows as the audit chain last recorded them), the blocks it trimmed, the
            # archive holding their samples, and the hash of the roll-up rows it wrote. A
            # covered table: each row is under the chain like a job or a telemetry block.
            """CREATE TABLE telemetry_removals (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                blocks TEXT NOT NULL,
                blocks_removed INTEGER NOT NULL,
                blocks_sha256 TEXT NOT NULL,
                blocks_trimmed INTEGER NOT NULL,
                samples INTEGER NOT NULL,
                rollups INTEGER NOT NULL,
                rollups_sha256 TEXT NOT NULL,
                archive TEXT NOT NULL,
                archive_sha256 TEXT NOT NULL
            )""",
            # min/mean/max over the numeric samples of one signal in one minute (``minute``:
            # Unix time of its start, a multiple of 60); several rows of one minute (written
            # by different steps) are merged by the queries.
            """CREATE TABLE telemetry_rollups (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                removal INTEGER NOT NULL REFERENCES telemetry_removals (id),
                device TEXT NOT NULL,
                signal TEXT NOT NULL,
                minute INTEGER NOT NULL,
                unit TEXT NOT NULL,
                count INTEGER NOT NULL,
                numeric INTEGER NOT NULL,
                min REAL,
                mean REAL,
                max REAL,
                t_first REAL NOT NULL,
                t_last REAL NOT NULL
            )""",
            "CREATE INDEX telemetry_rollups_by_signal ON telemetry_rollups (device, signal, minute)",
            "CREATE INDEX telemetry_rollups_by_removal ON telemetry_rollups (removal, id)",
            """CREATE TRIGGER telemetry_rollups_no_update BEFORE UPDATE ON telemetry_rollups
               BEGIN SELECT RAISE(ABORT, 'roll-ups cannot change'); END""",
            # When a block of longer-kept samples (trimmed, or never due) is next due: a
            # hint, not a record (retention checks every sample against the policy itself).
            """CREATE TABLE telemetry_block_expiry (
                block INTEGER PRIMARY KEY,
                expires REAL NOT NULL
            )""",
            "CREATE INDEX telemetry_by_block ON telemetry (block)",
            "CREATE INDEX telemetry_blocks_by_time ON telemetry_blocks (t_first)",
            # The last record about a row, without reading the whole chain.
            "CREATE INDEX audit_by_object ON audit (object, seq)",
        ],
    )
)
MIGRATIONS.append(
    (
        5,
        "site leases: which daemon owns each device, and which one leads the site",
        [
            # Not a covered table: leases are renewed every few seconds and say who is live,
            # not what happened; taking one is audited (``site.lease``).
            """CREATE TABLE site_leases (
                name TEXT PRIMARY KEY,
                daemon TEXT NOT NULL,
                instance TEXT NOT NULL,
                acquired_at REAL NOT NULL,
                expires_at REAL NOT NULL
            )""",
        ],
    )
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
