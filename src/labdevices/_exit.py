"""Leaving a one-shot command quickly.

A process that has imported numba holds hundreds of thousands of objects (its type
system, registries and compiled code). At exit the interpreter runs full garbage
collections over all of them, which costs a few tenths of a second — as much as
slicing a small mesh. ``skip_final_collection`` moves every live object out of the
collector's reach: the interpreter still frees them by reference counting and still
runs ``atexit`` handlers, it only no longer searches them for cycles.

Only for the very end of a process, once every file is closed: an object left in a
reference cycle is then never finalised (an unclosed buffered file in a cycle would
not be flushed). A command asks for it with ``request_quick_exit``; the ``labdevices``
entry point honours the request as it returns, so that a command run in-process (by
a test's ``CliRunner``) leaves the garbage collector alone.
"""

from __future__ import annotations

import gc

__all__ = ["quick_exit_if_requested", "request_quick_exit", "skip_final_collection"]

_requested = False


def skip_final_collection() -> None:
    """Let the process exit without the interpreter's final garbage collections."""
    gc.disable()
    gc.freeze()


def request_quick_exit() -> None:
    """Ask the entry point to ``skip_final_collection`` once the command has returned."""
    global _requested
    _requested = True


def quick_exit_if_requested() -> None:
    if _requested:
        skip_final_collection()
