"""The pytest plugin in an installed wheel, with and without the ``labdevices[testing]`` extra.

Each install is a fresh venv holding the wheel built from this checkout. Its other
dependencies come from this venv through a ``.pth`` file that leaves out
pytest-asyncio, so the venv is what a user has after ``pip install labdevices pytest``
(and ``pip install 'labdevices[testing]'``) without downloading them again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = """
import pytest

def test_plain(request):
    # the labdevices plugin is loaded, and harmless to a suite that never asks for it
    assert request.config.pluginmanager.has_plugin("labdevices")
    assert 1 + 1 == 2

def test_plugin_registered(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("labdevices") is not None

@pytest.mark.skipif("not config.getoption('--want-async')")
def test_async_fixture(modbus_incubator):
    assert modbus_incubator.address.startswith("tcp://127.0.0.1:")
"""

CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--want-async", action="store_true")
"""


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", out, ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("labdevices-*.whl")
    return found


@pytest.fixture(scope="module")
def deps_without_pytest_asyncio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This venv's site-packages as symlinks, without labdevices itself and pytest-asyncio."""
    site = Path(sysconfig.get_paths()["purelib"])
    deps = tmp_path_factory.mktemp("deps")
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("pytest_asyncio", "labdevices", "_editable_impl", "__pycache__")):
            continue
        if name.endswith(".pth"):
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


def make_venv(where: Path, deps: Path) -> Path:
    done = run(sys.executable, "-m", "venv", "--without-pip", where)
    assert done.returncode == 0, done.stderr
    python = where / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(purelib.stdout.strip(), "deps.pth").write_text(f"{deps}\n")
    return python


def pip_install(python: Path, requirement: str) -> None:
    done = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", requirement)
    assert done.returncode == 0, done.stdout + done.stderr


def user_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_user.py").write_text(USER_TESTS)
    (project / "conftest.py").write_text(CONFTEST)
    return project


def test_plugin_without_pytest_asyncio(
    tmp_path: Path, wheel: Path, deps_without_pytest_asyncio: Path
) -> None:
    python = make_venv(tmp_path / "venv", deps_without_pytest_asyncio)
    pip_install(python, str(wheel))
    assert run(python, "-c", "import pytest_asyncio").returncode != 0
    project = user_project(tmp_path)

    done = run(python, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 1 skipped" in done.stdout

    # Asking for an async fixture says what is missing, instead of breaking collection.
    done = run(python, "-m", "pytest", "-p", "no:cacheprovider", "--want-async", project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert "'modbus_incubator' is async and needs pytest-asyncio" in done.stdout
    assert "pip install 'labdevices[testing]'" in done.stdout
    assert "ModuleNotFoundError" not in done.stdout + done.stderr


def test_plugin_with_the_testing_extra(
    tmp_path: Path, wheel: Path, deps_without_pytest_asyncio: Path
) -> None:
    python = make_venv(tmp_path / "venv", deps_without_pytest_asyncio)
    # The extra brings pytest-asyncio (from pip's cache), nothing else is missing.
    pip_install(python, f"labdevices[testing] @ {wheel.as_uri()}")
    project = user_project(tmp_path)
    # strict mode, pytest-asyncio's default: the plugin's fixtures must work there too
    done = run(
        python, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "--want-async",
        "-o", "asyncio_mode=strict", "-o", "asyncio_default_fixture_loop_scope=function",
        project,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
