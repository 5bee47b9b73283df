"""Errors of the store, rooted in the one ``labdevices.errors`` tree."""

from __future__ import annotations

from ..errors import JobRejected, LabDeviceError

__all__ = ["InvalidTransition", "StoreError", "StoreUnavailable"]


class StoreError(LabDeviceError):
    """The store cannot be opened or read, or a record it was asked about does not exist.

    ``file`` names the database file concerned.
    """

    code = "store"

    def __init__(self, message: str, *, file: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)


class StoreUnavailable(StoreError):
    """The database server cannot be reached (down, restarting, network): nothing of the call
    was committed, and the same call may succeed once the server is back."""


class InvalidTransition(JobRejected):
    """A job was asked to move to a state its current state does not allow; nothing changed."""

    def __init__(self, job_id: int, old: str, new: str, allowed: list[str]) -> None:
        self.job_id = job_id
        self.old = old = str(old)
        self.new = new = str(new)
        allowed = [str(a) for a in allowed]
        allowed_text = ", ".join(allowed) if allowed else "none: the job has ended"
        super().__init__(
            f"job {job_id}: cannot go from {old!r} to {new!r} (allowed from {old!r}: {allowed_text})"
        )
