"""Simulated wireless M-Bus radio dongles on a pseudo-terminal, for the demo and tests.

A dongle model is sans-IO: :meth:`SimulatedDongle.received` takes the bytes the host
writes and returns the dongle's answers; :meth:`SimulatedDongle.indication` frames a
telegram heard on the air the way that dongle hands it over. Three framings:

* :class:`ImstDongle` (iM871A, WM-Bus HCI): answers ``GET_DEVICEINFO`` and ``PING``,
  ``SET_CONFIG`` (link mode, RSSI on/off) with status 0; telegrams as RADIOLINK
  ``WMBUSMSG_IND`` with the RSSI byte when enabled;
* :class:`AmberDongle` (AMB8465): answers ``CMD_GET_REQ`` from its parameter memory
  (``UART_CMD_Out_Enable``, ``RSSI_Enable``), ``CMD_SET_MODE_REQ``, ``CMD_SERIALNO_REQ``;
  telegrams as ``CMD_DATA_IND`` or, with command output off, transparent;
* :class:`CulDongle` (culfw): ``V`` → version line, ``X21``/``X01`` silently, ``brt``/``brc``/
  ``brs`` → ``TMODE``/``CMODE``/``SMODE``; telegrams as ``b`` + format A hex (T and S mode)
  or ``bY`` + format B hex (C mode), with LQI and RSSI after ``X21``.

A dongle delivers nothing until the host has set a link mode, and then only the telegrams
of meters sending in a mode it receives: the receiver's initialisation is exercised.

:class:`WirelessMeterModel` is a water meter whose volume advances by a fixed step with
every telegram (so a test knows the exact value of the n-th telegram): volume, volume
flow, date and time, and the billing volume (storage 1). Its telegrams are SND_NR with a
short TPL header, encrypted in security mode 5 with its key (AES-128-CBC, EN 13757-7
9.4.3) or plaintext without one; records, frames and encryption come from the codec's
encoders (:func:`~gateway.codecs.mbus.records.make_record`,
:class:`~gateway.codecs.mbus.wireless_link.WirelessFrame`,
:func:`~gateway.codecs.mbus.wmbus_security.aes_cbc_encrypt`).

:func:`serve_dongle` puts a dongle and its meters on a pseudo-terminal (open
``server.path`` as the dongle's serial port) and sends every meter's telegram each
``interval_s``. Faults: ``garbage`` bytes before each telegram, ``repeat`` (every telegram
twice: duplicates), ``server.silent = True`` (the dongle's receiver stalls: nothing on
the air is delivered, commands are still answered) or ``silent_after_s``/``silent_for_s``,
``meter.muted = True`` (a meter stops sending), and a meter whose key differs from the one
the gateway has (``--wrong-key``).

Run ``python -m gateway.simulators.wmbus --help`` for the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.codecs.mbus.application import CI_VARIABLE_SHORT_HEADER, manufacturer_code
from gateway.codecs.mbus.dongles import amber, imst
from gateway.codecs.mbus.dongles.amber import AmberAdapter, AmberConfirm
from gateway.codecs.mbus.dongles.cul import EOL, MODE_COMMANDS
from gateway.codecs.mbus.dongles.imst import HciMessage, ImstHci
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.records import DataRecord, encode_record, make_record
from gateway.codecs.mbus.telegram import CHECK_BYTES, MODE_AES_CBC_IV
from gateway.codecs.mbus.tpl import CF_BLOCKS_SHIFT, CF_MODE_SHIFT
from gateway.codecs.mbus.wireless_link import FrameFormat, LinkMode, WirelessFrame, add_crc_blocks
from gateway.codecs.mbus.wmbus_security import BLOCK, AesKey, aes_cbc_encrypt, mode5_iv
from gateway.simulators.pty import pty_end, serve_until_signalled

C_SND_NR = 0x44  # EN 13757-4 C-field: send/no reply, a meter's spontaneous telegram
IDLE_FILLER = 0x2F  # EN 13757-3 DIF 0x2F: pads the encrypted payload to whole blocks
WATER = 0x07


# -- meters -------------------------------------------------------------------------------------

@dataclass
class WirelessMeterModel:
    """A wireless water meter (see the module docstring). ``key`` None sends plaintext."""

    identification: str = "12345678"
    manufacturer: str = "GWY"
    version: int = 1
    device_type: int = WATER
    key: AesKey | None = field(default=None, repr=False)
    mode: LinkMode = LinkMode.T1
    interval_s: float = 5.0
    volume_l: int = 123_456
    step_l: int = 7
    status: int = 0
    rssi_dbm: int = -60
    muted: bool = False
    wall_clock: Callable[[], datetime] = datetime.now
    sent: int = 0

    def volume_at(self, count: int) -> Decimal:
        """The volume in m^3 that the ``count``-th telegram (from 1) reports."""
        return Decimal(self.volume_l + self.step_l * count).scaleb(-3)

    def access_number_at(self, count: int) -> int:
        return count & 0xFF

    def records_at(self, count: int) -> list[DataRecord]:
        now = self.wall_clock().replace(second=0, microsecond=0, tzinfo=None)
        return [
            make_record(0x13, self.volume_at(count)),  # volume, 0.001 m^3
            make_record(0x3B, Decimal(self.step_l * 3600 // max(1, round(self.interval_s))).scaleb(-3)),  # m^3/h
            make_record(0x6D, now),  # date and time, type F
            make_record(0x13, self.volume_at(0), storage=1),  # the billing volume
        ]

    def telegram_at(self, count: int) -> bytes:
        """The stripped link-layer frame of the ``count``-th telegram."""
        access = self.access_number_at(count)
        plain = b"".join(encode_record(record) for record in self.records_at(count))
        configuration = 0
        if self.key is not None:
            plain = CHECK_BYTES + plain
            plain += bytes([IDLE_FILLER]) * (-len(plain) % BLOCK)
            configuration = MODE_AES_CBC_IV << CF_MODE_SHIFT | (len(plain) // BLOCK) << CF_BLOCKS_SHIFT
            manufacturer = manufacturer_code(self.manufacturer).to_bytes(2, "little")
            plain = aes_cbc_encrypt(self.key, mode5_iv(manufacturer, self._address, access), plain)
        tpl = bytes([access, self.status]) + configuration.to_bytes(2, "little")  # EN 13757-7 short header
        return WirelessFrame(C_SND_NR, manufacturer_code(self.manufacturer), self.identification, self.version,
                             self.device_type, CI_VARIABLE_SHORT_HEADER, tpl + plain).to_bytes()

    def next_telegram(self) -> bytes:
        self.sent += 1
        return self.telegram_at(self.sent)

    @property
    def _address(self) -> bytes:
        return bytes.fromhex(self.identification)[::-1] + bytes([self.version, self.device_type])


# -- dongles ------------------------------------------------------------------------------------

class SimulatedDongle(ABC):
    """What every simulated dongle shares: the modes it receives, the commands it saw."""

    name = "dongle"

    def __init__(self) -> None:
        self.modes: frozenset[LinkMode] = frozenset()
        self.commands: list[str] = []
        self.rssi = True

    @property
    def receiving(self) -> bool:
        return bool(self.modes)

    @property
    def inits(self) -> int:
        """How many times the host set a link mode."""
        return sum(1 for command in self.commands if command.startswith("set mode"))

    @abstractmethod
    def received(self, data: bytes) -> bytes:
        """Take bytes from the host; return the dongle's answers."""

    @abstractmethod
    def indication(self, frame: bytes, rssi_dbm: int) -> bytes:
        """A heard telegram (stripped frame) as the dongle sends it to the host."""

    @abstractmethod
    def garbage(self, rng: random.Random, size: int) -> bytes:
        """Line noise that cannot be mistaken for the start of a message."""

    def _set_modes(self, modes: set[LinkMode], text: str) -> None:
        self.modes = frozenset(modes)
        self.commands.append(f"set mode {text}")


