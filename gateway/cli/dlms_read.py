"""``gateway read dlms``: read a DLMS/COSEM meter now, the way the collector does.

One association: the link (HDLC on a serial port, or the TCP wrapper), the AARQ with the
chosen security, GETs, release. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.cli.output import print_json

DESCRIPTION = """\
Read a DLMS/COSEM meter (IEC 62056) now and print what it says as one JSON object.

The meter is reached on a serial port (RS-485 or an optical head: HDLC, IEC 62056-46,
optionally opened with IEC 62056-21 mode E) or over TCP (the IEC 62056-47 wrapper; or HDLC
through a TCP serial server with --interface hdlc). One association is opened with the
chosen security: none (public client), low (LLS password) or gmac (HLS-GMAC), and with
--secure every APDU is authenticated and encrypted (security suite 0, AES-128-GCM).

OBJECTS are OBIS[:CLASS:ATTR]: 1.0.1.8.0.255 or 1-0:1.8.0*255 reads a Register's value
(class 3, attribute 2) with its scaler and unit applied exactly; 0.0.1.0.0.255:8:2 reads
the Clock; 0.0.96.3.10.255:70:3 the disconnect control's state.
--profile reads a Profile Generic's buffer by time range (--from/--to, ISO 8601; a time
without an offset is in --timezone; default the last 24 hours).

stdout, one JSON object:
  {"device": "dlms-<logical device name>",
   "values": [{"obis": "1.0.1.8.0.255", "class": 3, "attribute": 2, "value": "123456.7", "unit": "Wh"}],
   "profile": {"obis": ..., "columns": [{"obis", "class", "attribute", "unit"}], "rows": [[...], ...]} or null}
Values are exact decimal strings; date-times ISO 8601 with their offset; octet strings hex.

Keys and the password are read from files (mode 0600: 32 hex digits for a key). The
invocation counters of ciphered associations are kept in STATE_DIR/dlms-counters.json
(default $XDG_STATE_HOME/gateway, else ~/.local/state/gateway) so that no counter is ever
used twice; use the daemon's own --state-dir only while the daemon is stopped.

