"""Benchmark shim (``run.py --tcp-nodelay``): every TCP connection of the process gets TCP_NODELAY.

paho-mqtt does not set it, so a small MQTT packet can wait for the peer's delayed
ACK (~40 ms) behind Nagle's algorithm. This shows what setting it in ``BusClient`` gains.
"""

import contextlib
import socket

_create_connection = socket.create_connection


def _create_connection_nodelay(*args, **kwargs):  # type: ignore[no-untyped-def]
    sock = _create_connection(*args, **kwargs)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


socket.create_connection = _create_connection_nodelay
