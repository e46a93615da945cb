"""``gateway listen wmbus``: show what a wireless M-Bus radio dongle hears.

The dongle is opened and initialised as the receiver in the daemon does it
(:class:`gateway.collectors.wmbus_dongle.DongleSession`), and each telegram is interpreted
as the receiver would (:mod:`gateway.collectors.wmbus_telegrams`), so what is heard here is
what the daemon will hear. Results on stdout, the live table and advice on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import print_json, print_table

DESCRIPTION = """\
Listen to a wireless M-Bus radio dongle (EN 13757-4, OMS) and show the meters on the air.

The dongle is set to receive in --mode (IMST iM871A: SET_CONFIG; Amber AMB8465:
CMD_SET_MODE_REQ; CUL with culfw: brt/brc/brs) and every telegram it hears is decoded:
with the meter's key from --key-dir when it is encrypted, as it is when it is plaintext.

stdout: at the end, a table of the meters heard (id, manufacturer, device type, RSSI,
telegrams, last heard, encrypted or not, decrypted or not with the keys given, the last
problem); while listening the same table is refreshed on stderr when it is a terminal.
With --json, one JSON object per telegram heard instead (JSON Lines), as it arrives:
  {"time": "...", "id": "12345678", "manufacturer": "KAM", "version": 27,
   "device_type": "0x07", "device_type_name": "Water", "device": "KAM-12345678-1b-07",
   "rssi_dbm": -61, "access_number": 42, "encrypted": true, "decrypted": true,
   "duplicate": false, "problem": null, "readings": [{"quantity": "volume",
   "value": "123.456", "unit": "m^3"}, ...], "telegram": "2E44..."}
A telegram whose link layer is broken gives {"time": ..., "problem": "..."} alone.
Dates print as the meter sent them (its local time).

Exit 0 after --seconds (or Ctrl-C), 1 when the port cannot be opened or the dongle does not
answer its initialisation, 2 for bad usage or an unusable key file.

