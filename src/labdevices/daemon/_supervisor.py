"""Device supervision: open every device concurrently, retry the failing ones, feed their samples on.

One task per device. A device that cannot be opened is reported (state and last
error) and retried with capped, jittered exponential backoff while the others run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, cast

from pydantic import JsonValue

from .._logging import current_device
from ..devices import Device, DeviceState, Sample, create_device
from ..errors import DeviceConnectionError, LabDeviceError
from ..profiles import GcodeProfile, ModbusProfile, OpcUaProfile
from ._config import DeviceConfig

__all__ = ["DeviceSlot", "Supervisor"]

log = logging.getLogger("labdevices.daemon")

#: put among a device's samples to wake the supervisor for a restart
_RESTART: Any = object()

AnyProfile = GcodeProfile | ModbusProfile | OpcUaProfile
SampleSink = Callable[[Sample], None]
StateSink = Callable[["DeviceSlot"], None]


def driver_options(config: DeviceConfig, profile: AnyProfile) -> dict[str, Any]:
    """The driver's keyword options: ``options`` plus ``poll_interval_s`` in the driver's terms."""
    options: dict[str, Any] = dict(config.options)
    if config.poll_interval_s is not None:
        if isinstance(profile, GcodeProfile):
            options.setdefault("report_interval_s", config.poll_interval_s)
        elif isinstance(profile, ModbusProfile):
            options.setdefault("poll_interval_s", config.poll_interval_s)
        # OPC UA devices push by subscription at their profile's publishing interval.
    return options


class DeviceSlot:
    """One configured device: the open driver (if any), its state and its last error."""

    def __init__(self, name: str, config: DeviceConfig, profile: AnyProfile) -> None:
        self.name = name
        self.config = config
        self.profile = profile
        self.device: Device[Any] | None = None
        self.state: str = DeviceState.OFFLINE.value
        self.error: str | None = None
        self.attempts = 0
        self.since = time.time()
        self._changed = asyncio.Event()
        #: the samples queue of the open device (the supervisor's), to wake it for a restart
        self._samples: asyncio.Queue[Sample] | None = None
        self._restart = False

    @property
    def is_printer(self) -> bool:
        return isinstance(self.profile, GcodeProfile)

    def set(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.error = error
        self.since = time.time()
        self._changed.set()
        self._changed = asyncio.Event()

    def require(self) -> Device[Any]:
        """The open device, or ``DeviceConnectionError`` saying why there is none."""
        device = self.device
        if device is None or device.state in (DeviceState.OFFLINE, DeviceState.CONNECTING):
            why = f": {self.error}" if self.error else ""
            raise DeviceConnectionError(f"device is {self.state}{why}", device=self.name)
        return device

    def request_restart(self) -> None:
        """Close the device and open it again (handshake and all), at once, not after a backoff."""
        if self._samples is None:
            return  # not open: the supervisor is opening it anyway
        self._restart = True
        # a marker among the samples wakes the supervisor; a full queue is being drained,
        # and the flag is read after each sample
        with contextlib.suppress(asyncio.QueueFull):
            self._samples.put_nowait(cast(Sample, _RESTART))

    async def wait_ready(self) -> Device[Any]:
        """Wait until the device is open and idle."""
        while True:
            device = self.device
            if device is not None and device.state == DeviceState.IDLE:
                return device
            await self._changed.wait()

    def describe(self) -> dict[str, JsonValue]:
        signals: dict[str, JsonValue] = {
            name: {
                "unit": sig.unit,
                "writable": sig.writable,
                "min": sig.min,
                "max": sig.max,
            }
            for name, sig in self.profile.signals.items()
        }
        return {
            "device": self.name,
            "state": self.state,
            "profile": self.profile.name,
            "driver": self.profile.driver,
            "error": self.error,
            "since": self.since,
            "signals": signals,
        }


class Supervisor:
    """Runs each ``DeviceSlot``: open, pump samples to ``on_sample``, report states to ``on_state``."""

    def __init__(
        self,
        slots: dict[str, DeviceSlot],
        *,
        on_sample: SampleSink,
        on_state: StateSink,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        self.slots = slots
        self._on_sample = on_sample
        self._on_state = on_state
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s

    async def run(self, slot: DeviceSlot) -> None:
        """Keep one device open until cancelled (closed and opened again on ``request_restart``)."""
        # whatever this task and the driver's tasks log (pymodbus, asyncua too) names the device
        current_device.set(slot.name)
        while True:
            slot.attempts += 1
            self._report(slot, DeviceState.CONNECTING.value)
            try:
                await self._hold_open(slot)
                log.info("%s: restarting (requested)", slot.name)
                continue
            except LabDeviceError as exc:
                slot.device = None
                log.warning("%s: %s (attempt %d)", slot.name, exc.message, slot.attempts)
                self._report(slot, DeviceState.OFFLINE.value, str(exc))
            except OSError as exc:  # a driver that let a raw I/O error through
                slot.device = None
                log.warning("%s: %s (attempt %d)", slot.name, exc, slot.attempts)
                self._report(slot, DeviceState.OFFLINE.value, f"{type(exc).__name__}: {exc}")
            delay = min(self._retry_max_s, self._retry_min_s * 2 ** min(slot.attempts - 1, 16))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _hold_open(self, slot: DeviceSlot) -> None:
        assert slot.config.address is not None
        device = create_device(
            slot.name,
            slot.profile,
            slot.config.address,
            **driver_options(slot.config, slot.profile),
        )

        def changed(old: DeviceState, new: DeviceState) -> None:
            if slot.device is device:
                reason = device.fault_reason if new == DeviceState.FAULT else None
                self._report(slot, new.value, reason)

        device.on_state_change(changed)
        try:
            async with device, device.subscribe() as samples:
                slot.device = device
                slot._samples = samples
                slot.attempts = 0
                slot.error = None
                self._report(slot, device.state.value)
                log.info("%s: open (%s)", slot.name, slot.profile.name)
                while not slot._restart:
                    sample = await samples.get()
                    if sample is not _RESTART:
                        self._on_sample(sample)
                    # Drain what else is there without yielding per sample.
                    for _ in range(samples.qsize()):
                        sample = samples.get_nowait()
                        if sample is not _RESTART:
                            self._on_sample(sample)
        finally:
            slot._restart = False
            slot._samples = None
            if slot.device is device:
                slot.device = None
                self._report(slot, DeviceState.OFFLINE.value)

    def _report(self, slot: DeviceSlot, state: str, error: str | None = None) -> None:
        slot.set(state, error)
        self._on_state(slot)
