"""The Modbus RTU master (Modbus over Serial Line V1.02) over a transport.

The codec (:mod:`gateway.codecs.modbus.rtu`, on pymodbus's framer) builds requests and
finds responses; this module owns time, retries and the port. The bytes go through the
gateway's own :class:`~gateway.transports.Transport`, the one every bus on the same
physical port shares: a read of one meter holds the port (``transport.claim(line)``) from
its first request to its last response, so an M-Bus or DLMS master on the same port never
talks in between, and the port is switched to the Modbus line's settings first.

Timing (Serial Line V1.02, 2.5.1.1):

* a frame is sent in one write, so the UART puts its characters back to back and no gap
  inside it reaches t1.5 (1.5 character times);
* before each request the line has been silent for t3.5 (3.5 character times of 11 bits:
  38.5 bit times; fixed 1.75 ms above 19200 baud) since the last byte received or sent,
  whoever's transaction it was, plus the line's ``inter_request_delay_ms``;
* the response must be complete within ``response_timeout_ms`` after the request has
  left the line, plus the response's own transmit time. Gaps inside a received frame are
  not measured against t1.5: USB adapters (a 16 ms latency timer) and TCP serial servers
  deliver bytes in bursts, so a frame is taken as complete by its length and CRC;
* a request that got no answer, or a garbled one, is repeated at most ``retries`` times
  (after a garbled one, once the line has been quiet for t3.5 plus the OS latency); an
  exception ACKNOWLEDGE or SERVER DEVICE BUSY is repeated too, any other exception is
  the meter's answer and raised at once.

Input is discarded before every request, so a late reply is never taken for the answer
to the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.codecs.modbus.errors import ModbusFrameError
from gateway.codecs.modbus.rtu import TRANSIENT_EXCEPTIONS, ExceptionReply, ReadRequest, RegistersReply, ResponseReader
from gateway.errors import DeviceTimeout
from gateway.transports.base import LineSettings, Transport

log = logging.getLogger(__name__)

#: Serial Line V1.02, 2.5.1: an RTU character is 11 bits (start, 8 data, parity or a
#: second stop bit, stop).
CHARACTER_BITS = 11
#: 2.5.1.1: above 19200 baud the timers are fixed, 750 µs and 1.750 ms.
FIXED_TIMERS_ABOVE_BAUD = 19200
FIXED_T1_5_S = 0.000750
FIXED_T3_5_S = 0.001750
#: What the operating system and a USB adapter add before received bytes are seen.
OS_LATENCY_S = 0.020


@dataclass(frozen=True, slots=True)
class Timing:
    """The master's times, from the line settings and the line's configuration."""

    line: LineSettings
    response_timeout_s: float = 1.0
    inter_request_delay_s: float = 0.0

    @property
    def t1_5(self) -> float:
        """The longest silence allowed inside a frame (what a sender must stay under)."""
        if self.line.baud > FIXED_TIMERS_ABOVE_BAUD:
            return FIXED_T1_5_S
        return self.line.bit_times(1.5 * CHARACTER_BITS)

    @property
    def t3_5(self) -> float:
        """The silence that separates frames."""
        if self.line.baud > FIXED_TIMERS_ABOVE_BAUD:
            return FIXED_T3_5_S
        return self.line.bit_times(3.5 * CHARACTER_BITS)

    @property
    def idle_gap(self) -> float:
        """Silence before a request: t3.5 and the line's extra delay."""
        return self.t3_5 + self.inter_request_delay_s

    def transmit_time(self, nbytes: int) -> float:
        return self.line.bit_times(nbytes * CHARACTER_BITS)

    def reply_window(self, request_len: int, response_len: int) -> float:
        """From handing a request to the OS to the last byte of its response."""
        return self.transmit_time(request_len) + self.response_timeout_s + self.transmit_time(response_len)

    @property
    def quiet_window(self) -> float:
        """Silence after garbage that means the sender has finished."""
        return self.t3_5 + OS_LATENCY_S


COUNTERS = ("requests", "responses", "retries", "timeouts", "garbled", "exceptions", "skipped_bytes")


