"""Which samples are worth storing: a deadband on change, a minimum and a maximum interval."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ._models import SampleLike, TelemetryValue

__all__ = ["Deadband"]


@dataclass(slots=True)
class _Last:
    t: float
    value: TelemetryValue
    quality: str


class Deadband:
    """Per (device, signal): keep a sample when its value moved more than ``deadband``
    (any change for non-numeric values, or a change of quality) and at least
    ``min_interval_s`` passed since the last kept one; always keep one every
    ``max_interval_s`` so a flat signal still shows it was alive.

    ``per_signal`` overrides ``deadband`` for signals by name.
    """

    def __init__(
        self,
        deadband: float = 0.0,
        *,
        min_interval_s: float = 0.0,
        max_interval_s: float = 60.0,
        per_signal: dict[str, float] | None = None,
    ) -> None:
        if deadband < 0 or min_interval_s < 0 or max_interval_s <= 0:
            raise ValueError("deadband and min_interval_s must be >= 0, max_interval_s > 0")
        self.deadband = deadband
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self.per_signal = dict(per_signal or {})
        self._last: dict[tuple[str, str], _Last] = {}

    def accept(self, sample: SampleLike) -> bool:
        """True if ``sample`` should be stored; remembers it as the last kept one if so."""
        key = (sample.device, sample.signal)
        last = self._last.get(key)
        if last is None or self._keep(sample, last):
            self._last[key] = _Last(sample.t, sample.value, sample.quality)
            return True
        return False

    def filter(self, samples: Iterable[SampleLike]) -> list[SampleLike]:
        return [s for s in samples if self.accept(s)]

    def _keep(self, s: SampleLike, last: _Last) -> bool:
        elapsed = s.t - last.t
        if elapsed >= self.max_interval_s or s.quality != last.quality:
            return True
        if elapsed < self.min_interval_s:
            return False
        return self._changed(s.signal, s.value, last.value)

    def _changed(self, signal: str, value: TelemetryValue, old: TelemetryValue) -> bool:
        numeric = (int, float)
        if (
            isinstance(value, numeric)
            and isinstance(old, numeric)
            and not isinstance(value, bool)
            and not isinstance(old, bool)
        ):
            if math.isnan(value) or math.isnan(old):
                return not (math.isnan(value) and math.isnan(old))
            return abs(value - old) > self.per_signal.get(signal, self.deadband)
        return value != old
