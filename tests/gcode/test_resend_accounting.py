"""The host core's byte accounting and echo handling around resends (issue #10, items 6 and 7).

A small firmware model reads its receive buffer one line at a time, in order, like
OctoPrint's virtual printer and like Marlin while its command ring has room; it
refuses a corrupt line or a line number out of sequence with ``Resend:`` and an
``ok``, and does not flush its buffer (the hard case: every stale copy still in the
buffer is read and refused). Hypothesis chooses when the host writes, when the
firmware reads, when it finishes a command, and which copies are corrupted.
"""

from __future__ import annotations

import re
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from labdevices.protocols import CommandDone, MarlinHost, checksum, frame


def numbers(data: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^N(\d+) ", data, re.M)]


class ModelFirmware:
    def __init__(self, rx_buffer_bytes: int, bufsize: int, flush_on_error: bool = False) -> None:
        self.rx_size = rx_buffer_bytes
        self.bufsize = bufsize
        self.flush_on_error = flush_on_error
        self.rx: deque[bytes] = deque()
        self.ring: deque[tuple[int, str]] = deque()
        self.last_n = 0
        self.executed: list[str] = []
        self.out = b""
        self.max_buffered = 0
        self.overrun = 0
        self.copies_read = 0

    @property
    def buffered(self) -> int:
        return sum(len(x) for x in self.rx)

    def receive(self, data: bytes, corrupt: set[int]) -> None:
        for raw in data.splitlines(keepends=True):
            self.copies_read += 1
            if self.copies_read in corrupt:
                i = raw.index(b" ") + 1
                raw = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
            if self.buffered + len(raw) > self.rx_size:
                self.overrun += 1  # real Marlin drops the bytes
                continue
            self.rx.append(raw)
            self.max_buffered = max(self.max_buffered, self.buffered)

    def read_line(self) -> None:
        if not self.rx or len(self.ring) >= self.bufsize:
            return
        raw = self.rx.popleft().rstrip(b"\n")
        body, _, given = raw.rpartition(b"*")
        n = int(body.split(b" ", 1)[0][1:])
        if checksum(body) != int(given):
            self._error("checksum mismatch")
        elif n != self.last_n + 1:
            self._error("Line Number is not Last Line Number+1")
        else:
            self.last_n = n
            self.ring.append((n, body.split(b" ", 1)[1].decode()))

    def _error(self, message: str) -> None:
        self.out += b"Error:%s, Last Line: %d\nResend: %d\nok\n" % (
            message.encode(),
            self.last_n,
            self.last_n + 1,
        )
        if self.flush_on_error:
            self.rx.clear()

    def process(self) -> None:
        if self.ring:
            _n, command = self.ring.popleft()
            self.executed.append(command)
            self.out += b"ok\n"

    def take(self) -> bytes:
        out, self.out = self.out, b""
        return out


def stream(
    steps: list[int], corrupt: set[int], n_lines: int = 60, flush_on_error: bool = False
) -> tuple[MarlinHost, ModelFirmware, list[str], int]:
    lines = [f"G1 X{i}.{i % 7} Y{(i * 3) % 100}.25 F1200" for i in range(n_lines)]
    host = MarlinHost(window_lines=4, rx_buffer_bytes=128)
    fw = ModelFirmware(128, 4, flush_on_error)
    host.start_job(lines)
    sent = 0
    actions = iter(steps)
    for _ in range(20_000):
        if host.job_processed == len(lines):
            break
        action = next(actions, 3)
        if action == 0:
            data = host.data_to_send()
            sent += data.count(b"\n")
            fw.receive(data, corrupt)
        elif action == 1:
            fw.read_line()
        elif action == 2:
            fw.process()
        else:  # everyone gets a turn
            data = host.data_to_send()
            sent += data.count(b"\n")
            fw.receive(data, corrupt)
            fw.read_line()
            fw.process()
        host.receive_data(fw.take())
    return host, fw, lines, sent


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.integers(0, 3), max_size=400),
    corrupt=st.sets(st.integers(1, 80), max_size=6),
    flush=st.booleans(),
)
def test_resends_never_overrun_the_receive_buffer_and_execute_once(
    steps: list[int], corrupt: set[int], flush: bool
) -> None:
    host, fw, lines, _sent = stream(steps, corrupt, flush_on_error=flush)
    assert fw.overrun == 0, f"firmware receive buffer overrun {fw.overrun} times"
    assert fw.max_buffered <= 128
    assert fw.executed == lines
    assert host.job_processed == len(lines)


