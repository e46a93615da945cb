"""Simulated wired M-Bus slaves on a pseudo-terminal or TCP loopback, for the demo and tests.

A :class:`SimulatedBus` is sans-IO: it takes one master request (a decoded link frame) and
returns what the master hears, the replies of every slave that answers AND-ed byte by
byte (a space bit from any slave wins on a real bus, so two different frames turn into
garbage while two E5s stay an E5). :func:`serve_pty` and :func:`serve_tcp` put a bus on
a pseudo-terminal (the master opens ``server.path`` as a serial port) or on a TCP port,
pacing the reply at the configured baud rate (a pseudo-terminal ignores baud rates, so
the simulator waits for the request's wire time and the slave's reply delay, then sends
one character every 11 bit times).

Each :class:`SimulatedSlave` answers (EN 13757-2/-3, as a slave sees them):

* SND_NKE to its primary address → E5, back to its first telegram; to 253 while selected
  → E5 and deselected; to 255 → reset, no reply;
* REQ_UD2 (FCV set) → RSP_UD; a toggled FCB moves to the next telegram of a
  multi-telegram sequence (after the last, the first again), a repeated FCB repeats;
* SND_UD CI 0x52 to 253 → selected (E5) if the 8 bytes match its secondary address
  (F nibbles of the identification, FFFF manufacturer, FF version/medium are wildcards),
  deselected otherwise;
* SND_UD CI 0x51 with ``01 7A nn`` → new primary address ``nn`` (E5).

Telegrams come from captured frame files (:class:`FrameTelegrams`) or from a meter model
whose counters advance with time (:class:`MeterModel`). Faults: ``mute`` (tracks state,
never answers), ``bad_checksum`` (RSP_UD with a wrong CS).

Run ``python -m gateway.simulators.mbus --help`` for the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from gateway.codecs.mbus.application import (
    FixedDataResponse,
    Header,
    SecondaryAddressMask,
    VariableDataResponse,
    decode_user_data,
    encode,
)
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.records import make_record
from gateway.codecs.mbus.link import (
    ACK,
    ADDRESS_BROADCAST,
    ADDRESS_BROADCAST_REPLY,
    ADDRESS_NETWORK_LAYER,
    C_FCB,
    C_FCV,
    Frame,
    LinkParser,
    LongFrame,
    ShortFrame,
    decode_frame,
)
from gateway.simulators.pty import pty_end, serve_until_signalled
from gateway.transports.base import MBUS_LINE, LineSettings

# Master function codes as the slave classifies them (EN 13757-2 table 4), FCB/FCV masked.
_FUNCTION_MASK = 0x4F
_SND_NKE = 0x40
_SND_UD = 0x43
_REQ_UD2 = 0x4B
CI_SELECT = 0x52
CI_DATA_SEND = 0x51
#: DIF 01 (8-bit integer) VIF 7A (bus address): EN 13757-3 annex "setting the primary address".
SET_ADDRESS_RECORD = b"\x01\x7A"


class TelegramSource(Protocol):
    """Where a slave's RSP_UD telegrams come from."""

    def telegrams(self) -> Sequence[LongFrame]:
        """The current multi-telegram sequence (at least one), as RSP_UD long frames."""

    def header(self) -> Header:
        """Identification, manufacturer, version and medium: what a selection matches."""


class FrameTelegrams:
    """Telegrams from captured RSP_UD frames (``.hex`` files: hex bytes, any spacing)."""

    def __init__(self, frames: Sequence[bytes]) -> None:
        if not frames:
            raise ValueError("a slave needs at least one telegram")
        decoded = [decode_frame(bytes(frame)) for frame in frames]
        if not all(isinstance(frame, LongFrame) for frame in decoded):
            raise ValueError("telegram files must hold long frames (68 L L 68 ...)")
        self._frames: list[LongFrame] = decoded  # type: ignore[assignment]
        response = decode_user_data(self._frames[0].user_data)
        if isinstance(response, VariableDataResponse):
            self._header = response.header
        elif isinstance(response, FixedDataResponse):
            # Identification only: a selection naming a manufacturer never matches it.
            self._header = Header(response.identification, None, None, None, response.access_number, response.status)
        else:  # an application error (CI 0x70) names no meter: only primary addressing finds it
            self._header = Header(None, None, None, None)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> FrameTelegrams:
        return cls([bytes.fromhex(re.sub(r"\s", "", Path(path).read_text())) for path in paths])

    def telegrams(self) -> Sequence[LongFrame]:
        return self._frames

    def header(self) -> Header:
        return self._header


