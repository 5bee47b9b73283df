"""Compile every toolpath kernel ahead of time into the extension module ``_compiled``.

Run by the package's build hook (``hatch_build.py``) at install, and by ``labdevices
warmup``: ``python -m labdevices.toolpath._build_kernels [OUTPUT_DIR]``. Needs numba
and a C compiler; imports nothing of labdevices but the kernel modules. numba's ``pycc``
has been "pending deprecation" since 0.57 (still in 0.68): should a numba drop it, the
build fails, the install says so and the kernels run under the JIT.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["build"]


def build(output_dir: Path | None = None) -> tuple[Path, float]:
    """Compile the kernels into ``output_dir`` (default: beside this file); returns the
    module's path and the seconds it took (-1 if it was current already)."""
    # the kernels must be numba dispatchers here, whatever an older build left behind
    os.environ["LABDEVICES_KERNELS"] = "jit"
    if "labdevices.toolpath._kernel" in sys.modules:
        raise RuntimeError("build the kernels in a fresh process (the kernels are loaded)")
    from labdevices.toolpath import _kernel

    out = Path(output_dir or Path(__file__).parent)
    t0 = time.perf_counter()
    digest = _kernel.source_digest()
    existing = out / f"_compiled{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    if existing.exists() and _digest_of(existing) == digest:
        return existing, -1.0  # built from this very source: nothing to do
    from numba.pycc import CC  # type: ignore[attr-defined]

    for name in _kernel.KERNEL_MODULES:
        importlib.import_module(f"labdevices.toolpath.{name}")
    cc = CC("_compiled")  # type: ignore[no-untyped-call]
    cc.verbose = False
    for name, fn, signature in _kernel.KERNELS:
        cc.export(name, signature)(fn)  # type: ignore[no-untyped-call]
    scope: dict[str, object] = {}
    exec(f"def source_digest():\n    return {digest}\n", scope)  # a constant, no input
    cc.export("toolpath__source_digest", "i8()")(scope["source_digest"])  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory() as tmp:
        cc.output_dir = tmp
        cc.compile()
        [built] = Path(tmp).glob("_compiled*")
        out.mkdir(parents=True, exist_ok=True)
        target = out / built.name
        partial = out / f".{built.name}.partial"
        partial.write_bytes(built.read_bytes())
        os.replace(partial, target)  # a running job keeps the module it loaded
    return target, time.perf_counter() - t0


def _digest_of(path: Path) -> int | None:
    spec = importlib.util.spec_from_file_location("_compiled", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return int(module.toolpath__source_digest())
    except (ImportError, AttributeError):
        return None


if __name__ == "__main__":
    path, seconds = build(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    done = "current already" if seconds < 0 else f"compiled in {seconds:.1f} s"
    print(f"toolpath kernels {done}: {path}")
