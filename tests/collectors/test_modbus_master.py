"""The Modbus master's timing on a scripted line with a fake clock: the Serial Line guide's
timers, t3.5 of silence before every frame counted from the last byte on the line in
either direction, the line's extra delay, and the reply window a silent unit gets."""

from __future__ import annotations

import contextlib

import pytest

from gateway.codecs.modbus.rtu import ReadRequest
from gateway.collectors.modbus_master import ModbusMaster, Timing
from gateway.errors import DeviceTimeout
from gateway.transports import LineSettings

from tests.codecs.modbus.test_rtu import framed


@pytest.mark.parametrize(("baud", "t1_5_ms", "t3_5_ms"), [
    (1200, 13.75, 32.083), (9600, 1.71875, 4.0104), (19200, 0.859375, 2.0052), (38400, 0.75, 1.75),
    (115200, 0.75, 1.75)])
def test_the_timers_follow_the_serial_line_guide(baud, t1_5_ms, t3_5_ms):
    timing = Timing(LineSettings(baud, 8, "E", 1))
    assert timing.t1_5 * 1000 == pytest.approx(t1_5_ms, abs=1e-3)
    assert timing.t3_5 * 1000 == pytest.approx(t3_5_ms, abs=1e-3)


def test_a_character_is_eleven_bits_whatever_the_parity():
    no_parity, even = Timing(LineSettings(9600, 8, "N", 1)), Timing(LineSettings(9600, 8, "E", 1))
    assert no_parity.transmit_time(8) == even.transmit_time(8) == 8 * 11 / 9600


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedLine:
    """A transport whose unit answers each request ``turnaround_s`` after it has left the
    line, in one chunk, on the fake clock (None: at once, as on a pty, where nothing takes
    line time); ``silent`` units never answer."""

    description = "scripted line"

    def __init__(self, clock: Clock, line: LineSettings, *, turnaround_s: float | None = 0.010, silent=()) -> None:
        self.clock = clock
        self.timing = Timing(line)
        self.turnaround_s = turnaround_s
        self.silent = set(silent)
        self.bytes_discarded = 0
        self.last_receive_time: float | None = None
        self.sent: list[tuple[float, bytes]] = []
        self._pending: tuple[float, bytes] | None = None

    @contextlib.asynccontextmanager
    async def claim(self, line=None):
        yield self

    def reset_input(self) -> int:
        return 0

    async def write(self, data: bytes) -> None:
        self.sent.append((self.clock.now, data))
        if data[0] not in self.silent:
            count = int.from_bytes(data[4:6], "big")
            reply = framed(f"{data[0]:02x}{data[1]:02x}{2 * count:02x}" + "0000" * count)
            if self.turnaround_s is None:
                self._pending = (self.clock.now, reply)
                return
            arrives = self.clock.now + self.timing.transmit_time(len(data)) + self.turnaround_s
            self._pending = (arrives + self.timing.transmit_time(len(reply)), reply)

    async def read(self, max_bytes: int = 4096, *, timeout_s: float) -> bytes:
        if self._pending is None or self._pending[0] > self.clock.now + timeout_s:
            self.clock.now += max(0.0, timeout_s)
            raise DeviceTimeout("nothing received")
        self.clock.now, reply = self._pending
        self._pending = None
        self.last_receive_time = self.clock.now
        return reply


def master_on(line: ScriptedLine, clock: Clock, **timing) -> ModbusMaster:
    master = ModbusMaster(line, Timing(line.timing.line, **timing), retries=1)  # type: ignore[arg-type]
    master._now = lambda: clock.now  # noqa: SLF001 - the fake clock
    master._sleep = clock.sleep  # noqa: SLF001
    return master


async def test_every_request_waits_t3_5_after_the_last_byte_of_the_reply_before_it():
    clock, line_settings = Clock(), LineSettings(9600, 8, "E", 1)
    line = ScriptedLine(clock, line_settings)
    master = master_on(line, clock)
    await master.read_blocks([ReadRequest(1, 3, 0, 2), ReadRequest(1, 3, 10, 2), ReadRequest(1, 4, 0, 1)])
    timing = Timing(line_settings)
    assert clock.sleeps == [pytest.approx(timing.t3_5)] * 2  # before the 2nd and the 3rd request
    first_reply_end = line.sent[0][0] + timing.transmit_time(8) + 0.010 + timing.transmit_time(9)
    assert line.sent[1][0] == pytest.approx(first_reply_end + timing.t3_5)


async def test_the_lines_extra_delay_adds_to_t3_5():
    clock, line_settings = Clock(), LineSettings(19200, 8, "E", 1)
    line = ScriptedLine(clock, line_settings)
    master = master_on(line, clock, inter_request_delay_s=0.050)
    await master.read_blocks([ReadRequest(1, 3, 0, 1), ReadRequest(1, 3, 1, 1)])
    assert clock.sleeps == [pytest.approx(Timing(line_settings).t3_5 + 0.050)]


async def test_after_a_silent_unit_the_retry_waits_only_t3_5_after_its_own_request():
    clock, line_settings = Clock(), LineSettings(9600, 8, "E", 1)
    line = ScriptedLine(clock, line_settings, silent={7})
    master = master_on(line, clock, response_timeout_s=0.5)
    with pytest.raises(DeviceTimeout, match=r"unit 7 did not answer read holding registers 0x0000\+2 "
                                            r"\(timeout after 519 ms, 1 retry\)"):
        await master.read(ReadRequest(7, 3, 0, 2))
    (first, _), (second, _) = line.sent
    timing = Timing(line_settings, 0.5)
    # The reply window: the request's transmit time, the response timeout, the response's own.
    assert second - first == pytest.approx(timing.reply_window(8, 9))
    assert clock.sleeps == []  # the window already outlasted t3.5 after the request
    assert master.counters["timeouts"] == 2 and master.counters["retries"] == 1


async def test_a_request_never_starts_before_the_previous_one_has_left_the_line():
    clock, line_settings = Clock(), LineSettings(1200, 8, "E", 1)
    line = ScriptedLine(clock, line_settings, turnaround_s=None)  # the reply is there before the request left
    master = master_on(line, clock)
    await master.read_blocks([ReadRequest(1, 3, 0, 1), ReadRequest(1, 3, 1, 1)])
    timing = Timing(line_settings)
    assert line.sent[1][0] - line.sent[0][0] == pytest.approx(timing.transmit_time(8) + timing.t3_5)
