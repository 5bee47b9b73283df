"""The dashboard the daemon serves: server-rendered pages, live values over server-sent events,
every action through the daemon's own authorisation and audit (README "The dashboard", docs/security.md)."""

from ._app import WebBackend, create_app
from ._live import LiveHub
from ._server import WebServer
from ._sessions import WebSessions, WebUser

__all__ = ["LiveHub", "WebBackend", "WebServer", "WebSessions", "WebUser", "create_app"]
