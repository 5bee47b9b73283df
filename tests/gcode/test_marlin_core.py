"""The sans-IO Marlin host core, fed scripted firmware replies."""

from __future__ import annotations

import functools
import operator
import re

import pytest

from labdevices.errors import ProtocolError
from labdevices.protocols import (
    Busy,
    Capability,
    CommandDone,
    FirmwareInfo,
    FirmwareReset,
    Halted,
    LineProcessed,
    MarlinHost,
    TemperatureReport,
    Wait,
    checksum,
    frame,
    strip_gcode,
)


def numbers(data: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^N(\d+) ", data, re.M)]


def test_checksum_is_xor_of_every_byte() -> None:
    for body in (b"N1 G28", b"N12345 G1 X10.5 Y-3.25 F1200", b"A", b""):
        assert checksum(body) == functools.reduce(operator.xor, body, 0)
    assert frame(1, "G28") == b"N1 G28*%d\n" % (
        ord("N") ^ ord("1") ^ ord(" ") ^ ord("G") ^ ord("2") ^ ord("8")
    )


def test_strip_gcode() -> None:
    assert strip_gcode("G1 X1 ; move") == "G1 X1"
    assert strip_gcode("; only a comment") == ""


def test_window_bounds_lines_in_flight() -> None:
    host = MarlinHost(window_lines=4, rx_buffer_bytes=1000)
    host.start_job([f"G1 X{i}" for i in range(10)])
    assert numbers(host.data_to_send()) == [1, 2, 3, 4]
    assert host.data_to_send() == b""
    events = host.receive_data(b"ok\nok\n")
    assert events.count(LineProcessed(1)) == 1 and LineProcessed(2) in events
    assert numbers(host.data_to_send()) == [5, 6]
    assert host.job_processed == 2


def test_receive_buffer_bytes_bound_in_flight() -> None:
    host = MarlinHost(window_lines=8, rx_buffer_bytes=40)
    host.start_job(["G1 X100.000 Y100.000"] * 5)  # ~30 bytes framed
    assert numbers(host.data_to_send()) == [1]  # a second line would overrun 40 bytes
    host.receive_data(b"ok\n")
    assert numbers(host.data_to_send()) == [2]


def test_resend_rewinds_and_swallows_stale_echoes() -> None:
    host = MarlinHost(window_lines=4, rx_buffer_bytes=1000)
    host.start_job([f"G1 X{i}" for i in range(6)])
    assert numbers(host.data_to_send()) == [1, 2, 3, 4]
    # line 2 corrupted: 1 is held, 2 asked for again; 3 and 4 echo the same request
    host.receive_data(b"Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n")
    assert numbers(host.data_to_send()) == [2, 3, 4]
    host.receive_data(
        b"Error:Line Number is not Last Line Number+1, Last Line: 1\nResend: 2\nok\n" * 2
    )
    assert host.data_to_send() == b""  # echoes ignored, nothing sent twice
    host.receive_data(b"ok\nok\nok\nok\n")  # lines 1..4 processed
    assert host.processed == 4
    assert numbers(host.data_to_send()) == [5, 6]
    assert host.resends == 3


def test_endless_resend_of_one_line_is_an_error() -> None:
    host = MarlinHost(window_lines=1, max_resends_per_line=5)
    host.start_job(["G1 X1", "G1 X2"])
    host.data_to_send()
    for _ in range(5):
        host.receive_data(b"Error:checksum mismatch, Last Line: 0\nResend: 1\nok\n")
        host.data_to_send()
    with pytest.raises(ProtocolError, match="asked for line 1 6 times"):
        host.receive_data(b"Error:checksum mismatch, Last Line: 0\nResend: 1\nok\n")


def test_advanced_ok_resynchronises_after_lost_acks() -> None:
    host = MarlinHost(window_lines=4, rx_buffer_bytes=1000)
    host.start_job([f"G1 X{i}" for i in range(8)])
    host.data_to_send()
    events = host.receive_data(b"ok N3 P15 B3\n")  # oks for 1 and 2 were lost
    assert LineProcessed(3) in events
    assert host.processed == 3 and host.job_processed == 3


def test_probe_after_lost_ack_resynchronises_without_repeating() -> None:
    host = MarlinHost(window_lines=2, rx_buffer_bytes=1000)
    host.start_job(["G1 X1", "G1 X2", "G1 X3"])
    assert numbers(host.data_to_send()) == [1, 2]
    host.receive_data(b"ok\n")  # the ok of line 2 is lost
    assert numbers(host.data_to_send()) == [3]
    host.receive_data(b"ok\n")  # really line 3's ok, counted as line 2's
    assert host.processed == 2
    host.probe()  # silence: resend the oldest unacknowledged line (3)
    assert numbers(host.data_to_send()) == [3]
    host.receive_data(b"Error:Line Number is not Last Line Number+1, Last Line: 3\nResend: 4\nok\n")
    assert host.processed == 3 and host.job_processed == 3 and host.idle


def test_unnumbered_out_of_band_ok_is_not_counted() -> None:
    host = MarlinHost(window_lines=4, rx_buffer_bytes=1000)
    host.start_job(["M0", "G1 X1"])
    assert numbers(host.data_to_send()) == [1, 2]
    host.expect_unnumbered_ok()  # M108 written out of band after line 2
    host.receive_data(b"ok\nok\nok\n")
    assert host.processed == 2 and host.idle


def test_priority_commands_slip_between_job_lines() -> None:
    host = MarlinHost(window_lines=1)
    host.start_job(["G1 X1", "G1 X2"])
    assert b"G1 X1" in host.data_to_send()
    host.submit("M105", tag="poll")
    host.receive_data(b"ok\n")
    data = host.data_to_send()
    assert b"M105" in data
    ev = host.receive_data(b"ok T:21.0 /0.0 B:20.0 /37.0 @:0\n")
    assert CommandDone(2, "poll") in ev
    assert host.tag_of(2) is None  # tags are dropped once processed
    (report,) = [e for e in ev if isinstance(e, TemperatureReport)]
    assert report.values["B"] == (20.0, 37.0)
    assert b"G1 X2" in host.data_to_send()


def test_paused_job_feeds_nothing() -> None:
    host = MarlinHost(window_lines=4)
    host.start_job(["G1 X1", "G1 X2", "G1 X3"])
    host.window_lines = 1
    host.data_to_send()
    assert host.stop_job() == 1
    host.receive_data(b"ok\n")
    assert host.data_to_send() == b"" and host.idle


def test_stale_resend_for_processed_line_is_ignored() -> None:
    host = MarlinHost(window_lines=4)
    host.start_job(["G1 X1", "G1 X2"])
    host.data_to_send()
    host.receive_data(b"ok\nok\n")
    host.receive_data(b"Resend: 1\nok\n")
    assert host.data_to_send() == b"" and host.processed == 2


def test_parses_firmware_messages() -> None:
    host = MarlinHost()
    ev = host.receive_data(
        b"start\necho:Marlin 2.1\n"
        b"FIRMWARE_NAME:Marlin 2.1.2 (Jan 1 2025) SOURCE_CODE_URL:github.com/MarlinFirmware"
        b" PROTOCOL_VERSION:1.0 MACHINE_TYPE:Bioprinter EXTRUDER_COUNT:2\n"
        b"Cap:AUTOREPORT_TEMP:1\nCap:ADVANCED_OK:0\n"
        b"echo:busy: processing\nwait\n T:22.00 /0.00 B:20.00 /0.00 @:0 B@:0\n"
        b"Error:Printer halted. kill() called!\n"
    )
    assert isinstance(ev[0], FirmwareReset)
    (info,) = [e for e in ev if isinstance(e, FirmwareInfo)]
    assert info.fields["MACHINE_TYPE"] == "Bioprinter"
    assert info.fields["EXTRUDER_COUNT"] == "2"
    assert Capability("AUTOREPORT_TEMP", True) in ev
    assert Capability("ADVANCED_OK", False) in ev
    assert Busy("processing") in ev and Wait() in ev
    assert any(isinstance(e, TemperatureReport) and e.values["T"] == (22.0, 0.0) for e in ev)
    assert isinstance(ev[-1], Halted) and host.halted
    assert host.data_to_send() == b""


def test_partial_lines_are_buffered() -> None:
    host = MarlinHost()
    host.submit("M105")
    host.data_to_send()
    assert host.receive_data(b"o") == []
    assert LineProcessed(1) in host.receive_data(b"k\n")


def test_advanced_ok_bounds_the_window_by_the_firmware_ring() -> None:
    host = MarlinHost(window_lines=8, rx_buffer_bytes=1000)
    host.start_job([f"G1 X{i}" for i in range(20)])
    assert len(numbers(host.data_to_send())) == 8
    host.receive_data(b"ok N1 P15 B1\n")  # a ring of 2 commands, not 8
    assert host.window == 2
    assert host.data_to_send() == b""  # 7 in flight already: wait until fewer than 2


def test_long_commands_get_their_own_timeout() -> None:
    host = MarlinHost(window_lines=4, ack_timeout_s=5.0, long_timeouts_s={"G28": 180.0})
    host.start_job(["G1 X1", "G28", "G1 X2"])
    host.data_to_send()
    assert host.timeout() == 180.0
    host.receive_data(b"ok\nok\n")
    assert host.timeout() == 5.0