def _reverse(table: dict[LinkMode, int], combined: int) -> dict[int, set[LinkMode]]:
    out = {value: {mode} for mode, value in table.items()}
    out[combined] = {LinkMode.C1, LinkMode.T1}
    return out


def parsed(parser: Any, data: bytes) -> Iterator[Any]:
    """What the host's bytes hold, read with the codec's adapter (broken messages skipped)."""
    parser.receive_data(data)
    while True:
        try:
            message = parser.next_event()
        except MBusFrameError:
            continue
        if message is None:
            return
        yield message


def _noise(rng: random.Random, size: int, avoid: int) -> bytes:
    return bytes(byte for byte in rng.randbytes(size * 2) if byte != avoid)[:size]


class ImstDongle(SimulatedDongle):
    """An iM871A (see the module docstring)."""

    name = "imst"
    MODES = _reverse(imst.LINK_MODES, imst.LINK_MODE_C1_T1)

    def __init__(self, *, firmware: int = 0x15) -> None:
        super().__init__()
        self.firmware = firmware
        self._parser = ImstHci()

    def received(self, data: bytes) -> bytes:
        return b"".join(self._answer(message) for message in parsed(self._parser, data)
                        if isinstance(message, HciMessage) and message.endpoint == imst.DEVMGMT)

    def _answer(self, message: HciMessage) -> bytes:
        if message.message_id == imst.GET_DEVICEINFO_REQ:
            self.commands.append("device info")
            info = bytes([0x33, 0x00, self.firmware, 0x02]) + (0x1234ABCD).to_bytes(4, "little")
            return ImstHci.message(imst.DEVMGMT, imst.GET_DEVICEINFO_RSP, info)
        if message.message_id == imst.PING_REQ:
            return ImstHci.message(imst.DEVMGMT, imst.PING_RSP)
        if message.message_id == imst.SET_CONFIG_REQ:
            payload = message.payload
            modes = self.MODES.get(payload[2]) if len(payload) > 2 and payload[1] & imst.IIF1_LINK_MODE else None
            if modes is None:
                return ImstHci.message(imst.DEVMGMT, imst.SET_CONFIG_RSP, b"\x01")
            if len(payload) > 4 and payload[3] & imst.IIF2_AUTO_RSSI:
                self.rssi = bool(payload[4])
            self._set_modes(modes, "+".join(sorted(mode.value for mode in modes)))
            return ImstHci.message(imst.DEVMGMT, imst.SET_CONFIG_RSP, b"\x00")
        return b""

    def indication(self, frame: bytes, rssi_dbm: int) -> bytes:
        control = imst.CTRL_RSSI if self.rssi else 0
        body = bytes([imst.SOF, control | imst.RADIOLINK, imst.WMBUSMSG_IND, len(frame) - 1]) + frame[1:]
        # The inverse of the codec's curve: raw 45 is -100 dBm, two raw steps per dB.
        return body + (bytes([max(0, min(229, 45 + 2 * (rssi_dbm + 100)))]) if self.rssi else b"")

    def garbage(self, rng: random.Random, size: int) -> bytes:
        return _noise(rng, size, imst.SOF)


