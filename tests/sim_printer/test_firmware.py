"""The simulated Marlin firmware core, driven without I/O: bytes in, bytes out, a hand-moved clock."""

from __future__ import annotations

from typing import Any

import pytest

from labdevices.profiles import GcodeProfile, load_profile
from labdevices.sim.printer import FaultConfig, MarlinFirmware, SimPrinterConfig, checksum


def numbered(n: int, command: str) -> bytes:
    line = f"N{n} {command}"
    return f"{line}*{checksum(line.encode())}\n".encode()


def stream(commands: list[str], first: int = 1) -> bytes:
    return b"".join(numbered(first + i, c) for i, c in enumerate(commands))


class Bench:
    """A firmware and the clock it runs on."""

    def __init__(self, profile: str = "marlin-pneumatic", **settings: Any) -> None:
        prof = load_profile(profile)
        assert isinstance(prof, GcodeProfile)
        settings.setdefault("time_scale", 0.0)
        self.fw = MarlinFirmware(prof, SimPrinterConfig(profile=profile, **settings))
        self.t = 0.0
        self.banner = self.read()

    def read(self) -> list[str]:
        return self.fw.take_output(self.t).decode().splitlines()

    def send(self, data: bytes) -> list[str]:
        self.fw.receive(data, self.t)
        return self.read()

    def advance(self, seconds: float) -> list[str]:
        """Let wall time pass, waking the firmware whenever it asks to be woken."""
        end = self.t + seconds
        out: list[str] = []
        while (wake := self.fw.next_wakeup()) is not None and wake <= end:
            self.t = max(self.t, wake)
            self.fw.tick(self.t)
            out += self.read()
        self.t = end
        self.fw.tick(end)
        return out + self.read()


def test_power_on_banner() -> None:
    bench = Bench()
    assert bench.banner[0] == "start"
    assert bench.banner[1].startswith("echo:Marlin ")


def test_numbered_lines_execute_once_with_advanced_ok() -> None:
    bench = Bench()
    out = bench.send(stream(["G1 X10 Y5 F600", "M126 S255"]) + b"M105\n")
    assert out == ["ok N1 P15 B3", "ok N2 P15 B3", "ok T:22.00 /0.00 B:20.00 /20.00 @:0 B@:0"]
    assert bench.fw.executed == ["G1 X10 Y5 F600", "M126 S255", "M105"]
    assert bench.fw.state().position == (10.0, 5.0, 0.0, 0.0)


def test_plain_ok_without_advanced_ok() -> None:
    bench = Bench(advanced_ok=False)
    assert bench.send(numbered(1, "G90")) == ["ok"]


def test_comment_stripped_before_checksum() -> None:
    bench = Bench()
    line = b"N1 G28"
    out = bench.send(line + b"*" + str(checksum(line)).encode() + b" ; home all\n")
    assert out[-1] == "ok N1 P15 B3"
    assert bench.fw.executed == ["G28"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (numbered(3, "G1 X1"), "Error:Line Number is not Last Line Number+1, Last Line: 1"),
        (b"N2 G1 X1*1\n", "Error:checksum mismatch, Last Line: 1"),
        (b"N2 G1 X1\n", "Error:No Checksum with line number, Last Line: 1"),
        (b"G1 X1*5\n", "Error:No Line Number with checksum, Last Line: 1"),
        # Marlin checks the line number before the checksum
        (b"N7 G1 X1*1\n", "Error:Line Number is not Last Line Number+1, Last Line: 1"),
    ],
)
def test_line_errors_ask_for_a_resend(data: bytes, error: str) -> None:
    bench = Bench()
    bench.send(numbered(1, "G90"))
    # the ok after a Resend is an ADVANCED_OK like every other (issue #10, item 8)
    assert bench.send(data) == [error, "Resend: 2", "ok N1 P15 B4"]
    assert bench.fw.executed == ["G90"]
    assert bench.send(numbered(2, "G1 X1")) == ["ok N2 P15 B3"]


def test_error_drains_the_receive_buffer() -> None:
    bench = Bench()
    # A corrupt line 1 with line 2 right behind it: line 2 is drained, never run.
    out = bench.send(b"N1 G1 X1*0\n" + numbered(2, "G1 X2"))
    assert out == ["Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok N0 P15 B4"]
    assert bench.fw.executed == []
    assert bench.send(stream(["G1 X1", "G1 X2"])) == ["ok N1 P15 B3", "ok N2 P15 B3"]


