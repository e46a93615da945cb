"""``gateway read modbus``: read a Modbus RTU meter now by its register map, as the
collector does, and print the map's values."""

from __future__ import annotations

import argparse
import asyncio
import re
import tomllib
from importlib import resources

from gateway.cli.output import print_json, print_table

DESCRIPTION = """\
Read a Modbus RTU meter now (Modbus over Serial Line V1.02) and print every value of its
register map, exactly as the collector stores them.

The meter is reached on a serial port (RS-485 adapter) or through a TCP serial server
(RTU frames over TCP). The map's entries are read in as few requests as the map allows
(adjacent registers share a read of up to 125), all in one transaction on the port.
Integers are scaled exactly; a float32 is printed as the shortest decimal that is the
meter's own float (230.1, not 230.10000610351562); a value the meter does not have is
empty, with its status (not-available, NaN ...).

stdout: a table (quantity, value, unit, OBIS, status) or, with --json, one JSON object:
  {"device": "modbus-<map>-<serial number>" or null, "unit": N, "map": "NAME",
   "values": [{"quantity": "voltage_l1", "value": "230.1", "unit": "V",
               "obis": "1-0:32.7.0*255", "status": null}, ...],
   "link": {"requests": ..., "retries": ..., ...}}
Exit 0 on success, 1 when the meter does not answer (a wrong --unit looks like this),
answers garbage or refuses a read (an exception response, e.g. ILLEGAL DATA ADDRESS: the
map does not fit the meter), 2 for bad usage or a broken map.
"""


def _shipped_maps_text() -> str:
    """The shipped maps and their descriptions (read with tomllib only: --help stays fast)."""
    lines = ["shipped register maps (--map NAME):"]
    folder = resources.files("gateway") / "data" / "modbus_maps"
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".toml"):
            try:
                description = tomllib.loads(item.read_text(encoding="utf-8")).get("description", "")
            except (OSError, tomllib.TOMLDecodeError):
                description = "(unreadable)"
            lines.append(f"  {item.name.removesuffix('.toml'):<12} {description}")
    return "\n".join(lines)


def register(verbs) -> None:
    parser = verbs.protocol("read", "modbus", _read, help="read a Modbus RTU meter now by its register map",
                            description=DESCRIPTION, epilog=_shipped_maps_text(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEV", help="serial device of the RS-485 adapter, e.g. /dev/ttyUSB0")
    where.add_argument("--tcp", metavar="HOST:PORT", help="TCP serial server in front of the RS-485 line")
    parser.add_argument("--unit", type=_unit, required=True, metavar="N", help="the meter's Modbus address, 1..247")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--map", metavar="NAME", help="a register map shipped with the gateway (listed below)")
    which.add_argument("--map-file", metavar="FILE", help="a register map of your own (TOML)")
    parser.add_argument("--baud", type=int, default=9600, metavar="N", help="line speed (default 9600)")
    parser.add_argument("--parity", choices=("E", "O", "N"), default="E",
                        help="E (default, the standard's), O or N; 8 data bits always")
    parser.add_argument("--stop-bits", type=int, choices=(1, 2), default=1, help="1 (default) or 2")
    parser.add_argument("--timeout-ms", type=int, default=1000, metavar="MS",
                        help="wait for each reply after the request has left the line (default 1000)")
    parser.add_argument("--retries", type=int, default=2, metavar="K",
                        help="repeat an unanswered or garbled request up to K times (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _unit(text: str) -> int:
    if not re.fullmatch(r"\d{1,3}", text) or not 1 <= int(text) <= 247:
        raise argparse.ArgumentTypeError(f"a unit address is 1..247, got {text!r}")
    return int(text)


def _read(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gateway.cli import CommandFailed, UsageError
    from gateway.config import ModbusLine
    from gateway.errors import ConfigError, GatewayError
    from gateway.modbus_maps import load_map_file, shipped_map

    try:
        line = ModbusLine(name="cli", protocol="modbus", port=args.port, tcp=args.tcp, baud=args.baud,
                          parity=args.parity, stop_bits=args.stop_bits, response_timeout_ms=args.timeout_ms,
                          retries=args.retries)
    except ValidationError as exc:
        raise UsageError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: "
                                   f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from None
    try:
        register_map = shipped_map(args.map) if args.map else load_map_file(args.map_file)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    try:
        readout, counters = asyncio.run(_run(line, args.unit, register_map))
    except ConfigError:
        raise
    except GatewayError as exc:
        raise CommandFailed(f"meter at unit {args.unit} on {args.tcp or args.port}: {exc}") from None
    _print(readout, counters, json=args.json)
    return 0


async def _run(line, unit: int, register_map):
    from gateway.collectors.modbus import line_timing, read_map
    from gateway.collectors.modbus_master import ModbusMaster
    from gateway.transports import open_transport

    timing = line_timing(line)
    async with open_transport(timing.line, port=line.port, tcp=line.tcp) as transport:
        master = ModbusMaster(transport, timing, retries=line.retries)
        return await read_map(master, unit, register_map), master.counters


def _print(readout, counters: dict[str, int], *, json: bool) -> None:
    from gateway.model import value_text

    serial = readout.register_map.serial_number
    values = [{"quantity": v.entry.name, "value": value_text(v.decoded.value), "unit": v.entry.unit,
               "obis": v.entry.obis, "status": v.decoded.status} for v in readout.values if v.entry.name != serial]
    device = readout.device(None)
    if json:
        print_json({"device": device, "unit": readout.unit, "map": readout.register_map.name, "values": values,
                    "link": counters})
        return
    title = f"{device or 'unit ' + str(readout.unit)} ({readout.register_map.name})"
    print_table(["quantity", "value", "unit", "obis", "status"],
                [[v["quantity"], v["value"], v["unit"], v["obis"], v["status"]] for v in values], title=title)
