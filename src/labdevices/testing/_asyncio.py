"""pytest-asyncio, used only where it is installed: the plugin loads in any test suite.

The plugin is registered for every project that has labdevices and pytest, also
projects that never ask for one of its fixtures. Without pytest-asyncio (the
``labdevices[testing]`` extra brings it) the async fixtures exist but fail with
a message saying what to install, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest

__all__ = ["HAS_PYTEST_ASYNCIO", "async_fixture"]

F = TypeVar("F", bound=Callable[..., Any])

_pytest_asyncio_fixture: Callable[[Any], Any] | None
try:
    from pytest_asyncio import fixture as _pytest_asyncio_fixture
except ModuleNotFoundError as exc:  # pragma: no cover - covered by the fresh-venv test
    if exc.name != "pytest_asyncio":
        raise
    _pytest_asyncio_fixture = None

HAS_PYTEST_ASYNCIO = _pytest_asyncio_fixture is not None


def async_fixture(func: F) -> F:
    """``pytest_asyncio.fixture`` (strict and auto mode alike), or a fixture saying it is missing."""
    if _pytest_asyncio_fixture is not None:
        return _pytest_asyncio_fixture(func)  # type: ignore[no-any-return]
    name = func.__name__

    def missing() -> NoReturn:
        pytest.fail(
            f"the labdevices fixture {name!r} is async and needs pytest-asyncio, "
            "which is not installed: pip install 'labdevices[testing]'",
            pytrace=False,
        )

    missing.__name__ = name
    missing.__doc__ = func.__doc__
    return pytest.fixture(name=name)(missing)  # type: ignore[return-value]
