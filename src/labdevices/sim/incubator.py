"""A simulated CO2 incubator: heater PID, passive humidity, CO2 injection valve, door-open events.

Serves ``drivers/co2-incubator.toml`` over Modbus TCP through ``ModbusSimulator``.
Door openings happen at random (seeded) or on demand (``open_door``); an open door
pulls temperature, CO2 and humidity toward the room's.
"""

from __future__ import annotations

import random

from ..profiles import ModbusProfile, load_profile
from .modbus import FaultPlan, ModbusSimulator, SimUnit
from .physics import Pid, approach

__all__ = ["IncubatorModel", "incubator_simulator"]

ROOM_C = 22.0
ROOM_CO2 = 0.04
ROOM_RH = 40.0


class IncubatorModel:
    """The chamber's physics; signal names are those of the co2-incubator profile."""

    def __init__(self, seed: int = 0, door_openings_per_hour: float = 0.0) -> None:
        self.random = random.Random(seed)
        self.door_openings_per_hour = door_openings_per_hour
        self.temperature = 37.0
        self.humidity = 93.0
        self.co2 = 5.0
        self.values: dict[str, float | bool] = {
            "temperature_setpoint": 37.0,
            "co2_setpoint": 5.0,
            "temperature_alarm_band": 1.0,
            "door_alarm_s": 60.0,
            "heater_enable": True,
            "co2_enable": True,
        }
        self.heater = Pid(kp=40.0, ki=0.2)
        self.valve = Pid(kp=60.0, ki=0.05)
        self.heater.integral = 30.0 / 0.2  # start at the steady-state heater output
        self.heater_output = 30.0
        self.valve_output = 0.0
        self.door_open = False
        self.door_open_for_s = 0.0
        self._door_close_in_s = 0.0
        self.uptime_s = 0.0

    def open_door(self, duration_s: float) -> None:
        """Open the door now for ``duration_s`` model seconds."""
        self.door_open = True
        self.door_open_for_s = 0.0
        self._door_close_in_s = duration_s

    def step(self, dt_s: float) -> None:
        self.uptime_s += dt_s
        chance = self.door_openings_per_hour * dt_s / 3600.0
        if not self.door_open and chance > 0 and self.random.random() < chance:
            self.open_door(self.random.uniform(15.0, 60.0))
        if self.door_open:
            self.door_open_for_s += dt_s
            self._door_close_in_s -= dt_s
            if self._door_close_in_s <= 0:
                self.door_open = False
                self.door_open_for_s = 0.0
        v = self.values
        # Heater: 100 % output lifts the chamber by 0.03 degC/s against the losses.
        self.heater_output = (
            self.heater.update(float(v["temperature_setpoint"]), self.temperature, dt_s)
            if v["heater_enable"]
            else 0.0
        )
        loss_tau = 120.0 if self.door_open else 1800.0
        self.temperature += self.heater_output / 100.0 * 0.03 * dt_s
        self.temperature = approach(self.temperature, ROOM_C, loss_tau, dt_s)
        # CO2: the valve injects up to 0.05 %/s; the chamber leaks toward room air.
        self.valve_output = (
            self.valve.update(float(v["co2_setpoint"]), self.co2, dt_s) if v["co2_enable"] else 0.0
        )
        self.co2 += self.valve_output / 100.0 * 0.05 * dt_s
        self.co2 = approach(self.co2, ROOM_CO2, 60.0 if self.door_open else 3600.0, dt_s)
        # Humidity: the water pan saturates a closed chamber; an open door dries it.
        self.humidity = approach(
            self.humidity,
            ROOM_RH if self.door_open else 95.0,
            60.0 if self.door_open else 600.0,
            dt_s,
        )

    def alarm_status(self) -> int:
        v = self.values
        band = float(v["temperature_alarm_band"])
        sp = float(v["temperature_setpoint"])
        bits = 0
        if self.temperature > sp + band:
            bits |= 1
        if self.temperature < sp - band:
            bits |= 2
        if self.co2 > float(v["co2_setpoint"]) + 1.0:
            bits |= 4
        if self.co2 < float(v["co2_setpoint"]) - 1.0:
            bits |= 8
        if self.door_open and self.door_open_for_s > float(v["door_alarm_s"]):
            bits |= 16
        return bits

    def get(self, signal: str) -> float | bool:
        noise = self.random.gauss
        match signal:
            case "chamber_temperature":
                return self.temperature + noise(0.0, 0.01)
            case "humidity":
                return min(100.0, self.humidity + noise(0.0, 0.1))
            case "co2":
                return max(0.0, self.co2 + noise(0.0, 0.005))
            case "heater_output":
                return self.heater_output
            case "co2_valve_output":
                return self.valve_output
            case "alarm_status":
                return self.alarm_status()
            case "uptime":
                return int(self.uptime_s)
            case "door_open":
                return self.door_open
            case "alarm_active":
                return self.alarm_status() != 0
        return self.values[signal]

    def set(self, signal: str, value: float | bool) -> None:
        self.values[signal] = value


def incubator_simulator(
    *,
    seed: int = 0,
    time_scale: float = 1.0,
    faults: FaultPlan | None = None,
    unit: int = 1,
    door_openings_per_hour: float = 0.0,
    profile: ModbusProfile | None = None,
) -> ModbusSimulator:
    """A simulated incubator (not yet listening: call ``serve_tcp``)."""
    prof = profile or load_profile("co2-incubator")
    assert isinstance(prof, ModbusProfile)
    model = IncubatorModel(seed, door_openings_per_hour)
    return ModbusSimulator({unit: SimUnit(prof, model)}, time_scale=time_scale, faults=faults)