Next: to collect a meter heard here, add it to the configuration (the advice printed on
stderr at the end has the lines), put its key in a file only the service can read
(chmod 600), then run `gateway check-config FILE`.
"""

MODES = ("t1", "c1", "s1", "c1+t1")
DONGLES = ("imst", "amber", "cul")
REFRESH_S = 0.5


def register(verbs) -> None:
    parser = verbs.protocol("listen", "wmbus", _listen, help="show what a wireless M-Bus dongle hears",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEV", help="serial device of the dongle, e.g. /dev/ttyUSB0 or /dev/ttyACM0")
    where.add_argument("--tcp", metavar="HOST:PORT", help="TCP serial server the dongle is attached to")
    parser.add_argument("--dongle", required=True, choices=DONGLES,
                        help="imst: IMST iM871A/iM170A (WM-Bus HCI); amber: Amber/Würth Metis AMB8465 family; "
                             "cul: CUL/nanoCUL with culfw")
    parser.add_argument("--mode", choices=MODES, default="t1",
                        help="link mode to receive (default t1); c1+t1 hears both with imst and amber, "
                             "a cul listens to one mode at a time")
    parser.add_argument("--baud", type=int, metavar="N",
                        help="serial speed (default: the dongle's own, imst 57600, amber 9600, cul 38400)")
    parser.add_argument("--seconds", type=float, metavar="N",
                        help="stop after N seconds and print what was heard (default: until Ctrl-C)")
    parser.add_argument("--key-dir", type=Path, metavar="DIR",
                        help="AES-128 keys of meters, one file per meter named ID.key (the 8-digit "
                             "identification) holding 32 hex digits, readable only by you (chmod 600)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per telegram (JSON Lines)")


def _listen(args: argparse.Namespace) -> int:
    from gateway.cli import UsageError
    from gateway.config import WMBUS_BAUD_RATES, WMBUS_DEFAULT_BAUD

    if args.dongle == "cul" and "+" in args.mode:
        raise UsageError("a cul stick (culfw) listens to one mode at a time: use --mode t1, c1 or s1")
    if args.baud is not None and args.baud not in WMBUS_BAUD_RATES:
        raise UsageError(f"--baud must be one of {', '.join(map(str, WMBUS_BAUD_RATES))}")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError("--seconds must be positive")
    keys = _keys(args.key_dir) if args.key_dir else {}
    listener = Listener(keys, json_lines=args.json)
    asyncio.run(_run(args, args.baud or WMBUS_DEFAULT_BAUD[args.dongle], listener))
    if not args.json:
        listener.print_table()
    listener.advise(args)
    return 0


def _keys(directory: Path) -> dict[str, Any]:
    """The keys in ``directory``: ``ID.key`` files, refused when others can read them."""
    from gateway.cli import UsageError
    from gateway.codecs.mbus.wmbus_security import AesKey
    from gateway.config import read_secret

    if not directory.is_dir():
        raise UsageError(f"--key-dir {directory} is not a directory")
    keys = {}
    for path in sorted(directory.glob("*.key")):
        try:
            keys[path.stem.lower()] = AesKey.from_hex(read_secret(path).decode("ascii", "replace"))
        except ValueError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return keys


async def _run(args: argparse.Namespace, baud: int, listener: Listener) -> None:
    from gateway.collectors.wmbus_dongle import DongleSession, dongle_line
    from gateway.transports import open_transport

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    deadline = None if args.seconds is None else loop.time() + args.seconds
    try:
        async with open_transport(dongle_line(baud), port=args.port, tcp=args.tcp) as transport:
            session = DongleSession(transport, args.dongle, tuple(args.mode.upper().split("+")), listener.counters)
            with listener.live():
                await session.initialise()
                while not stop.is_set():
                    remaining = REFRESH_S if deadline is None else min(REFRESH_S, deadline - loop.time())
                    if remaining <= 0:
                        break
                    for received in await session.receive(remaining):
                        listener.hear(received)
                    listener.refresh()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


class Listener:
    """What was heard: the table of meters, the JSON Lines, the live view."""

    def __init__(self, keys: dict[str, Any], *, json_lines: bool) -> None:
        from gateway.codecs.mbus.wireless import WMBusDecoder
        from gateway.collectors.wmbus_telegrams import DuplicateFilter, Sightings

        self.keys = keys
        self.json_lines = json_lines
        self.counters: dict[str, int] = {"telegrams": 0, "duplicates": 0}
        self.sightings = Sightings(limit=10_000)
        self.distinct: dict[Any, tuple[datetime, int]] = {}  # first heard, telegrams not repeated
        self._decoder = WMBusDecoder()
        self._recent = DuplicateFilter()
        self._live: Any = None

    def hear(self, received: Any) -> None:
        from gateway.codecs.mbus.errors import MBusFrameError
        from gateway.collectors.wmbus_dongle import count_frame_error
        from gateway.collectors.wmbus_telegrams import duplicate_key, interpret, link_frame, meter_address
        from gateway.model import utc_now

        at = utc_now()
        self.counters["telegrams"] += 1
        try:
            frame = link_frame(received)
        except MBusFrameError as exc:
            count_frame_error(self.counters, exc)
            if self.json_lines:
                print_json({"time": at.isoformat(), "problem": exc.describe(), "telegram": received.frame.hex().upper()})
            return
        duplicate = self._recent.seen(duplicate_key(frame), asyncio.get_running_loop().time(), 60.0)
        self.counters["duplicates"] += int(duplicate)
        heard = interpret(received, frame, self._decoder, self.keys.get(meter_address(frame).identification))
        self.sightings.note(heard, at)
        if not duplicate:
            first, count = self.distinct.get(heard.address, (at, 0))
            self.distinct[heard.address] = (first, count + 1)
        if self.json_lines:
            print_json(telegram_json(heard, at, duplicate))
            sys.stdout.flush()

    # -- showing ----------------------------------------------------------------------------

    def rows(self) -> list[list[Any]]:
        rows = []
        for s in self.sightings:
            encrypted = "?" if s.encrypted is None else "yes" if s.encrypted else "no"
            decrypted = ("yes" if s.decrypted else "no") if s.encrypted else "-"
            rows.append([s.address.identification, s.address.manufacturer,
                         f"0x{s.address.device_type:02X} {s.address.as_dict()['device_type_name']}",
                         s.rssi_dbm, s.telegrams, s.last_heard.astimezone().strftime("%H:%M:%S") if s.last_heard else "",
                         encrypted, decrypted, s.problem or ""])
        return rows

    COLUMNS = ["id", "manufacturer", "device type", "RSSI dBm", "telegrams", "last heard", "encrypted",
               "decrypted", "problem"]

    def live(self):
        """A live table on stderr while listening, when stderr is a terminal."""
        import contextlib

        if not sys.stderr.isatty():
            return contextlib.nullcontext()
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self._rich_table(), console=Console(stderr=True), transient=True,
                          refresh_per_second=2)
        return self._live

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._rich_table())

    def _rich_table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"meters heard ({self.counters['telegrams']} telegrams)")
        for column in self.COLUMNS:
            table.add_column(column)
        for row in self.rows():
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        return table

    def print_table(self) -> None:
        print_table(self.COLUMNS, self.rows())

    def advise(self, args: argparse.Namespace) -> None:
        say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)  # noqa: E731
        problems = {k: v for k, v in self.counters.items() if k not in ("telegrams", "duplicates", "bytes") and v}
        say(f"{self.counters['telegrams']} telegrams ({self.counters['duplicates']} repeated) from "
            f"{len(self.sightings)} meters" + (f"; {problems}" if problems else ""))
        if not len(self.sightings):
            say(f"nothing heard in {args.mode.upper()}: try another --mode, move the antenna, or wait longer "
                "(meters send every few minutes)")
            return
        where = f'port = "{args.port}"' if args.port else f'tcp = "{args.tcp}"'
        say("To collect these meters, add to the configuration:")
        say(f'  [[buses]]\n  name = "wmbus1"\n  protocol = "wmbus"\n  {where}\n  dongle = "{args.dongle}"\n'
            f'  mode = "{args.mode}"')
        for sighting in self.sightings:
            address = sighting.address
            lines = [f'  [[meters]]\n  name = "meter-{address.identification}"\n  protocol = "wmbus"\n  bus = "wmbus1"',
                     f'  id = "{address.identification}"\n  manufacturer = "{address.manufacturer}"',
                     f"  expected_interval_s = {self._interval(sighting)}"]
            if sighting.encrypted:
                lines.append(f'  key_file = "/etc/gateway/keys/{address.identification}.key"   # 32 hex digits, chmod 600')
            say("\n".join(lines))
        say("then run: gateway check-config FILE")

    def _interval(self, sighting: Any) -> str:
        """The meter's transmission interval as observed, or a guess to check."""
        first, distinct = self.distinct.get(sighting.address, (None, 0))
        if first is None or sighting.last_heard is None or distinct < 2:
            return "900   # how often it transmits: check the meter's documentation"
        seconds = (sighting.last_heard - first).total_seconds() / (distinct - 1)
        return f"{max(1, round(seconds))}   # as observed; check the meter's documentation"


def telegram_json(heard: Any, at: datetime, duplicate: bool) -> dict[str, Any]:
    """One heard telegram as a JSON Lines object (see the command's description)."""
    from gateway.collectors.mbus_readings import unique_names
    from gateway.model import value_text

    decoded = heard.decoded
    readings = [] if decoded is None else [
        {"quantity": name, "value": value_text(record.value), "unit": record.unit}
        for _, record, name in unique_names((None, record) for record in decoded.records)]
    return {"time": at.isoformat(), **heard.address.as_dict(), "rssi_dbm": heard.received.rssi_dbm,
            "access_number": heard.access_number, "encrypted": heard.encrypted, "decrypted": heard.decrypted,
            "duplicate": duplicate, "problem": heard.problem, "readings": readings,
            "telegram": heard.received.frame.hex().upper()}
