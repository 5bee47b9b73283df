"""A simulated stirred-tank bioreactor: jacket temperature, pH under cell metabolism, DO, feed, level.

Serves ``drivers/stirred-tank-bioreactor.toml`` over Modbus RTU through
``ModbusSimulator``. Cells grow and acidify the medium; pH control sparges CO2
when the pH is high and doses base when it is low. Dissolved oxygen follows
kLa (agitation, aeration) against the cells' uptake.
"""

from __future__ import annotations

import math
import random

from ..profiles import ModbusProfile, load_profile
from .modbus import FaultPlan, ModbusSimulator, SimUnit
from .physics import Pid, approach

__all__ = ["BioreactorModel", "bioreactor_simulator"]

WORKING_VOLUME_L = 2.0


class BioreactorModel:
    """The vessel's physics; signal names are those of the stirred-tank-bioreactor profile."""

    def __init__(self, seed: int = 0) -> None:
        self.random = random.Random(seed)
        self.temperature = 37.0
        self.ph = 7.2
        self.dissolved_oxygen = 60.0
        self.volume_l = 1.5
        self.cells = 0.5  # 1e6 cells/mL
        self.co2_dosing = 0.0
        self.base_added_ml = 0.0
        self.values: dict[str, float | bool] = {
            "temperature_setpoint": 37.0,
            "ph_setpoint": 7.2,
            "agitation": 150.0,
            "aeration": 0.2,
            "feed_rate": 0.0,
            "feed_pump": False,
            "ph_control": True,
        }
        self.jacket = Pid(kp=30.0, ki=0.1)
        self.jacket.integral = 25.0 / 0.1
        self.jacket_output = 25.0

    def step(self, dt_s: float) -> None:
        v = self.values
        # Temperature: the jacket heats up to 0.02 degC/s; the vessel loses heat to a 22 degC room.
        self.jacket_output = self.jacket.update(
            float(v["temperature_setpoint"]), self.temperature, dt_s
        )
        self.temperature += self.jacket_output / 100.0 * 0.02 * dt_s
        self.temperature = approach(self.temperature, 22.0, 2400.0, dt_s)
        # Growth: 0.04 /h, slowed by low oxygen and off-optimum temperature.
        oxygen_factor = self.dissolved_oxygen / (self.dissolved_oxygen + 5.0)
        temp_factor = math.exp(-(((self.temperature - 37.0) / 4.0) ** 2))
        self.cells *= math.exp(0.04 / 3600.0 * oxygen_factor * temp_factor * dt_s)
        # Metabolism: lactate and CO2 lower the pH in proportion to the cells.
        self.ph -= 2e-6 * self.cells * dt_s
        self.co2_dosing = 0.0
        if v["ph_control"]:
            error = self.ph - float(v["ph_setpoint"])
            if error > 0.02:  # too alkaline: sparge CO2
                self.co2_dosing = min(100.0, error * 1000.0)
                self.ph -= self.co2_dosing / 100.0 * 5e-4 * dt_s
            elif error < -0.02:  # too acidic: dose base at up to 0.01 mL/s
                dose = min(0.01, -error * 0.2) * dt_s
                self.base_added_ml += dose
                self.volume_l += dose / 1000.0
                self.ph += dose * 0.05 / self.volume_l
        # Dissolved oxygen: kLa from agitation and aeration, against the cells' uptake.
        kla = 0.004 * (float(v["agitation"]) / 150.0) ** 1.5 * (float(v["aeration"]) + 0.05) / 0.25
        uptake = 0.0008 * self.cells * (self.dissolved_oxygen / (self.dissolved_oxygen + 2.0))
        self.dissolved_oxygen += (kla * (100.0 - self.dissolved_oxygen) - uptake) * dt_s
        self.dissolved_oxygen = min(max(self.dissolved_oxygen, 0.0), 100.0)
        # Feed pump: mL/h into the vessel; the feed dilutes the cells.
        if v["feed_pump"] and float(v["feed_rate"]) > 0:
            added_l = float(v["feed_rate"]) / 3600.0 * dt_s / 1000.0
            self.cells *= self.volume_l / (self.volume_l + added_l)
            self.volume_l += added_l

    @property
    def level(self) -> float:
        return 100.0 * self.volume_l / WORKING_VOLUME_L

    def status(self) -> int:
        bits = 0
        if abs(self.temperature - float(self.values["temperature_setpoint"])) > 1.0:
            bits |= 1
        if not 6.8 <= self.ph <= 7.6:
            bits |= 2
        if self.dissolved_oxygen < 20.0:
            bits |= 4
        if self.level > 95.0:
            bits |= 8
        return bits

    def get(self, signal: str) -> float | bool:
        noise = self.random.gauss
        match signal:
            case "temperature":
                return self.temperature + noise(0.0, 0.01)
            case "ph":
                return self.ph + noise(0.0, 0.001)
            case "dissolved_oxygen":
                return min(100.0, max(0.0, self.dissolved_oxygen + noise(0.0, 0.2)))
            case "volume":
                return self.volume_l
            case "level":
                return self.level
            case "cell_density":
                return self.cells
            case "co2_dosing":
                return self.co2_dosing
            case "base_added":
                return self.base_added_ml
            case "status":
                return self.status()
            case "level_high":
                return self.level > 95.0
        return self.values[signal]

    def set(self, signal: str, value: float | bool) -> None:
        self.values[signal] = value


def bioreactor_simulator(
    *,
    seed: int = 0,
    time_scale: float = 1.0,
    faults: FaultPlan | None = None,
    units: tuple[int, ...] = (1,),
    profile: ModbusProfile | None = None,
) -> ModbusSimulator:
    """A simulated bioreactor bus (one vessel per unit id; not yet listening: call ``serve_rtu``)."""
    prof = profile or load_profile("stirred-tank-bioreactor")
    assert isinstance(prof, ModbusProfile)
    return ModbusSimulator(
        {u: SimUnit(prof, BioreactorModel(seed + i)) for i, u in enumerate(units)},
        time_scale=time_scale,
        faults=faults,
    )
