"""``gateway scan mbus`` and ``gateway read mbus``: talk to a wired M-Bus from the command line.

Both open the bus as the collector would (serial port at 8E1, or a TCP serial server),
so what works here works in the daemon. Results on stdout, progress and advice on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.cli.output import print_json, print_table, progress

SCAN_DESCRIPTION = """\
Find the meters on a wired M-Bus (EN 13757-2/-3).

By primary address (default): SND_NKE to every address 0..250; a meter that answers E5 is
then asked REQ_UD2 once to learn its secondary address. Two meters answering at one
address are reported as a collision.

By secondary address (--secondary): wildcard search. The selection FFFFFFFF is narrowed
digit by digit wherever several meters answer at once; each meter is found exactly once,
also meters without (or sharing) a primary address.

stdout: a table of the meters found (address, secondary address, manufacturer, id,
version, medium), or one JSON object with --json:
  {"meters": [{"address": 1, "secondary": "...", "manufacturer": "...", "id": "...",
  "version": 1, "medium": 4, "medium_name": "..."}], "collisions": [...], "link": {...}}
stderr: a progress bar (on a terminal), then how to put the meters in the configuration.
Exit 0 when the scan ran (even if it found nothing), 1 when the port cannot be opened.
"""

READ_DESCRIPTION = """\
Read one wired M-Bus meter now and print its decoded records.

The meter is addressed by primary address (--address; SND_NKE, then REQ_UD2) or by
secondary address (--secondary; selection, REQ_UD2 to address 253, deselection); a
multi-telegram readout is followed to its last telegram.

