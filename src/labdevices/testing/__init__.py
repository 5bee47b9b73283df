"""A pytest plugin with fixtures that start simulated devices for users' own CI,
and ``stream_offline`` to check a G-code program against the simulated firmware
without any I/O."""

from ._stream import OfflineStream, stream_offline

__all__ = ["OfflineStream", "stream_offline"]