@dataclass
class MeterModel:
    """A heat meter whose values move with time: energy and volume count up at a steady
    power and flow, the flow temperature swings slowly, the clock follows ``wall_clock``.

    ``telegrams_count=2`` splits the readout: current values first (ending with DIF 0x1F,
    "more records follow"), then the billing values (storage 1: the energy the model
    started with, and today's date). Records and frames come from the application layer's encoder, so what
    the master decodes is what a codec round trip gives.
    """

    identification: str = "12345678"
    manufacturer: str = "GWY"
    version: int = 1
    medium: int = 0x04  # heat (outlet), EN 13757-3 table 3
    status: int = 0
    power_w: int = 12_000
    flow_l_per_h: int = 600
    energy_wh: int = 1_234_567
    volume_l: int = 98_765
    telegrams_count: int = 1
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = datetime.now
    _started: float | None = field(default=None, repr=False)
    _access: int = field(default=0, repr=False)

    def header(self) -> Header:
        return Header(self.identification, self.manufacturer, self.version, self.medium, self._access, self.status)

    def telegrams(self) -> Sequence[LongFrame]:
        if self._started is None:
            self._started = self.monotonic()
        elapsed = Decimal(repr(self.monotonic() - self._started))
        now = self.wall_clock().replace(second=0, microsecond=0, tzinfo=None)
        energy = self.energy_wh + int(self.power_w * elapsed / 3600)
        volume = Decimal(self.volume_l + int(self.flow_l_per_h * elapsed / 3600)).scaleb(-3)
        swing = Decimal(round(500 * math.sin(float(elapsed) / 600)))  # ±5 °C over ~1 h
        flow_temperature = (Decimal(7000) + swing).scaleb(-2)
        current = [
            make_record(0x03, Decimal(energy)),  # energy, Wh
            make_record(0x13, volume),  # volume, 0.001 m^3
            make_record(0x2B, Decimal(self.power_w)),  # power, W
            make_record(0x3B, Decimal(self.flow_l_per_h).scaleb(-3)),  # volume flow, 0.001 m^3/h
            make_record(0x59, flow_temperature),  # flow temperature, 0.01 °C
            make_record(0x5D, flow_temperature - 20),  # return temperature, 0.01 °C
            make_record(0x59, Decimal("75.00"), function="maximum value"),
            make_record(0x6D, now),  # date and time, type F
        ]
        billing = [  # the values at the start of the model's run, "billed" today
            make_record(0x03, Decimal(self.energy_wh), storage=1),
            make_record(0x6C, now.date(), storage=1),  # date, type G
        ]
        groups = [current + billing] if self.telegrams_count <= 1 else [current, billing]
        frames = []
        for index, records in enumerate(groups):
            self._access = (self._access + 1) & 0xFF
            raw = encode(self.header(), records, more_records_follow=index < len(groups) - 1)
            frames.append(decode_frame(raw))
        return frames  # type: ignore[return-value]


