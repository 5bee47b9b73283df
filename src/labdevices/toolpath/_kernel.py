"""How the toolpath kernels run: compiled ahead of time at install, or by numba's JIT.

Installing the package compiles every ``@kernel`` into the extension module
``_compiled`` (``_build_kernels``, run by the build hook and by ``labdevices warmup``):
a job then never imports numba — no compilation on a first run, no LLVM in memory.
Without that module, or when a kernel's source changed since it was built, the same
kernels run under numba's JIT (cached), as a checkout being edited needs; so they do
with ``LABDEVICES_KERNELS=jit`` in the environment.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

__all__ = ["KERNELS", "KERNEL_MODULES", "compiled", "kernel", "py_func", "source_digest"]

F = TypeVar("F", bound=Callable[..., Any])

# the modules holding kernels: their source decides whether the compiled module is current
KERNEL_MODULES = (
    "_slice",
    "_contours",
    "_slice_pipeline",
    "_infill",
    "_order",
    "_emit",
    "_physics",
)

# every kernel as (exported name, Python function, signature), for the ahead-of-time build
KERNELS: list[tuple[str, Callable[..., Any], str]] = []
_PYTHON: dict[int, Callable[..., Any]] = {}


def source_digest() -> int:
    """A 63-bit digest of the kernel modules' source."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in KERNEL_MODULES:
        h.update((here / f"{name}.py").read_bytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def _load_compiled() -> ModuleType | None:
    if os.environ.get("LABDEVICES_KERNELS") == "jit":
        return None
    try:
        _compiled = importlib.import_module(f"{__package__}._compiled")
    except ImportError:
        return None
    try:
        current = _compiled.toolpath__source_digest() == source_digest()
    except (AttributeError, OSError):
        return None
    return _compiled if current else None


_COMPILED = _load_compiled()


def compiled() -> bool:
    """True when the kernels run from the module compiled at install (no numba)."""
    return _COMPILED is not None


def kernel(signature: str) -> Callable[[F], F]:
    """Declare a numba kernel with its one signature (numba's string form, array arguments
    C-contiguous as ``f8[:, ::1]``). Returns the compiled function (which makes every array
    argument so), or a numba JIT dispatcher."""

    def wrap(fn: F) -> F:
        name = f"{fn.__module__.rsplit('.', 1)[-1].lstrip('_')}__{fn.__name__}"
        KERNELS.append((name, fn, signature))
        if _COMPILED is not None:
            done = _checked(getattr(_COMPILED, name), signature)
            _PYTHON[id(done)] = fn
            return done  # type: ignore[return-value]
        from numba import njit

        return njit(cache=True)(fn)  # type: ignore[return-value]

    return wrap


_DTYPES = {"f8": "float64", "f4": "float32", "i8": "int64", "i4": "int32", "i1": "int8",
           "u8": "uint64", "u4": "uint32", "u1": "uint8", "b1": "bool"}  # fmt: skip


def _arguments(signature: str) -> list[str]:
    """The argument types of ``RET(ARG, ...)``, as written."""
    depth, start = 0, len(signature) - 1
    for i in range(len(signature) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(signature[i], 0)
        if depth == 0:
            start = i
            break
    args, depth, cur = [], 0, ""
    for ch in signature[start + 1 : -1]:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*args, cur.strip()] if cur.strip() else args


def _checked(compiled_fn: Callable[..., Any], signature: str) -> Callable[..., Any]:
    """The compiled function behind a guard: a compiled module reads array memory as its
    signature says (it checks only the item size), so every array argument is made
    C-contiguous of the declared type and dimensions first, as the JIT would specialise."""
    import numpy as np

    arrays: list[tuple[int, Any, int]] = []
    for i, arg in enumerate(_arguments(signature)):
        if arg.startswith("Array("):  # Array(u1, 1, 'C', readonly=True)
            code, ndim = arg[6:].split(",")[:2]
            arrays.append((i, np.dtype(_DTYPES[code.strip()]), int(ndim)))
        elif "[" in arg:  # f8[:, ::1]
            arrays.append((i, np.dtype(_DTYPES[arg[: arg.index("[")]]), arg.count(",") + 1))

    def call(*args: Any) -> Any:
        fixed = list(args)
        for i, dtype, ndim in arrays:
            a = np.ascontiguousarray(fixed[i], dtype)
            if a.ndim != ndim:
                raise TypeError(
                    f"{compiled_fn.__name__}: argument {i + 1} must be a {ndim}-d array, not {a.ndim}-d"
                )
            fixed[i] = a
        return compiled_fn(*fixed)

    call.__name__ = call.__qualname__ = compiled_fn.__name__
    return call


def py_func(k: Callable[..., Any]) -> Callable[..., Any]:
    """The plain Python function behind a kernel (either kind)."""
    fn = _PYTHON.get(id(k)) or getattr(k, "py_func", None)
    if fn is None:
        raise TypeError(f"{k!r} is not a toolpath kernel")
    return fn