def test_drain_cutting_a_line_discards_its_remainder() -> None:
    bench = Bench(rx_buffer_bytes=16)
    tail = numbered(2, "G1 X2 Y2 Z2 E2 F3000")
    bench.send(b"N1 G1 X1*0\n" + tail[:20])  # the drain keeps none of line 2
    assert bench.send(tail[20:]) == []  # its remainder is not taken for a command
    assert bench.fw.executed == []


def test_m110_sets_the_line_number() -> None:
    bench = Bench()
    # printcore's start of print: `N-1 M110 N-1` is taken whatever the last line was.
    assert bench.send(numbered(-1, "M110 N-1"))[0].startswith("ok N-1")
    assert bench.send(numbered(0, "G90")) == ["ok N0 P15 B3"]
    bench.send(b"M110 N100\n")
    assert bench.send(numbered(101, "G91")) == ["ok N101 P15 B3"]


def test_unknown_command() -> None:
    bench = Bench()
    assert bench.send(numbered(1, "M9999 S1")) == [
        'echo:Unknown command: "M9999 S1"',
        "ok N1 P15 B3",
    ]


def test_m115_reports_firmware_and_capabilities() -> None:
    out = Bench().send(b"M115\n")
    assert out[0].startswith("FIRMWARE_NAME:Marlin ")
    assert "EXTRUDER_COUNT:2" in out[0]
    assert {"Cap:AUTOREPORT_TEMP:1", "Cap:ADVANCED_OK:1", "Cap:EMERGENCY_PARSER:1"} <= set(out)
    assert out[-1].startswith("ok")
    assert "Cap:ADVANCED_OK:0" in Bench(advanced_ok=False).send(b"M115\n")


def test_m155_auto_reports_temperatures() -> None:
    bench = Bench()
    bench.send(b"M155 S1\n")
    reports = [line for line in bench.advance(3.5) if line.startswith(" T:")]
    assert len(reports) == 3
    bench.send(b"M155 S0\n")
    assert bench.advance(3.0) == []


def test_emergency_stop_acts_even_when_the_ring_is_full() -> None:
    bench = Bench(time_scale=1.0)
    bench.send(numbered(1, "G4 S100"))  # blocks the queue for 100 s
    bench.send(stream([f"G1 X{i}" for i in range(8)], first=2))
    assert not bench.fw.state().halted
    assert bench.send(b"M112\n") == ["Error:Printer halted. kill() called!"]
    state = bench.fw.state()
    assert state.halted and state.bed_target_c == 0.0
    assert bench.send(b"M105\n" + numbered(2, "G28")) == []  # halted: everything ignored
    assert bench.advance(200.0) == []
    bench.fw.reset(bench.t)
    out = bench.read()
    assert out[0] == "start"
    assert not bench.fw.state().halted
    assert bench.send(numbered(1, "G90")) == ["ok N1 P15 B3"]  # line numbers start again


def test_numbered_m112_is_an_emergency_too() -> None:
    bench = Bench()
    assert bench.send(numbered(1, "M112")) == ["Error:Printer halted. kill() called!"]


def test_blocking_command_sends_busy_keepalives() -> None:
    bench = Bench(time_scale=0.01)
    assert bench.send(numbered(1, "G4 S10")) == []  # 0.1 s wall
    out = bench.advance(0.05)
    assert out == ["echo:busy: processing", "echo:busy: processing"]
    out = bench.advance(0.06)
    assert out[-1] == "ok N1 P15 B3"
    assert out.count("echo:busy: processing") >= 2


def test_m0_waits_for_the_user_until_m108() -> None:
    bench = Bench(time_scale=0.01)
    assert bench.send(numbered(1, "M0")) == []
    assert bench.fw.state().paused_for_user
    assert "echo:busy: paused for user" in bench.advance(0.1)
    # M108 comes through the emergency parser although the queue is blocked
    out = bench.send(numbered(2, "M108"))
    assert out == ["ok N1 P15 B3", "ok N2 P15 B3"]
    assert not bench.fw.state().paused_for_user


def test_m109_waits_for_the_heater() -> None:
    bench = Bench(time_scale=0.001)
    assert bench.send(numbered(1, "M109 S37")) == []
    out = bench.advance(1.0)
    assert any(line.startswith(" T:") and "W:?" in line for line in out)
    assert out[-1] == "ok N1 P15 B3"
    assert abs(bench.fw.state().temperatures_c[0] - 37.0) <= 1.0


def test_peltier_bed_cools_first_order() -> None:
    bench = Bench(time_scale=1.0)
    bench.send(b"M140 S4\n")
    bench.advance(40.0)  # one time constant
    t = bench.fw.state().bed_temperature_c
    assert t is not None and 4.0 < t < 12.0
    bench.send(b"M190 S4\n")
    assert bench.advance(400.0)[-1].startswith("ok")