class ModbusMaster:
    """The master of one Modbus line (see the module docstring).

    ``ModbusMaster(transport, timing, retries=2)``; :meth:`read_blocks` is one transaction
    on the port. ``counters`` (per line; pass the line's own dict to keep counting across
    reconnects): requests, responses, retries, timeouts, garbled (replies without a valid
    frame), exceptions (exception responses), skipped_bytes (echo, noise, other units'
    frames).
    """

    def __init__(self, transport: Transport, timing: Timing, *, retries: int = 2,
                 counters: dict[str, int] | None = None) -> None:
        self.transport = transport
        self.timing = timing
        self.retries = retries
        self.counters = counters if counters is not None else {}
        for name in COUNTERS:
            self.counters.setdefault(name, 0)
        self._sent_until = 0.0

    async def read(self, request: ReadRequest) -> RegistersReply:
        """One read as a transaction of its own."""
        return (await self.read_blocks([request]))[0]

    async def read_blocks(self, requests: Sequence[ReadRequest]) -> list[RegistersReply]:
        """The requests in order, holding the port throughout; the first that fails ends
        the transaction: :class:`DeviceTimeout` (no answer after the retries),
        :class:`ModbusFrameError` (garbled every time) or
        :class:`~gateway.codecs.modbus.errors.ModbusExceptionResponse`."""
        async with self._claim():
            return [await self._transact(request) for request in requests]

    # -- one request, its reply, retries --------------------------------------------------

    @asynccontextmanager
    async def _claim(self) -> AsyncIterator[None]:
        discarded = self.transport.bytes_discarded
        async with self.transport.claim(self.timing.line):
            self.counters["skipped_bytes"] += self.transport.bytes_discarded - discarded
            yield

    async def _transact(self, request: ReadRequest) -> RegistersReply:
        attempt = 0
        while True:
            try:
                reply = await self._exchange(request)
            except (DeviceTimeout, ModbusFrameError) as exc:
                if attempt >= self.retries:
                    raise self._give_up(exc, request, attempt) from None
            else:
                if isinstance(reply, RegistersReply):
                    return reply
                if reply.code not in TRANSIENT_EXCEPTIONS or attempt >= self.retries:
                    raise reply.error(request)
                log.info("unit %d: %s, asking again", request.unit, reply.name)
            attempt += 1
            self.counters["retries"] += 1

    def _give_up(self, exc: Exception, request: ReadRequest, retries: int) -> Exception:
        tries = f"{retries} {'retry' if retries == 1 else 'retries'}"
        if isinstance(exc, DeviceTimeout):
            waited_ms = self.timing.reply_window(len(request.to_bytes()), request.response_length) * 1000
            return DeviceTimeout(f"unit {request.unit} did not answer {request.describe()} "
                                 f"(timeout after {waited_ms:.0f} ms, {tries})")
        return ModbusFrameError(f"unit {request.unit} answered {request.describe()} with garbage "
                                f"({exc}; {tries})")

    async def _exchange(self, request: ReadRequest) -> RegistersReply | ExceptionReply:
        """One request and its reply, no retry."""
        await self._wait_for_idle_line()
        self._discard_input()
        frame = request.to_bytes()
        await self.transport.write(frame)
        sent_at = self._now()
        self._sent_until = sent_at + self.timing.transmit_time(len(frame))
        self.counters["requests"] += 1
        deadline = sent_at + self.timing.reply_window(len(frame), request.response_length)
        reader = ResponseReader(request)
        try:
            reply = await self._receive(reader, deadline)
        except DeviceTimeout:
            self.counters["timeouts"] += 1
            raise
        except ModbusFrameError:
            self.counters["garbled"] += 1
            await self._wait_for_quiet()
            raise
        finally:
            self.counters["skipped_bytes"] += reader.skipped
        self.counters["responses"] += 1
        if isinstance(reply, ExceptionReply):
            self.counters["exceptions"] += 1
        return reply

    async def _receive(self, reader: ResponseReader, deadline: float) -> RegistersReply | ExceptionReply:
        while True:
            reply = reader.next_reply()
            if reply is not None:
                return reply
            try:
                chunk = await self.transport.read(timeout_s=deadline - self._now())
            except DeviceTimeout:
                reader.end_of_input()  # garbage: ModbusFrameError; silence: the timeout
                raise
            reader.receive_data(chunk)

    async def _wait_for_idle_line(self) -> None:
        """t3.5 (and the line's delay) since the last byte on the line, in either direction."""
        last = max(self.transport.last_receive_time or 0.0, self._sent_until)
        wait = last + self.timing.idle_gap - self._now()
        if wait > 0:
            await self._sleep(wait)

    async def _wait_for_quiet(self) -> None:
        """Read and drop bytes until the line has been silent for the quiet window."""
        while True:
            try:
                junk = await self.transport.read(timeout_s=self.timing.quiet_window)
            except DeviceTimeout:
                return
            self.counters["skipped_bytes"] += len(junk)

    def _discard_input(self) -> None:
        stray = self.transport.reset_input()
        if stray:
            self.counters["skipped_bytes"] += stray
            log.debug("%s: discarded %d late or stray bytes", self.transport.description, stray)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    _sleep = staticmethod(asyncio.sleep)
