"""Fixtures for simulated devices (see plugin.py)."""

__all__: list[str] = []