def test_planner_fills_then_ring_then_receive_buffer_overflows() -> None:
    bench = Bench(time_scale=1.0)
    # 10 mm at 10 mm/s: each move takes 1 s
    moves = [f"G1 X{10 * ((i + 1) % 2)} F600" for i in range(40)]
    out = bench.send(stream(moves))
    oks = [line for line in out if line.startswith("ok")]
    assert len(oks) == 15  # BLOCK_BUFFER_SIZE 16 keeps one block free
    assert oks[0] == "ok N1 P14 B3" and oks[-1] == "ok N15 P0 B3"
    state = bench.fw.state()
    assert state.planner_blocks == 15
    assert state.lost_bytes > 0  # ring (4) and RX buffer (128 bytes) full: the rest was lost
    bench.advance(1.0)  # one block done: one more move goes in
    assert bench.fw.executed[-1] == moves[15]


def test_over_eager_streaming_is_punished_with_resends() -> None:
    bench = Bench(time_scale=1.0)
    moves = [f"G1 X{10 * ((i + 1) % 2)} F600" for i in range(40)]
    bench.send(stream(moves))
    out = bench.advance(60.0)
    # what was left of a cut line runs into the next line the host sends
    out += bench.send(numbered(41, "G1 X0"))
    assert any(line.startswith("Error:") for line in out)
    assert "Resend: " in "\n".join(out)
    executed = bench.fw.executed
    assert executed == moves[: len(executed)]  # never out of order, never twice


def test_ok_delay_is_latency_not_service_time() -> None:
    bench = Bench(ok_delay_s=0.001)
    assert bench.send(stream(["G90", "G91", "G90"])) == []
    out = [line for line in bench.advance(0.001) if line.startswith("ok")]
    assert out == ["ok N1 P15 B3", "ok N2 P15 B3", "ok N3 P15 B3"]


def test_marlin_pneumatic_dialect() -> None:
    bench = Bench()
    bench.send(stream(["M126 S255", "M42 P6 S255", "M42 P11 S51", "M128", "M129", "M42 P9 S7"]))
    state = bench.fw.state()
    assert state.valves == {0: True, 1: False}
    assert state.pressure_setpoints_kpa == {0: 700.0, 1: pytest.approx(140.0)}
    assert state.pressures_kpa[0] == 700.0  # time_scale 0: the regulator settles at once
    assert state.pins == {9: 7}
    bench.send(stream(["M42 P4 S255", "G4 P500"], first=7))
    assert bench.fw.state().uv_on
    bench.send(numbered(9, "M42 P4 S0"))
    assert not bench.fw.state().uv_on


def test_cellink_dialect() -> None:
    bench = Bench("cellink-biox")
    commands = ["M773 T1 P85", "M750 T1", "M771 T0 S37", "M801 S10", "T10", "M805 T10 S2 I80"]
    commands += ["T11", "M805 T11 S1 I50", "T1", "M773 P20"]
    out = bench.send(stream(commands))
    assert sum(line.startswith("ok") for line in out) == len(commands)
    state = bench.fw.state()
    assert state.valves == {0: False, 1: True, 2: False}
    assert state.pressure_setpoints_kpa == {0: 0.0, 1: 20.0, 2: 0.0}  # no T: the active tool
    assert state.temperature_setpoints_c[0] == 37.0
    assert state.bed_target_c == 10.0
    assert [(e.module, e.seconds, e.intensity_percent) for e in state.uv_exposures] == [
        (10, 2.0, 80.0),
        (11, 1.0, 50.0),
    ]
    report = bench.send(b"M105\n")
    assert report == ["ok T0:37.0/37.0 T1:22.0/0.0 P0:0.0/0.0 P1:20.0/20.0 P2:0.0/0.0 B:10.0/10.0"]


def test_photocuring_blocks_with_busy() -> None:
    bench = Bench("cellink-biox", time_scale=0.01)
    bench.send(stream(["T10", "M805 T10 S5 I100"]))
    assert bench.fw.state().uv_on
    out = bench.advance(0.1)
    assert "echo:busy: processing" in out and out[-1] == "ok N2 P15 B7"
    assert not bench.fw.state().uv_on