@dataclass
class SimulatedSlave:
    """One slave on the simulated bus (see the module docstring for what it answers)."""

    primary: int
    source: TelegramSource
    mute: bool = False
    bad_checksum: bool = False
    selected: bool = False
    index: int = 0
    last_fcb: bool | None = None
    requests_seen: int = field(default=0, repr=False)

    def reset(self) -> None:
        self.index, self.last_fcb = 0, None

    def addressed(self, address: int) -> bool:
        return address in (self.primary, ADDRESS_BROADCAST_REPLY) or (address == ADDRESS_NETWORK_LAYER and self.selected)

    def matches(self, selection: bytes) -> bool:
        return SecondaryAddressMask.from_bytes(selection).matches(self.source.header())

    def answer(self, request: Frame) -> bytes | None:
        """What this slave sends back to ``request`` (None: it stays silent)."""
        self.requests_seen += 1
        if isinstance(request, ShortFrame):
            return self._short(request)
        if isinstance(request, LongFrame):
            return self._long(request)
        return None

    def _short(self, request: ShortFrame) -> bytes | None:
        function, address = request.c & _FUNCTION_MASK, request.a
        if function == _SND_NKE:
            if address == ADDRESS_NETWORK_LAYER:
                if not self.selected:
                    return None
                self.selected = False
                return bytes([ACK])
            if address == ADDRESS_BROADCAST:
                self.reset()
                return None
            if self.addressed(address):
                self.reset()
                return bytes([ACK])
            return None
        if function == _REQ_UD2 and self.addressed(address):
            return self._rsp_ud(request.c)
        return None

    def _long(self, request: LongFrame) -> bytes | None:
        if request.c & _FUNCTION_MASK != _SND_UD:
            return None
        if request.ci == CI_SELECT and request.a == ADDRESS_NETWORK_LAYER and len(request.data) == 8:
            self.selected = self.matches(request.data)  # a selection deselects the others
            if self.selected:
                self.reset()
                return bytes([ACK])
            return None
        if not self.addressed(request.a) or request.a == ADDRESS_BROADCAST:
            return None
        if request.ci == CI_DATA_SEND and request.data[:2] == SET_ADDRESS_RECORD and len(request.data) == 3:
            self.primary = request.data[2]
        return bytes([ACK])

    def _rsp_ud(self, control: int) -> bytes:
        telegrams = self.source.telegrams()
        if control & C_FCV:
            fcb = bool(control & C_FCB)
            if self.last_fcb is not None and fcb != self.last_fcb:
                self.index += 1  # the master got the last one: move on (EN 13757-2 5.5)
            self.last_fcb = fcb
        self.index %= len(telegrams)
        telegram = telegrams[self.index]
        raw = bytearray(LongFrame(telegram.c, self.primary, telegram.ci, telegram.data).to_bytes())
        if self.bad_checksum:
            raw[-2] ^= 0xFF
        return bytes(raw)


def collide(replies: Sequence[bytes]) -> bytes:
    """What the master hears when several slaves talk at once: bits AND-ed (the bus idles
    at mark, 1; any slave sending a space, 0, pulls it down), the longest reply's tail."""
    if not replies:
        return b""
    out = bytearray(b"\xFF" * max(map(len, replies)))
    for reply in replies:
        for i, byte in enumerate(reply):
            out[i] &= byte
    return bytes(out)


class SimulatedBus:
    """Slaves on one pair of wires; :meth:`handle` is what the master hears back."""

    def __init__(self, slaves: Sequence[SimulatedSlave]) -> None:
        self.slaves = list(slaves)
        self.requests = 0

    def handle(self, request: Frame) -> bytes:
        self.requests += 1
        replies = []
        for slave in self.slaves:
            reply = slave.answer(request)  # mute slaves still follow the conversation
            if reply is not None and not slave.mute:
                replies.append(reply)
        return collide(replies)

    def slave(self, primary: int) -> SimulatedSlave:
        for slave in self.slaves:
            if slave.primary == primary:
                return slave
        raise KeyError(primary)


# -- serving a bus on a pseudo-terminal or TCP -------------------------------------------

@dataclass
class Pacing:
    """How replies are timed: ``line`` gives the character time, ``reply_delay_s`` the
    slave's turnaround (EN 13757-2: at least 11 bit times); ``paced=False`` answers at
    once in one write (fast tests that do not care about timing)."""

    line: LineSettings = MBUS_LINE
    paced: bool = True
    reply_delay_s: float | None = None

    @property
    def turnaround(self) -> float:
        return self.line.bit_times(11) if self.reply_delay_s is None else self.reply_delay_s