stdout: a table of the records (quantity as the collector names it, value, unit) or,
with --json, one JSON object per telegram: the same shape as `gateway decode mbus`
("link", "header", "records" ...) plus "device", the meter's identity in the store.
Exit 1 when the meter does not answer ("meter at address N did not answer (timeout after
... ms, K retries)"), answers garbage, or reports an application error.
"""


def register(verbs) -> None:
    scan = verbs.protocol("scan", "mbus", _scan, help="find the meters on a wired M-Bus",
                          description=SCAN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _bus_options(scan, retries=1)
    scan.add_argument("--secondary", action="store_true",
                      help="search by secondary address (wildcard narrowing) instead of primary addresses 0..250")
    scan.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    read = verbs.protocol("read", "mbus", _read, help="read one wired M-Bus meter now",
                          description=READ_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _bus_options(read, retries=2)
    which = read.add_mutually_exclusive_group(required=True)
    which.add_argument("--address", type=_primary_address, metavar="N", help="primary address of the meter, 0..250")
    which.add_argument("--secondary", metavar="ID",
                       help="secondary address: 8-digit identification number, or 16 hex digits "
                            "(id, manufacturer bytes, version, medium, as libmbus prints them); F = any digit")
    read.add_argument("--json", action="store_true", help="print JSON (one object per telegram) instead of a table")


def _bus_options(parser: argparse.ArgumentParser, *, retries: int) -> None:
    from gateway.config import SERIAL_BAUD_RATES

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEV", help="serial device of the M-Bus level converter, e.g. /dev/ttyUSB0")
    where.add_argument("--tcp", metavar="HOST:PORT", type=_host_port, help="TCP serial server in front of the bus")
    parser.add_argument("--baud", type=int, default=2400, choices=SERIAL_BAUD_RATES, metavar="N",
                        help="baud rate of the bus: " + ", ".join(map(str, SERIAL_BAUD_RATES)) + " (default 2400); "
                             "characters are 8 data bits, even parity, 1 stop bit")
    parser.add_argument("--retries", type=int, default=retries, choices=range(0, 11), metavar="K",
                        help=f"repeat an unanswered request up to K times (default {retries})")
    parser.add_argument("--extra-timeout-ms", type=int, default=0, metavar="MS",
                        help="added to the standard's reply timeout (330 bit times + 50 ms), for slow converters "
                             "or TCP serial servers (default 0)")


def _primary_address(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 250:
        raise argparse.ArgumentTypeError(f"a primary address is 0 to 250, got {text!r}")
    return int(text)


def _host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


async def _with_master(args: argparse.Namespace, work):
    from gateway.collectors.mbus_master import MBusMaster
    from gateway.transports import LineSettings, open_transport

    line = LineSettings(args.baud, 8, "E", 1)
    async with open_transport(line, port=args.port, tcp=args.tcp) as transport:
        master = MBusMaster(transport, line, extra_timeout_ms=args.extra_timeout_ms, retries=args.retries)
        return await work(master)


# -- scan -------------------------------------------------------------------------------------

def _scan(args: argparse.Namespace) -> int:
    from gateway.codecs.mbus.tables import medium_name
    from gateway.collectors.mbus_master import secondary_text

    where = args.port or args.tcp
    total = None if args.secondary else 251
    with progress(f"scanning {where}", total) as bar:
        def step(_done: int, _total: int, what: str) -> None:
            bar.advance(1, description=f"scanning {where}: {what}")

        async def work(master):
            result = await (master.scan_secondary(step) if args.secondary else master.scan_primary(step))
            return result, dict(master.counters)

        result, counters = asyncio.run(_with_master(args, work))
    meters = [{
        "address": found.primary,
        "secondary": secondary_text(found.secondary),
        "manufacturer": found.secondary.manufacturer,
        "id": found.secondary.identification,
        "version": found.secondary.version,
        "medium": found.secondary.medium,
        "medium_name": None if found.secondary.medium is None else medium_name(found.secondary.medium),
    } for found in result.meters]
    if args.json:
        print_json({"meters": meters, "collisions": result.collisions, "link": counters})
    else:
        print_table(["address", "secondary address", "manufacturer", "id", "version", "medium"],
                    [[m["address"], m["secondary"], m["manufacturer"], m["id"], m["version"],
                      f"{m['medium']:#04x} {m['medium_name']}" if m["medium"] is not None else None] for m in meters])
    _advise(args, meters, result.collisions)
    return 0


def _advise(args: argparse.Namespace, meters: list[dict[str, Any]], collisions: list[str]) -> None:
    say = lambda text="": print(text, file=sys.stderr)  # noqa: E731
    for problem in collisions:
        say(f"warning: {problem}")
    if not meters:
        hint = "try --secondary" if not args.secondary else "check the wiring, the baud rate (--baud) and the meters' power"
        say(f"no meters found on {args.port or args.tcp} at {args.baud} Bd; {hint}")
        return
    say(f"found {len(meters)} meter{'s' if len(meters) != 1 else ''}. To poll them, add to the configuration:")
    where = f'port = "{args.port}"' if args.port else f'tcp = "{args.tcp}"'
    say(f'  [[buses]]\n  name = "mbus1"\n  protocol = "mbus"\n  {where}\n  baud = {args.baud}')
    for meter in meters:
        how = f'secondary = "{meter["secondary"]}"' if args.secondary or not meter["address"] else f"address = {meter['address']}"
        say(f'  [[meters]]\n  name = "meter-{meter["id"]}"\n  protocol = "mbus"\n  bus = "mbus1"\n  {how}')
    say("then run: gateway check-config FILE")


# -- read -------------------------------------------------------------------------------------

def _read(args: argparse.Namespace) -> int:
    from gateway.cli import CommandFailed, UsageError
    from gateway.codecs.mbus.application import response_to_json
    from gateway.codecs.mbus.errors import MBusError
    from gateway.collectors.mbus import device_of, named_records, status_text
    from gateway.collectors.mbus_master import MeterApplicationError, parse_secondary
    from gateway.model import value_text

    try:
        address = args.address if args.secondary is None else parse_secondary(args.secondary)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def work(master):
        return await master.read(address)

    try:
        readout = asyncio.run(_with_master(args, work))
        device = device_of(readout.telegrams[0])
    except (MBusError, MeterApplicationError) as exc:
        # The meter answered, but not usefully: the operation failed (exit 1), the input
        # (the command line) was fine.
        raise CommandFailed(str(exc)) from None
    if args.json:
        for telegram in readout.telegrams:
            print_json({"device": device, **response_to_json(telegram.response, telegram.frame)})
        return 0
    # Dates print as the meter sent them, in its local time.
    print_table(["quantity", "value", "unit"],
                [[name, value_text(record.value), record.unit] for _, record, name in named_records(readout)],
                title=f"{device} (status {status_text(readout.telegrams[0])})")
    return 0
