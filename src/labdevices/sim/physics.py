"""Small physics helpers shared by the simulated incubator and bioreactor: lags and PID loops."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Pid", "approach"]


def approach(value: float, target: float, tau_s: float, dt_s: float) -> float:
    """First-order lag: ``value`` moves toward ``target`` with time constant ``tau_s`` (exact step)."""
    if tau_s <= 0:
        return target
    return target + (value - target) * math.exp(-dt_s / tau_s)


@dataclass
class Pid:
    """A PID controller with output clamping and anti-windup (integration stops while saturated)."""

    kp: float
    ki: float
    kd: float = 0.0
    out_min: float = 0.0
    out_max: float = 100.0
    integral: float = 0.0
    _last_error: float | None = None

    def update(self, setpoint: float, measured: float, dt_s: float) -> float:
        error = setpoint - measured
        derivative = 0.0
        if self._last_error is not None and dt_s > 0:
            derivative = (error - self._last_error) / dt_s
        self._last_error = error
        unclamped = (
            self.kp * error + self.ki * (self.integral + error * dt_s) + self.kd * derivative
        )
        out = min(max(unclamped, self.out_min), self.out_max)
        if out == unclamped:
            self.integral += error * dt_s
        return out