class AmberDongle(SimulatedDongle):
    """An AMB8465 (see the module docstring). ``command_output`` is its
    ``UART_CMD_Out_Enable`` parameter, ``rssi`` its ``RSSI_Enable``."""

    name = "amber"
    MODES = _reverse(amber.LINK_MODES, amber.LINK_MODE_C1_T1)

    def __init__(self, *, command_output: bool = True, rssi: bool = True) -> None:
        super().__init__()
        self.rssi = rssi
        self.parameters = {amber.PARAM_UART_CMD_OUT_ENABLE: int(command_output), amber.PARAM_RSSI_ENABLE: int(rssi)}
        self._parser = AmberAdapter(rssi=False)

    def received(self, data: bytes) -> bytes:
        # The adapter reads any command frame as a confirmation: the host's requests too.
        return b"".join(self._answer(request.command, request.payload) for request in parsed(self._parser, data)
                        if isinstance(request, AmberConfirm))

    def _answer(self, command: int, payload: bytes) -> bytes:
        confirm = command | amber.CONFIRM
        if command == amber.CMD_GET_REQ and len(payload) == 2:
            first, count = payload
            self.commands.append(f"get 0x{first:02X}")
            values = bytes(self.parameters.get(address, 0) for address in range(first, first + count))
            return AmberAdapter.command(confirm, payload + values)
        if command == amber.CMD_SET_MODE_REQ and len(payload) == 1:
            modes = self.MODES.get(payload[0])
            if modes is None:
                return AmberAdapter.command(confirm, b"\x01")
            self._set_modes(modes, "+".join(sorted(mode.value for mode in modes)))
            return AmberAdapter.command(confirm, b"\x00")
        if command == amber.CMD_SERIALNO_REQ:
            return AmberAdapter.command(confirm, (0x01020304).to_bytes(4, "big"))
        return b""

    @property
    def command_output(self) -> bool:
        return bool(self.parameters[amber.PARAM_UART_CMD_OUT_ENABLE])

    def indication(self, frame: bytes, rssi_dbm: int) -> bytes:
        rssi = bytes([((rssi_dbm + 74) * 2) & 0xFF]) if self.rssi else b""  # dBm = raw / 2 - 74
        if self.command_output:
            return AmberAdapter.command(amber.CMD_DATA_IND, frame[1:] + rssi)
        return frame + rssi

    def garbage(self, rng: random.Random, size: int) -> bytes:
        return _noise(rng, size, amber.SOF)


