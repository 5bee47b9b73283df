"""Simulators that speak the real wire protocols. Never imported by runtime code."""
