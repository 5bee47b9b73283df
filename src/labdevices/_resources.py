"""Locate the data that ships with labdevices: device profiles, simulated labs, configs.

In a wheel they live inside the package (``labdevices/_data``); in a checkout
(editable install) they are the top-level folders ``drivers/``, ``simulators/`` and
``config/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["data_dir"]

Kind = Literal["drivers", "simulators", "config"]

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: Kind) -> Path:
    """Return the folder holding the shipped ``kind`` files."""
    installed = _PACKAGE / "_data" / kind
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent.parent / kind
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"labdevices data folder {kind!r} not found (looked in {installed})")