class CulDongle(SimulatedDongle):
    """A CUL stick with culfw (see the module docstring)."""

    name = "cul"
    ANSWERS = {LinkMode.T1: b"TMODE", LinkMode.C1: b"CMODE", LinkMode.S1: b"SMODE"}
    MODES = {command: mode for mode, command in MODE_COMMANDS.items()}

    def __init__(self, *, version: str = "V 1.67 nanoCUL868") -> None:
        super().__init__()
        self.version = version
        self.rssi = False
        self._line = bytearray()

    def received(self, data: bytes) -> bytes:
        self._line += data
        out = b""
        while (end := self._line.find(b"\n")) >= 0:
            line = bytes(self._line[:end]).strip()
            del self._line[: end + 1]
            out += self._answer(line)
        return out

    def _answer(self, line: bytes) -> bytes:
        if line == b"V":
            self.commands.append("version")
            return self.version.encode() + EOL
        if line in (b"X21", b"X01"):
            self.commands.append(line.decode())
            self.rssi = line == b"X21"
            return b""
        if line in self.MODES:
            mode = self.MODES[line]
            self._set_modes({mode}, mode.value)
            return self.ANSWERS[mode] + EOL
        return b"? (" + line + b" is unknown) Use one of V X b" + EOL if line else b""

    def indication(self, frame: bytes, rssi_dbm: int) -> bytes:
        c_mode = LinkMode.C1 in self.modes
        on_air = add_crc_blocks(frame, FrameFormat.B if c_mode else FrameFormat.A)
        suffix = bytes([0x80 | 0x30, ((rssi_dbm + 74) * 2) & 0xFF]).hex().upper().encode() if self.rssi else b""
        return (b"bY" if c_mode else b"b") + on_air.hex().upper().encode() + suffix + EOL

    def garbage(self, rng: random.Random, size: int) -> bytes:
        # Line noise culfw would pass on: bytes that are no text, ended like a line.
        return bytes(rng.randrange(0x80, 0x100) for _ in range(max(0, size - 2))) + EOL


DONGLES: dict[str, Callable[[], SimulatedDongle]] = {"imst": ImstDongle, "amber": AmberDongle, "cul": CulDongle}


# -- serving on a pseudo-terminal ------------------------------------------------------------------

@dataclass
class Faults:
    """Faults of a simulated dongle's output (see the module docstring)."""

    garbage: int = 0
    repeat: bool = False
    silent_after_s: float | None = None
    silent_for_s: float = 0.0
    seed: int = 0


@dataclass
class DongleServer:
    """A simulated dongle on a pseudo-terminal: open :attr:`path` as its serial port.
    ``silent = True`` stalls its receiver; ``sent`` counts telegrams delivered."""

    path: str
    dongle: SimulatedDongle
    meters: list[WirelessMeterModel]
    silent: bool = False
    sent: int = 0


@contextlib.asynccontextmanager
async def serve_dongle(dongle: SimulatedDongle, meters: Sequence[WirelessMeterModel],
                       faults: Faults | None = None) -> AsyncIterator[DongleServer]:
    """Serve ``dongle`` hearing ``meters`` on a new pseudo-terminal for the block."""
    faults = faults or Faults()
    server: DongleServer | None = None

    def received(data: bytes) -> None:
        if server is not None and (answer := dongle.received(data)):
            end.write(answer)

    async with pty_end(received) as end:
        server = DongleServer(end.path, dongle, list(meters))
        task = asyncio.ensure_future(_transmit(server, end.write, faults))
        try:
            yield server
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _transmit(server: DongleServer, write: Callable[[bytes], None], faults: Faults) -> None:
    """Every meter sends each ``interval_s`` (staggered); the dongle passes on what it hears."""
    loop = asyncio.get_running_loop()
    rng = random.Random(faults.seed)
    start = loop.time()
    count = max(1, len(server.meters))
    due = [start + meter.interval_s * (index + 1) / count for index, meter in enumerate(server.meters)]
    while server.meters:
        index = min(range(len(due)), key=due.__getitem__)
        await asyncio.sleep(max(0.0, due[index] - loop.time()))
        meter = server.meters[index]
        due[index] += meter.interval_s
        if meter.muted:
            continue
        frame = meter.next_telegram()  # the meter sends whether or not anybody listens
        elapsed = loop.time() - start
        stalled = faults.silent_after_s is not None and 0 <= elapsed - faults.silent_after_s < faults.silent_for_s
        dongle = server.dongle
        if server.silent or stalled or meter.mode not in dongle.modes:
            continue
        out = dongle.garbage(rng, faults.garbage) if faults.garbage else b""
        out += dongle.indication(frame, meter.rssi_dbm)
        if faults.repeat:
            out += dongle.indication(frame, meter.rssi_dbm)
        write(out)
        server.sent += 1


