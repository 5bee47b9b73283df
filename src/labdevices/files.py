"""Load TOML files into pydantic models, with errors that name the file and the field.

Used for device profiles, simulated labs, daemon configs and print jobs alike, so
that every malformed file a user writes is reported the same way: file, field,
reason — all problems at once, never a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from .errors import ConfigurationError

__all__ = ["StrictModel", "format_validation_error", "load_toml", "load_toml_model", "validate"]

T = TypeVar("T")


class StrictModel(BaseModel):
    """Base of every config-like model: unknown fields are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file raises ``ConfigurationError`` naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{p}: file not found", file=str(p)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{p}: cannot read: {exc}", file=str(p)) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{p}: not valid TOML: {exc}", file=str(p)) from exc


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _real_location(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """``loc`` without the tags pydantic inserts for tagged unions (not keys of the data)."""
    out: list[int | str] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part not in node:
                if isinstance(part, str) and len(out) < len(loc) - 1:
                    continue  # a union tag such as "gcode" or "printer"
                out.append(part)
                node = None
                continue
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        out.append(part)
    return tuple(out)


def format_validation_error(exc: ValidationError, source: str, data: Any = None) -> list[str]:
    """One line per problem: ``source: field.path: reason (got value)``."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = _real_location(tuple(err["loc"]), data)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        got = ""
        # (a whole table, as a model-level check sees it, says nothing the message does not)
        whole_table = isinstance(err.get("input"), dict) and err["type"] == "value_error"
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not whole_table:
            shown = repr(err["input"])
            got = f" (got {shown[:60]}{'…' if len(shown) > 60 else ''})"
        problems.append(f"{source}: {_field_path(loc)}: {msg}{got}")
    return problems


def validate(type_: type[T], data: Any, source: str) -> T:
    """Validate ``data`` as ``type_``; on failure raise ``ConfigurationError`` listing every problem."""
    try:
        return TypeAdapter(type_).validate_python(data)
    except ValidationError as exc:
        problems = format_validation_error(exc, source, data)
        raise ConfigurationError(
            f"{source}: {len(problems)} problem(s)", file=source, problems=problems
        ) from exc


def load_toml_model(path: str | Path, type_: type[T]) -> T:
    """Load and validate a TOML file in one step."""
    return validate(type_, load_toml(path), str(path))
