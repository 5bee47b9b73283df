"""``labdevices print`` and ``labdevices demo``: stream G-code into a printer with a progress bar."""

from __future__ import annotations

from . import app  # noqa: F401