def test_one_corrupt_line_costs_a_window_of_copies_not_the_whole_job() -> None:
    """Item 7: one fault, then echoes that name later lines must not rewind over fresh lines."""
    # Host writes while the firmware reads in bursts: several copies are in its buffer
    # when the corrupt one is read.
    steps = [0, 1, 2, 0, 1, 0, 1, 2, 0] * 200
    _host, fw, lines, sent = stream(steps, corrupt={5}, n_lines=200)
    assert fw.executed == lines
    assert fw.overrun == 0
    assert sent <= len(lines) + 2 * 4, f"{sent - len(lines)} lines went out twice"


def test_echoes_naming_the_next_unsent_line_do_not_rewind_over_fresh_lines() -> None:
    """After lost acks a probe sends the window again; the firmware had it all, so every
    copy is refused with a Resend for the next line not yet sent. The first answer
    resynchronises; the others are echoes and must not resend the lines sent next."""
    host = MarlinHost(window_lines=4, rx_buffer_bytes=1000)
    host.start_job([f"G1 X{i}" for i in range(12)])
    assert host.data_to_send().count(b"\n") == 4  # 1..4; their oks are lost
    host.probe()
    assert host.data_to_send().count(b"\n") == 4  # 1..4 again
    echo = b"Error:Line Number is not Last Line Number+1, Last Line: 4\nResend: 5\nok N4\n"
    host.receive_data(echo)  # the answer to the probe's first copy
    assert host.processed == 4
    fresh = host.data_to_send()
    assert fresh.startswith(b"N5 ") and fresh.count(b"\n") == 4  # 5..8 go out
    for _ in range(3):  # the probe's other copies, refused after them
        host.receive_data(echo)
        assert host.data_to_send() == b""  # no rewind over 5..8
    host.receive_data(b"ok N8\n")
    assert host.processed == 8
    assert host.data_to_send().startswith(b"N9 ")


def test_an_echo_that_flushed_the_resent_line_is_probed_early() -> None:
    """Marlin flushes its receive buffer on every error: an echo may take the resent line
    with it. With numbered oks, the host probes that one line after a short silence."""
    host = MarlinHost(window_lines=4, rx_buffer_bytes=128, ack_timeout_s=10.0)
    host.start_job([f"G1 X{i}.5 Y{i}.25 F1200" for i in range(10)])
    host.data_to_send()  # 1..4
    host.receive_data(b"ok N1 P15 B3\n")
    host.receive_data(b"Error:checksum mismatch, Last Line: 1\nResend: 2\nok N1 P15 B3\n")
    assert host.data_to_send().startswith(b"N2 ")  # the ghosts leave room for one line
    assert host.timeout() == 10.0
    echo = b"Error:Line Number is not Last Line Number+1, Last Line: 1\nResend: 2\nok N1 P15 B3\n"
    host.receive_data(echo)  # the stale 3 arrived with the resent 2 behind it: both gone
    assert host.data_to_send() == b""
    assert host.timeout() == host.resend_timeout_s
    host.probe()
    assert host.data_to_send().startswith(b"N2 ")  # sent once more
    assert host.timeout() == 10.0  # once only
    host.receive_data(b"ok N2 P15 B3\n")
    assert host.processed == 2


def test_urgent_commands_jump_the_window_and_are_numbered() -> None:
    host = MarlinHost(window_lines=2, rx_buffer_bytes=64)
    host.start_job([f"G1 X{i}.5 Y{i}.25 F1200" for i in range(10)])
    assert host.data_to_send().count(b"\n") == 2  # window full
    stop = host.send_urgent(["M410", "M127"], ["a", "b"])
    # M410 goes out past the window and the budget; M127 would overrun 64 bytes: next
    assert stop == frame(3, "M410")
    host.stop_job()
    events = host.receive_data(b"ok\nok\n")
    assert host.data_to_send() == frame(4, "M127")
    events += host.receive_data(b"ok\nok\n")
    assert [e.tag for e in events if isinstance(e, CommandDone)] == ["a", "b"]
    # mid-resend they go first in the queue, right after the resent lines
    host = MarlinHost(window_lines=4, rx_buffer_bytes=1000)
    host.start_job([f"G1 X{i}" for i in range(10)])
    host.data_to_send()
    host.receive_data(b"Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n")
    out = host.send_urgent(["M410"])
    assert numbers(out) == [2, 3, 4]
    assert b"M410" not in out
    host.receive_data(b"ok\n" * 4)
    assert b"N5 M410*" in host.data_to_send()