Exit 0 on success, 1 when the meter does not answer or refuses (association, keys,
access), 2 for bad usage.
"""

COUNTERS_FILE = "dlms-counters.json"


def register(verbs) -> None:
    parser = verbs.protocol("read", "dlms", _read, help="read a DLMS/COSEM meter now",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="the meter (wrapper) or a TCP serial server (--interface hdlc)")
    where.add_argument("--port", metavar="DEV", help="serial device (RS-485 adapter or optical head), HDLC")
    parser.add_argument("--interface", choices=("hdlc", "wrapper"),
                        help="link protocol (default: wrapper with --tcp, hdlc with --port)")
    parser.add_argument("--baud", type=int, default=9600, metavar="N",
                        help="HDLC baud rate (default 9600; with --mode-e the highest rate to switch to)")
    parser.add_argument("--mode-e", action="store_true",
                        help="open with IEC 62056-21 mode E at 300 baud, then switch to HDLC (optical heads)")
    parser.add_argument("--client-sap", type=int, default=None, metavar="N",
                        help="client address: 16 public (default without --auth), 1 management (default with --auth gmac)")
    parser.add_argument("--server-address", type=int, default=1, metavar="N",
                        help="the meter's logical device (default 1, management); also the wrapper's destination port")
    parser.add_argument("--physical-address", type=int, default=None, metavar="N",
                        help="HDLC physical address of the meter on an RS-485 line")
    parser.add_argument("--serial-number", type=int, default=None, metavar="SN",
                        help="HDLC: address the meter by serial number (physical address SN mod 10000 + 1000)")
    parser.add_argument("--auth", choices=("none", "low", "gmac"), default="none",
                        help="authentication: none, low (LLS, --password-file) or gmac (HLS-GMAC, --ek-file and --ak-file)")
    parser.add_argument("--secure", action="store_true",
                        help="cipher every APDU: authenticated and encrypted, security suite 0 (needs the keys)")
    parser.add_argument("--system-title", metavar="HEX",
                        help="the client's system title, 16 hex digits (default: derived from the host name)")
    parser.add_argument("--ek-file", metavar="FILE", help="file with the global encryption key (32 hex digits)")
    parser.add_argument("--ak-file", metavar="FILE", help="file with the authentication key (32 hex digits)")
    parser.add_argument("--password-file", metavar="FILE", help="file with the LLS password")
    parser.add_argument("--max-pdu-size", type=int, default=0xFFFF, metavar="N",
                        help="largest APDU this client accepts (smaller values make the meter send blocks)")
    parser.add_argument("--timeout-ms", type=int, default=3000, metavar="MS", help="wait for each reply (default 3000)")
    parser.add_argument("--retries", type=int, default=2, metavar="K",
                        help="HDLC: repeat SNRM or poll a missing reply up to K times (default 2)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="where the invocation counters are kept (default $XDG_STATE_HOME/gateway "
                             "or ~/.local/state/gateway)")
    parser.add_argument("--timezone", default="UTC", metavar="ZONE",
                        help="time zone of --from/--to without an offset and of meter times without a deviation "
                             "(default UTC)")
    parser.add_argument("--profile", metavar="OBIS", help="a Profile Generic to read by time range")
    parser.add_argument("--from", dest="start", metavar="ISO", help="first row time (default: --to minus 24 hours)")
    parser.add_argument("--to", dest="end", metavar="ISO", help="last row time (default: now)")
    parser.add_argument("objects", nargs="*", metavar="OBIS[:CLASS:ATTR]", help="attributes to read")


def _read(args: argparse.Namespace) -> int:
    from gateway.cli import CommandFailed, UsageError
    from gateway.errors import ConfigError, GatewayError

    plan = _plan(args)
    try:
        result = asyncio.run(_run(args, plan))
    except (ConfigError, UsageError):
        raise
    except GatewayError as exc:
        raise CommandFailed(f"meter at {args.tcp or args.port}: {exc}") from None
    print_json(result)
    return 0


class _Plan:
    """Everything checked before the meter is touched."""

    def __init__(self, line, meter, objects, profile, start, end, tz) -> None:
        self.line, self.meter, self.objects = line, meter, objects
        self.profile, self.start, self.end, self.tz = profile, start, end, tz


def _plan(args: argparse.Namespace) -> _Plan:
    from pydantic import ValidationError

    from gateway.cli import UsageError
    from gateway.codecs.dlms.errors import DLMSError
    from gateway.codecs.dlms.obis import Obis
    from gateway.collectors.dlms_values import parse_object
    from gateway.config import DlmsLine, DlmsMeter

    if not args.objects and not args.profile:
        raise UsageError("name at least one object (OBIS[:CLASS:ATTR]) or a --profile to read")
    try:
        tz = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {args.timezone!r}") from None
    try:
        objects = [parse_object(text) for text in args.objects]
        profile = Obis.parse(args.profile) if args.profile else None
    except DLMSError as exc:
        raise UsageError(str(exc)) from None
    end = _moment(args.end, tz) if args.end else datetime.now(timezone.utc)
    start = _moment(args.start, tz) if args.start else end - timedelta(days=1)
    interface = args.interface or ("wrapper" if args.tcp else "hdlc")
    client_sap = args.client_sap if args.client_sap is not None else (1 if args.auth == "gmac" else 16)
    try:
        line = DlmsLine(name="cli", protocol="dlms", tcp=args.tcp, port=args.port, interface=interface,
                        baud=args.baud, mode_e=args.mode_e, response_timeout_ms=args.timeout_ms, retries=args.retries)
        meter = DlmsMeter(
            name="meter", protocol="dlms", bus="cli", client_sap=client_sap, server_logical=args.server_address,
            server_physical=args.physical_address, serial_number=args.serial_number, authentication=args.auth,
            security="authenticated+encrypted" if args.secure else "none",
            system_title=args.system_title or _host_title(), password_file=args.password_file,
            ek_file=args.ek_file, ak_file=args.ak_file, max_pdu_size=args.max_pdu_size)
    except ValidationError as exc:
        raise UsageError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: "
                                   f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from None
    return _Plan(line, meter, objects, profile, start, end, tz)


def _moment(text: str, tz: ZoneInfo) -> datetime:
    from gateway.cli import UsageError

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not an ISO 8601 date-time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _host_title() -> str:
    import socket

    from gateway.config import derived_system_title

    return derived_system_title(socket.gethostname()).hex().upper()


async def _run(args: argparse.Namespace, plan: _Plan) -> dict:
    from gateway.cli.state_file import JsonStateFile, default_state_dir
    from gateway.collectors.dlms import MeterSecrets, client_settings, line_settings, session_target
    from gateway.collectors.dlms_reader import CosemReader
    from gateway.collectors.dlms_session import dlms_session
    from gateway.config import TEST_KEYS
    from gateway.dlms_counters import InvocationCounterStore
    from gateway.transports import open_transport

    secrets = MeterSecrets.load(plan.meter)
    if secrets.keys is not None and {secrets.keys.encryption_key, secrets.keys.authentication_key} & set(TEST_KEYS):
        print("gateway: warning: a published test key is in use; a real meter needs its own keys", file=sys.stderr)
    settings = client_settings(plan.meter, secrets, bytes.fromhex(plan.meter.system_title))
    target = session_target(plan.line, plan.meter, settings)
    state = JsonStateFile((args.state_dir or default_state_dir()) / COUNTERS_FILE)
    counters = InvocationCounterStore(state).for_meter(f"cli.{(args.tcp or args.port).replace(':', '_')}")
    async with open_transport(line_settings(plan.line), port=plan.line.port, tcp=plan.line.tcp) as transport:
        async with dlms_session(transport, target, counters) as session:
            reader = CosemReader(session, plan.tz)
            device = await reader.device_name()
            values = [await _value(reader, spec) for spec in plan.objects]
            profile = await _profile(reader, plan) if plan.profile else None
    return {"device": f"dlms-{device}", "values": values, "profile": profile}


async def _value(reader, spec) -> dict:
    from gateway.model import value_text

    read = await reader.read(spec)
    out = {"obis": spec.obis.dotted, "class": spec.class_id, "attribute": spec.attribute,
           "value": value_text(read.value), "unit": read.unit}
    if read.status is not None:
        out["status"] = read.status
    return out


async def _profile(reader, plan: _Plan) -> dict:
    from gateway.model import value_text

    rows = await reader.profile(plan.profile, plan.start, plan.end)
    out_rows = [[value_text(value) for value, _ in await reader.column_values(rows.columns, row)]
                for _, row in rows.rows]
    scalers = await reader.column_scalers(rows.columns)
    columns = [{"obis": c.logical_name.dotted, "class": c.class_id, "attribute": c.attribute_index,
                "unit": scaler.symbol if scaler else None} for c, scaler in zip(rows.columns, scalers)]
    return {"obis": plan.profile.dotted, "columns": columns, "rows": out_rows}
