"""What the method groups of ``SqliteDatabase`` (identity, leases) use of it, declared once
for the type checker: they are mixed into ``SqliteDatabase``, which defines them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dialect import Connection
from ._models import AuditRecord

__all__ = ["DatabaseMixin"]


class DatabaseMixin:
    """The base of ``SqliteDatabase``'s method groups."""

    if TYPE_CHECKING:
        path: Path
        label: str

        @property
        def _db(self) -> Connection: ...

        def _tx(self, *, durable: bool) -> AbstractContextManager[Connection]: ...

        def _errors(self) -> AbstractContextManager[None]: ...

        def _append_audit(
            self,
            db: Connection,
            *,
            t: float,
            actor: str,
            action: str,
            object: str,
            old: Any,
            new: Any,
            reason: str | None,
            row: tuple[str, Any] | None = None,
        ) -> AuditRecord: ...