def test_inkredible_dialect() -> None:
    bench = Bench("inkredible")
    bench.send(stream(["M760", "M762", "M763", "M764"]))
    state = bench.fw.state()
    assert state.valves == {0: True, 1: False}
    assert state.uv_on
    bench.send(numbered(5, "M765"))
    assert not bench.fw.state().uv_on
    bench.fw.set_regulator(0, 150.0)
    assert bench.fw.state(bench.t).pressures_kpa[0] == 150.0
    assert bench.send(b"M105\n") == ["ok T:22.00 /0.00 @:0"]  # no bed
    assert bench.send(numbered(6, "M773 T0 P5"))[0] == 'echo:Unknown command: "M773 T0 P5"'


def test_unknown_tool_is_reported() -> None:
    assert Bench().send(b"T7\n") == ["echo:T7 Invalid extruder", "ok P15 B3"]


def stop_and_wait(bench: Bench, commands: list[str]) -> list[str]:
    """A host with one line in flight that honours Resend (and moves on when an ok is lost)."""
    out: list[str] = []
    nxt = 1
    for _ in range(20 * len(commands)):
        if nxt > len(commands):
            break
        got = bench.send(numbered(nxt, commands[nxt - 1]))
        out += got
        resend = [int(line.split()[1]) for line in got if line.startswith("Resend:")]
        nxt = resend[0] if resend else nxt + 1
    return out


def _run_with_faults(seed: int) -> tuple[list[str], list[str]]:
    bench = Bench(seed=seed, faults=FaultConfig(corrupt_rate=0.2, ack_loss_rate=0.2))
    out = stop_and_wait(bench, [f"G1 X{i}" for i in range(60)])
    return out, bench.fw.executed


def test_faults_are_reproducible_by_seed() -> None:
    first, second, other = _run_with_faults(1), _run_with_faults(1), _run_with_faults(2)
    assert first == second
    assert first != other
    out, executed = first
    assert any(line.startswith("Error:checksum mismatch") for line in out)
    acks = [x for i, x in enumerate(out) if x.startswith("ok N") and "Resend" not in out[i - 1]]
    assert len(acks) < len(executed)  # lost acks


def test_corruption_never_executes_a_numbered_line_wrongly() -> None:
    bench = Bench(seed=5, faults=FaultConfig(corrupt_rate=0.3))
    sent = [f"G1 X{i} Y{i}" for i in range(1, 200)]
    out = stop_and_wait(bench, sent)
    assert sum(line.startswith("Error:") for line in out) > 20
    assert bench.fw.executed == sent


def test_busy_stall_fault() -> None:
    bench = Bench(time_scale=0.01, faults=FaultConfig(busy_stall_rate=1.0, busy_stall_s=5.0))
    assert bench.send(numbered(1, "G90")) == []
    out = bench.advance(0.06)
    assert out[:2] == ["echo:busy: processing", "echo:busy: processing"]
    assert out[-1] == "ok N1 P15 B3"


def test_reset_fault_restarts_line_numbers() -> None:
    bench = Bench(faults=FaultConfig(reset_after_lines=3))
    out = bench.send(stream(["G90", "G91", "G90", "G91"]))
    assert out[:3] == ["ok N1 P15 B3", "ok N2 P15 B3", "ok N3 P15 B3"]
    assert out[3] == "start"
    assert bench.fw.executed == ["G90", "G91", "G90"]  # line 4 was lost with the reset
    assert bench.send(numbered(1, "G28")) == ["ok N1 P15 B3"]


def test_disconnect_fault_flags_the_link() -> None:
    bench = Bench(faults=FaultConfig(disconnect_after_lines=2))
    bench.send(stream(["G90", "G91", "G90"]))
    assert bench.fw.link_dropped
    assert bench.fw.executed == ["G90", "G91"]
    bench.fw.link_closed()
    assert bench.send(numbered(3, "G28")) == ["ok N3 P15 B3"]


def test_several_heated_printheads_report_each_tool() -> None:
    prof = load_profile("marlin-pneumatic")
    assert isinstance(prof, GcodeProfile)
    heads = [
        h.model_copy(
            update={
                "set_temperature": "M104 T{tool} S{celsius:.1f}",
                "temperature_min_c": 4.0,
                "temperature_max_c": 80.0,
            }
        )
        for h in prof.printheads
    ]
    heated = prof.model_copy(update={"printheads": heads})
    fw = MarlinFirmware(heated, SimPrinterConfig(time_scale=0.0))
    fw.receive(b"M104 T1 S37\nT1\nM105\n", 0.0)
    report = fw.take_output(0.0).decode().splitlines()[-1]
    assert report == (
        "ok T:37.00 /37.00 B:20.00 /20.00 T0:22.00 /0.00 T1:37.00 /37.00 @:0 B@:0 @0:0 @1:0"
    )