# -- command line -------------------------------------------------------------------------------

DESCRIPTION = """\
A simulated wireless M-Bus radio dongle on a pseudo-terminal, hearing model water meters.

Prints "PTY /dev/pts/N" on stdout (open that path as the dongle's serial port, e.g. with
`gateway listen wmbus --port /dev/pts/N --dongle imst` or a [[buses]] entry with
protocol = "wmbus"), then serves until interrupted. The dongle answers its initialisation
as the real one does and passes on telegrams only once a link mode is set, and only of
meters sending in that mode (the model meters send in T1 unless --meter-mode says otherwise).

  python -m gateway.simulators.wmbus --dongle imst --meters 3
  python -m gateway.simulators.wmbus --dongle cul --meter 12345678:000102030405060708090A0B0C0D0E0F
  python -m gateway.simulators.wmbus --dongle amber --meter 11111111 --garbage 20 --repeat

Each --meter ID[:KEY] is a water meter with identification ID (8 digits) that encrypts in
security mode 5 with KEY (32 hex digits) or, without KEY, sends plaintext. --meters N adds
meters 20000001... with the key 000102...0F. Its volume starts at 123.456 m^3 and grows by
7 litres per telegram.
"""

DEMO_KEY = "000102030405060708090A0B0C0D0E0F"


def _meter(spec: str) -> WirelessMeterModel:
    match = re.fullmatch(r"([0-9]{8})(?::([0-9A-Fa-f]{32}))?", spec)
    if not match:
        raise argparse.ArgumentTypeError(f"expected ID (8 digits) or ID:KEY (32 hex digits), got {spec!r}")
    return WirelessMeterModel(identification=match.group(1),
                              key=AesKey.from_hex(match.group(2)) if match.group(2) else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulators.wmbus", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dongle", choices=sorted(DONGLES), default="imst", help="which dongle to simulate (default imst)")
    parser.add_argument("--meter", action="append", type=_meter, default=[], metavar="ID[:KEY]",
                        help="a water meter sending plaintext, or encrypted with KEY (security mode 5)")
    parser.add_argument("--meters", type=int, default=0, metavar="N",
                        help=f"N meters 20000001... encrypting with the key {DEMO_KEY}")
    parser.add_argument("--meter-mode", choices=["T1", "C1", "S1"], default="T1", help="the meters' link mode (default T1)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="S",
                        help="each meter sends every S seconds (default 5)")
    parser.add_argument("--garbage", type=int, default=0, metavar="N", help="N bytes of line noise before each telegram")
    parser.add_argument("--repeat", action="store_true", help="deliver every telegram twice (duplicates)")
    parser.add_argument("--wrong-key", action="append", default=[], metavar="ID",
                        help="meter ID encrypts with a key other than the one given for it (the gateway refuses it)")
    parser.add_argument("--silent-after", type=float, metavar="S", help="stall the dongle's receiver S seconds in ...")
    parser.add_argument("--silent-for", type=float, default=0.0, metavar="S", help="... for S seconds")
    parser.add_argument("--transparent", action="store_true",
                        help="amber only: UART_CMD_Out_Enable off (telegrams without command framing)")
    return parser


def meters_from_args(args: argparse.Namespace) -> list[WirelessMeterModel]:
    meters = list(args.meter)
    meters += [WirelessMeterModel(identification=f"{20_000_000 + n:08d}", key=AesKey.from_hex(DEMO_KEY))
               for n in range(1, args.meters + 1)]
    if not meters:
        raise SystemExit("no meters: give --meter ID[:KEY] or --meters N (see --help)")
    for meter in meters:
        meter.interval_s = args.interval
        meter.mode = LinkMode(args.meter_mode)
        if meter.identification in args.wrong_key:
            meter.key = AesKey(bytes(reversed(meter.key.secret)) if meter.key else bytes(range(16, 32)))
    return meters


def dongle_from_args(args: argparse.Namespace) -> SimulatedDongle:
    if args.dongle == "amber":
        return AmberDongle(command_output=not args.transparent)
    return DONGLES[args.dongle]()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = Faults(garbage=args.garbage, repeat=args.repeat, silent_after_s=args.silent_after,
                    silent_for_s=args.silent_for)
    server = serve_dongle(dongle_from_args(args), meters_from_args(args), faults)
    asyncio.run(serve_until_signalled(server, lambda running: f"PTY {running.path}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