class _Responder:
    """Turns received bytes into requests and paced replies, for one byte stream."""

    def __init__(self, bus: SimulatedBus, pacing: Pacing, write: Callable[[bytes], None]) -> None:
        self.bus = bus
        self.pacing = pacing
        self._write = write
        self._parser = LinkParser()
        self._requests: asyncio.Queue[tuple[Frame, float]] = asyncio.Queue()
        self._first_byte_at: float | None = None

    def received(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        if not self._parser.buffered:
            self._first_byte_at = now
        self._parser.receive_data(data)
        while True:
            try:
                frame = self._parser.next_frame()
            except MBusFrameError:
                continue  # a slave ignores a broken request
            if frame is None:
                break
            started = self._first_byte_at if self._first_byte_at is not None else now
            self._requests.put_nowait((frame, started))
            self._first_byte_at = now if self._parser.buffered else None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            request, started = await self._requests.get()
            reply = self.bus.handle(request)
            if not reply:
                continue
            if not self.pacing.paced:
                if self.pacing.reply_delay_s:
                    await asyncio.sleep(self.pacing.reply_delay_s)
                self._write(reply)
                continue
            # The request occupied the wire from its first byte for len × 11 bit times.
            line = self.pacing.line
            begin = started + line.transmit_time(len(_frame_bytes(request))) + self.pacing.turnaround
            # Character i is complete (its stop bit sent) at begin + (i + 1) character times:
            # hand each one over then, catching up in one write when the loop woke late.
            char_time = line.transmit_time(1)
            sent = 0
            while sent < len(reply):
                await asyncio.sleep(max(0.0, begin + (sent + 1) * char_time - loop.time()))
                done = min(len(reply), int((loop.time() - begin) / char_time + 1e-9))
                if done > sent:
                    self._write(reply[sent:done])
                    sent = done


def _frame_bytes(frame: Frame) -> bytes:
    return frame.to_bytes()


@dataclass
class PtyServer:
    """A simulated bus on a pseudo-terminal: open :attr:`path` as the serial port.
    ``inject(data)`` puts bytes on the line as if a slave sent them (noise, late replies)."""

    path: str
    bus: SimulatedBus
    inject: Callable[[bytes], None]


@contextlib.asynccontextmanager
async def serve_pty(bus: SimulatedBus, pacing: Pacing | None = None) -> AsyncIterator[PtyServer]:
    """Serve ``bus`` on a new pseudo-terminal for the duration of the block."""
    responder: _Responder | None = None

    def received(data: bytes) -> None:
        if responder is not None:
            responder.received(data)

    async with pty_end(received) as end:
        responder = _Responder(bus, pacing or Pacing(), end.write)
        task = asyncio.ensure_future(responder.run())
        try:
            yield PtyServer(end.path, bus, end.write)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class TcpServer:
    """A simulated bus behind a TCP serial server on loopback: connect to :attr:`port`."""

    host: str
    port: int
    bus: SimulatedBus


@contextlib.asynccontextmanager
async def serve_tcp(bus: SimulatedBus, pacing: Pacing | None = None, host: str = "127.0.0.1",
                    port: int = 0) -> AsyncIterator[TcpServer]:
    """Serve ``bus`` on TCP (``port=0`` picks a free port) for the duration of the block."""
    pacing = pacing or Pacing()
    connections: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        responder = _Responder(bus, pacing, writer.write)
        task = asyncio.ensure_future(responder.run())
        connections.add(task)
        try:
            while data := await reader.read(4096):
                responder.received(data)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            connections.discard(task)
            writer.close()

    server = await asyncio.start_server(connection, host, port)
    try:
        bound = server.sockets[0].getsockname()
        yield TcpServer(bound[0], bound[1], bus)
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await server.wait_closed()


# -- command line -------------------------------------------------------------------------

DESCRIPTION = """\
Simulated wired M-Bus slaves on a pseudo-terminal (default) or on TCP 127.0.0.1.

Prints "PTY /dev/pts/N" (open that path as the serial port) or "TCP 127.0.0.1:PORT" on
stdout, then serves until interrupted. Slaves answer SND_NKE, REQ_UD2 (multi-telegram
sequences follow the FCB), secondary-address selection with wildcards and primary
address setting; replies of slaves answering at once are AND-ed as on a real bus.

  python -m gateway.simulators.mbus --meters 3                  3 model heat meters, 1..3
  python -m gateway.simulators.mbus 5:a.hex 6:b1.hex,b2.hex     captured telegrams
  python -m gateway.simulators.mbus --model 7:00001234:2 --mute 7
"""


def _file_slave(spec: str) -> SimulatedSlave:
    address, _, files = spec.partition(":")
    if not address.isdigit() or not files:
        raise argparse.ArgumentTypeError(f"expected ADDR:FILE.hex[,FILE2.hex...], got {spec!r}")
    try:
        return SimulatedSlave(int(address), FrameTelegrams.from_files(files.split(",")))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{spec}: {exc}") from None


def _model_slave(spec: str) -> SimulatedSlave:
    match = re.fullmatch(r"(\d{1,3}):(\d{8})(?::([1-9]))?", spec)
    if not match:
        raise argparse.ArgumentTypeError(f"expected ADDR:ID[:TELEGRAMS], got {spec!r}")
    model = MeterModel(identification=match.group(2), telegrams_count=int(match.group(3) or 1))
    return SimulatedSlave(int(match.group(1)), model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulators.mbus", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slaves", nargs="*", type=_file_slave, metavar="ADDR:FILE.hex[,FILE2.hex...]",
                        help="a slave at primary address ADDR answering with the captured RSP_UD frames in the "
                             "files, one telegram per file (its primary address is rewritten to ADDR)")
    parser.add_argument("--model", action="append", type=_model_slave, default=[], metavar="ADDR:ID[:TELEGRAMS]",
                        help="a model heat meter with identification ID (8 digits) whose values advance with "
                             "time; TELEGRAMS=2 splits its readout in two telegrams")
    parser.add_argument("--meters", type=int, default=0, metavar="N",
                        help="N model heat meters at primary addresses 1..N, identifications 10000001...")
    parser.add_argument("--tcp", type=int, metavar="PORT", help="serve on TCP 127.0.0.1:PORT instead of a pty")
    parser.add_argument("--baud", type=int, default=MBUS_LINE.baud,
                        help="pace replies at this baud rate, 11 bits per character (default 2400)")
    parser.add_argument("--no-pace", action="store_true", help="answer at once, without wire timing")
    parser.add_argument("--reply-delay-ms", type=float, metavar="MS",
                        help="slave turnaround before replying (default 11 bit times, the minimum)")
    parser.add_argument("--mute", type=int, action="append", default=[], metavar="ADDR",
                        help="the slave at ADDR follows the conversation but never answers")
    parser.add_argument("--bad-checksum", type=int, action="append", default=[], metavar="ADDR",
                        help="the slave at ADDR sends RSP_UD frames with a wrong checksum")
    return parser


def bus_from_args(args: argparse.Namespace) -> SimulatedBus:
    slaves = list(args.slaves) + list(args.model)
    slaves += [SimulatedSlave(n, MeterModel(identification=f"{10_000_000 + n:08d}")) for n in range(1, args.meters + 1)]
    if not slaves:
        raise SystemExit("no slaves: give ADDR:FILE.hex, --model or --meters (see --help)")
    for slave in slaves:
        slave.mute = slave.primary in args.mute
        slave.bad_checksum = slave.primary in args.bad_checksum
    return SimulatedBus(slaves)


async def _serve(args: argparse.Namespace) -> None:
    bus = bus_from_args(args)
    reply_delay = None if args.reply_delay_ms is None else args.reply_delay_ms / 1000
    pacing = Pacing(LineSettings(args.baud), paced=not args.no_pace, reply_delay_s=reply_delay)
    if args.tcp is not None:
        await serve_until_signalled(serve_tcp(bus, pacing, port=args.tcp), lambda s: f"TCP {s.host}:{s.port}")
    else:
        await serve_until_signalled(serve_pty(bus, pacing), lambda s: f"PTY {s.path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
