"""The pytest plugin's simulated-printer fixtures, as a user's test suite would use them."""

from __future__ import annotations

from labdevices.sim.printer import FaultConfig, SimPrinterConfig, SimulatedPrinter, checksum
from labdevices.testing import plugin
from labdevices.transports import SerialTransport


async def send(sim: SimulatedPrinter, data: bytes) -> bytes:
    link = SerialTransport(sim.url)
    await link.open()
    try:
        await link.write(data)
        return await link.read(timeout=5)
    finally:
        await link.close()


def test_fixtures_come_from_the_plugin() -> None:
    assert {"sim_printer", "sim_printer_factory"} <= set(vars(plugin))


async def test_sim_printer_fixture(sim_printer: SimulatedPrinter) -> None:
    assert sim_printer.port == sim_printer.url
    assert await send(sim_printer, b"M127\n") == b"ok P15 B3\n"
    assert sim_printer.executed == ["M127"]
    assert sim_printer.state.valves == {0: False, 1: False}


async def test_sim_printer_factory(sim_printer_factory: plugin.SimPrinterFactory) -> None:
    config = SimPrinterConfig(advanced_ok=False, seed=3, faults=FaultConfig(ack_loss_rate=0.0))
    cellink = await sim_printer_factory("cellink-biox", config=config, transport="tcp")
    marlin = await sim_printer_factory()
    assert cellink.url.startswith("socket://127.0.0.1:")
    line = b"N1 M773 T0 P85"
    assert await send(cellink, line + b"*%d\n" % checksum(line)) == b"ok\n"
    assert cellink.state.pressure_setpoints_kpa[0] == 85.0
    assert marlin.executed == []
