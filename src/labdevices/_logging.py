"""One voice in the logs: labdevices' own lines and those of pymodbus and asyncua, through one handler.

By default (WARNING) a library's line is one line: no frame dumps (pymodbus appends the
last frames, ``>>>>> send: 0x0 0x6 …``, to its errors), no ``Repeating....``, no traceback
(asyncua's ``Publish iteration crashed``: the exception's type and message instead). With
``--debug`` everything is shown, frames included. Each line names its device once: the
device whose task logged it (``device_context``), and an ``incubator: incubator:`` prefix
collapses to one.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

__all__ = ["LIBRARIES", "configure_logging", "current_device", "one_voice"]

#: the device a task works for (set by the daemon's supervisor for each device's tasks)
current_device: ContextVar[str | None] = ContextVar("labdevices_device", default=None)
#: the libraries whose logs go through labdevices' handler
LIBRARIES = ("pymodbus", "asyncua")

_DOUBLED = re.compile(r"^([\w.@-]+): \1: ")
_HANDLER_NAME = "labdevices"


class _OneVoice(logging.Filter):
    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_labdevices_voiced", False):
            return True  # another of our handlers did it (a record is shared by handlers)
        library = record.name.split(".", 1)[0]
        foreign = library in LIBRARIES
        message = record.getMessage()
        if foreign and not self.debug:
            if message.strip() == "Repeating....":
                return False
            message = message.split("\n>>>>>", 1)[0].strip()
            message = message.splitlines()[0] if message else message
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message} ({type(exc).__name__}: {exc})"
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        device = current_device.get()
        if device and not message.startswith(f"{device}: "):
            message = f"{device}: {message}"
        message = _DOUBLED.sub(r"\1: ", message)
        if foreign:
            message = f"{message} [{library}]"
        record.msg = message
        record.args = None
        record._labdevices_voiced = True
        return True


def one_voice(debug: bool = False) -> logging.Filter:
    """The filter that gives a handler labdevices' voice (see the module's docstring)."""
    return _OneVoice(debug)


def configure_logging(debug: bool = False) -> None:
    """Log to stderr through one handler: WARNING and up by default, everything with ``debug``.

    Idempotent: a second call replaces the handler it installed the first time.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    handler.addFilter(one_voice(debug))
    root.addHandler(handler)
    level = logging.DEBUG if debug else logging.WARNING
    root.setLevel(level)
    for library in LIBRARIES:
        logger = logging.getLogger(library)
        logger.setLevel(level)
        # their own handlers (pymodbus_apply_logging_config) would print a second copy
        for own in list(logger.handlers):
            if not isinstance(own, logging.NullHandler):
                logger.removeHandler(own)
        logger.propagate = True
