"""The toolpath kernels compiled at install: a job runs without numba, a stale module is
never used, and the build makes a module that computes what the installed one does."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import labdevices
from labdevices.toolpath import _kernel
from labdevices.toolpath._slice import merge_vertices
from labdevices.toolpath._slice_pipeline import contours_from_faces

EXAMPLES = Path(__file__).parents[2] / "examples" / "jobs"


def _box_corners() -> np.ndarray:
    v = np.array([[x, y, z] for z in (0.0, 1.0) for y in (0.0, 4.0) for x in (0.0, 3.0)])
    f = np.array(
        [
            [0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
            [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5],
        ]
    )  # fmt: skip
    return v[f].astype(np.float32)


def test_the_install_compiled_the_kernels() -> None:
    assert _kernel.compiled(), (
        "labdevices/toolpath/_compiled*.so is missing or older than the kernels' source: "
        "reinstall (pip install -e .) or run `labdevices warmup`"
    )


def test_a_mesh_job_imports_no_numba(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "labdevices", "toolpath",
         str(EXAMPLES / "mesh.toml"), "-o", str(tmp_path / "mesh.gcode")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "numpy" in imported
    assert not {m for m in imported if m.split(".")[0] in ("numba", "llvmlite")}
    assert "G1 X" in (tmp_path / "mesh.gcode").read_text()


def _copy_package(to: Path) -> Path:
    src = Path(labdevices.__file__).parent
    shutil.copytree(src, to / "labdevices", ignore=shutil.ignore_patterns("__pycache__"))
    return to / "labdevices" / "toolpath"


def _compiled_in(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "from labdevices.toolpath import _kernel; print(_kernel.compiled())"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(path)},
    )  # fmt: skip
    return done.stdout.strip()


def test_a_kernel_edited_after_the_build_runs_under_the_jit(tmp_path: Path) -> None:
    toolpath = _copy_package(tmp_path)
    assert _compiled_in(tmp_path) == "True"
    edited = toolpath / "_order.py"
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    assert _compiled_in(tmp_path) == "False"


def test_the_build_makes_a_module_equal_to_the_installed_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labdevices.toolpath._build_kernels", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [built] = tmp_path.glob("_compiled*.so")
    spec = importlib.util.spec_from_file_location("_compiled", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.toolpath__source_digest() == _kernel.source_digest()
    verts, faces = merge_vertices(_box_corners())
    np.testing.assert_array_equal(module.slice__merge_vertices(_box_corners())[1], faces)
    got = module.slice_pipeline__contours_from_faces(verts, faces, 0.25)
    want = contours_from_faces(verts, faces, 0.25)
    assert got[3] == want[3] == 4  # layers
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_compiled_kernel_takes_any_array_layout_and_checks_dimensions() -> None:
    if not _kernel.compiled():
        pytest.skip("the kernels run under the JIT")
    corners = _box_corners()
    wide = np.zeros((12, 3, 6), np.float64)
    wide[:, :, ::2] = corners  # strided and float64: made C-contiguous float32 first
    got = merge_vertices(wide[:, :, ::2])
    want = merge_vertices(corners)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="argument 1 must be a 3-d array"):
        merge_vertices(corners.reshape(12, 9))


def test_warmup_keeps_a_current_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labdevices", "warmup"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "toolpath kernels current already" in done.stdout
