"""The job, alarm, telemetry and audit store: SQLite (WAL) by default, or PostgreSQL, one interface.

Every job transition, alarm change, command and config load is written together
with a record of a SHA-256 hash chain, whose head the daemon signs at checkpoints;
``verify_store`` proves every record against the public key and a witness.
"""

from ._audit import GENESIS_HASH, VerifyResult, canonical_json, record_hash, verify_chain
from ._checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    WitnessLog,
    default_witness_path,
    load_verifier,
    verifier_key,
)
from ._errors import InvalidTransition, StoreError, StoreUnavailable
from ._identity import (
    ARGON2_PARAMETERS,
    AccountLocked,
    AuthPolicy,
    PasswordRejected,
    SessionRecord,
    UserRecord,
    mosquitto_hash,
    mosquitto_verify,
    validate_user_id,
)
from ._keys import (
    default_key_path,
    derive_key,
    fingerprint,
    load_or_create_signing_key,
    load_public_key,
    public_key_bytes,
)
from ._leases import LEADER_LEASE, LeaseRecord, device_lease
from ._models import (
    TERMINAL_STATES,
    TRANSITIONS,
    AlarmRecord,
    AuditRecord,
    JobEvent,
    JobRecord,
    JobState,
    SampleLike,
    Severity,
    TelemetryPoint,
    TelemetryValue,
)
from ._paths import default_db_path, is_postgres_url, redact_url
from ._retention import RetentionPolicy, RetentionSummary, run_retention
from ._rows import COVERED, job_content_sha256, row_sha256
from ._signatures import (
    MEANINGS,
    RELEASE_MEANINGS,
    ContentMismatch,
    SignatureRecord,
    SignatureResult,
)
from ._sqlite import RollupPoint, SignalSummary, SqliteDatabase, verify_audit
from ._store import DatabaseStore, PostgresStore, SqliteStore, Store, open_database, open_store
from ._telemetry import Deadband
from ._verify import (
    EXIT_TAMPERED,
    EXIT_UNANCHORED,
    EXIT_VERIFIED,
    Finding,
    StoreReport,
    verify_store,
)

__all__ = [
    "ARGON2_PARAMETERS",
    "COVERED",
    "EXIT_TAMPERED",
    "EXIT_UNANCHORED",
    "EXIT_VERIFIED",
    "GENESIS_HASH",
    "LEADER_LEASE",
    "MEANINGS",
    "RELEASE_MEANINGS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AccountLocked",
    "AlarmRecord",
    "AuditRecord",
    "AuthPolicy",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "ContentMismatch",
    "DatabaseStore",
    "Deadband",
    "Finding",
    "InvalidTransition",
    "JobEvent",
    "JobRecord",
    "JobState",
    "LeaseRecord",
    "PasswordRejected",
    "PostgresStore",
    "RetentionPolicy",
    "RetentionSummary",
    "RollupPoint",
    "SampleLike",
    "SessionRecord",
    "Severity",
    "SignalSummary",
    "SignatureRecord",
    "SignatureResult",
    "SqliteDatabase",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreReport",
    "StoreUnavailable",
    "TelemetryPoint",
    "TelemetryValue",
    "UserRecord",
    "VerifyResult",
    "WitnessLog",
    "canonical_json",
    "default_db_path",
    "default_key_path",
    "default_witness_path",
    "derive_key",
    "device_lease",
    "fingerprint",
    "is_postgres_url",
    "job_content_sha256",
    "load_or_create_signing_key",
    "load_public_key",
    "load_verifier",
    "mosquitto_hash",
    "mosquitto_verify",
    "open_database",
    "open_store",
    "public_key_bytes",
    "record_hash",
    "redact_url",
    "row_sha256",
    "run_retention",
    "validate_user_id",
    "verifier_key",
    "verify_audit",
    "verify_chain",
    "verify_store",
]
