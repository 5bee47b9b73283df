"""The web server inside the daemon: uvicorn's ``Server`` serving on a socket bound up front
(so the address, port 0 included, is known before anything waits), stopped gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from ..errors import ConfigurationError
from ._live import LiveHub

__all__ = ["WebServer"]


class _Server(uvicorn.Server):
    """The daemon owns the signals: uvicorn must not take SIGINT/SIGTERM for itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """``bind()``, then ``await serve()`` in a task; ``await stop()`` ends every stream and waits."""

    def __init__(self, app: ASGIApp, host: str, port: int, hub: LiveHub) -> None:
        self.host = host
        self.port = port
        self.hub = hub
        config = uvicorn.Config(
            app,
            log_config=None,  # the daemon's logging stays as it is
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._socket: socket.socket | None = None
        self._done = asyncio.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            # Listening from now on: a browser that connects before serve() runs waits in the
            # backlog rather than being refused.
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"web.listen: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._socket = sock

    async def serve(self) -> None:
        assert self._socket is not None, "bind() first"
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()
            self._done.set()

    async def stop(self) -> None:
        self.hub.close()
        self._server.should_exit = True
        if self._socket is not None:
            # Bounded: a serve task cancelled before it ever ran never sets ``_done``.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._done.wait()
