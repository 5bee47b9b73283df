"""Dependencies point down (shared/DESIGN.md): checked on the source, not by convention."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "labdevices"


def imported_packages(path: Path) -> set[str]:
    """Top-level labdevices packages a module imports (relative imports resolved)."""
    module = path.relative_to(SRC.parent).with_suffix("").parts
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module[: len(module) - node.level])
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                target = (node.module or "").split(".")
            names = [target] if len(target) > 1 else [[*target, a.name] for a in node.names]
            for t in names:
                if t[0] == "labdevices" and len(t) > 1:
                    out.add(t[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "labdevices" and len(parts) > 1:
                    out.add(parts[1])
    return out


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def test_runtime_code_never_imports_simulators_or_test_fixtures() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if package_of(p) not in ("sim", "testing", "cli")
        and imported_packages(p) & {"sim", "testing"}
    ]
    assert offenders == []


def test_toolpath_imports_nothing_from_the_io_layers() -> None:
    io_layers = {"devices", "transports", "bus", "daemon", "store", "client", "sim", "cli"}
    offenders = {
        str(p.relative_to(SRC)): sorted(imported_packages(p) & io_layers)
        for p in (SRC / "toolpath").rglob("*.py")
        if imported_packages(p) & io_layers
    }
    assert offenders == {}


def test_protocol_cores_do_no_io() -> None:
    for p in (SRC / "protocols").rglob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        assert not any(isinstance(n, ast.AsyncFunctionDef | ast.Await) for n in ast.walk(tree)), p
        assert not imported_packages(p) & {"transports", "devices", "bus", "sim"}, p
