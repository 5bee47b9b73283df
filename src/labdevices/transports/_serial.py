"""Byte streams to serial devices: real ports by path, ``socket://host:port``, pseudo-terminals.

Every call takes a timeout; a vanished port raises ``DeviceConnectionError``
and never hangs. Real ports and ptys use pyserial-asyncio-fast (a real asyncio
serial transport, no I/O on the event loop thread); ``socket://`` URLs use
asyncio's own TCP streams.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import serial_asyncio_fast

from ..errors import DeviceConnectionError, DeviceTimeoutError

__all__ = ["SerialTransport"]


class SerialTransport:
    """A serial link opened by ``open()`` and closed by ``close()`` (safe twice)."""

    def __init__(self, url: str, *, baudrate: int = 115200, device: str | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self.device = device or url
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def open(self, timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                if self.url.startswith("socket://"):
                    parts = urlsplit(self.url)
                    if not parts.hostname or not parts.port:
                        raise DeviceConnectionError(
                            f"bad socket URL {self.url!r} (want socket://host:port)",
                            device=self.device,
                        )
                    self._reader, self._writer = await asyncio.open_connection(
                        parts.hostname, parts.port
                    )
                else:
                    self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                        url=self.url, baudrate=self.baudrate, exclusive=False
                    )
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"opening {self.url} took longer than {timeout} s", device=self.device
            ) from exc
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise DeviceConnectionError(
                f"cannot open {self.url}: {exc}", device=self.device
            ) from exc

    async def write(self, data: bytes, timeout: float = 5.0) -> None:
        writer = self._require_writer()
        try:
            writer.write(data)
            async with asyncio.timeout(timeout):
                await writer.drain()
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"writing to {self.url} blocked for more than {timeout} s", device=self.device
            ) from exc
        except (OSError, RuntimeError) as exc:
            raise DeviceConnectionError(f"link {self.url} lost: {exc}", device=self.device) from exc

    def write_nowait(self, data: bytes) -> None:
        """Queue bytes for the wire without waiting (callers bound what they queue)."""
        writer = self._require_writer()
        try:
            writer.write(data)
        except (OSError, RuntimeError) as exc:
            raise DeviceConnectionError(f"link {self.url} lost: {exc}", device=self.device) from exc

    async def read(self, max_bytes: int = 65536, timeout: float = 5.0) -> bytes:
        """Up to ``max_bytes`` as soon as some arrive; EOF is a lost link, not empty bytes."""
        if self._reader is None:
            raise DeviceConnectionError(f"link {self.url} is not open", device=self.device)
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"no data from {self.url} for {timeout} s", device=self.device
            ) from exc
        except OSError as exc:
            raise DeviceConnectionError(f"link {self.url} lost: {exc}", device=self.device) from exc
        if not data:
            raise DeviceConnectionError(
                f"link {self.url} closed by the other end", device=self.device
            )
        return data

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(2.0):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the link is gone either way

    def _require_writer(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.is_closing():
            raise DeviceConnectionError(f"link {self.url} is not open", device=self.device)
        return self._writer
