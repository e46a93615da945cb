"""``gateway devices``: the device lifecycle from the command line.

``list`` and ``show`` read the state directory (the registry, the store's audit log) and
work without a daemon; every other action asks the running daemon (its control socket),
which reads the device, writes the registry, audits the step and switches its configuration
(:mod:`gateway.lifecycle`). Keys are read from files and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from gateway.cli import CommandFailed, UsageError, Verbs
from gateway.cli.local_state import add_state_arguments, local_state

#: Table columns of ``gateway devices list``.
LIST_COLUMNS = ("name", "state", "point", "device", "protocol", "bus", "since", "reason")
HISTORY_COLUMNS = ("audit_id", "at", "event", "state", "actor", "message")


def register(verbs: Verbs) -> None:
    devices = verbs.verb("devices")
    sub = devices.add_subparsers(title="actions", metavar="ACTION")
    listing = sub.add_parser("list", help="every registered device and its state")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=devices_list)
    show = sub.add_parser("show", help="one device: its entry, its metering point, its audit trail")
    show.add_argument("name", help="the device's name (or its identity, e.g. KAM-12345678-1b-07)")
    show.add_argument("--history", action="store_true", help="the audit trail of the device's life")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=devices_show)

    commission = sub.add_parser("commission", help="bind a device to a metering point, install its keys, verify it "
                                                   "and put it into service")
    commission.add_argument("name", help="a discovered device, or the name of a new one (with --meter-file)")
    commission.add_argument("--point", required=True, help="the metering point it serves")
    _device_arguments(commission)
    commission.set_defaults(handler=devices_commission)

    exchange = sub.add_parser("exchange", help="replace a device at its metering point by another")
    exchange.add_argument("name", help="the device taken out")
    exchange.add_argument("new", help="the device put in (discovered, or new with --meter-file)")
    exchange.add_argument("--point", help="the metering point (default: the old device's)")
    _device_arguments(exchange)
    exchange.set_defaults(handler=devices_exchange)

    for action, text in (("decommission", "take a device out of service for good"),
                         ("suspend", "stop reading a device until it is resumed")):
        parser = sub.add_parser(action, help=text)
        parser.add_argument("name")
        parser.add_argument("--reason")
        parser.set_defaults(handler=devices_simple(action))
    resume = sub.add_parser("resume", help="read a suspended device again")
    resume.add_argument("name")
    resume.set_defaults(handler=devices_simple("resume"))

    calibrate = sub.add_parser("calibrate", help="start or end a calibration (readings are flagged meanwhile)")
    calibrate.add_argument("name")
    calibrate.add_argument("action", choices=("start", "end"))
    calibrate.add_argument("--certificate", help="the calibration certificate's reference (needed to end)")
    calibrate.add_argument("--note")
    calibrate.set_defaults(handler=devices_calibrate)

    rekey = sub.add_parser("rekey", help="new keys for a device; the previous ones are accepted for an overlap")
    rekey.add_argument("name")
    rekey.add_argument("--key-file", type=Path, help="wireless M-Bus: the new AES key (32 hex digits)")
    rekey.add_argument("--ek-file", type=Path, help="DLMS: the new encryption key (transferred to the meter)")
    rekey.add_argument("--ak-file", type=Path, help="DLMS: the new authentication key")
    rekey.add_argument("--overlap-s", type=float, help="how long the previous key is still accepted "
                                                       "(default [devices] key_overlap_s)")
    rekey.set_defaults(handler=devices_rekey)

    scan = sub.add_parser("scan", help="scan a wired M-Bus and register the devices found as discovered")
    scan.add_argument("bus")
    scan.add_argument("--primary", action="store_true", help="scan primary addresses instead of secondary ones")
    scan.set_defaults(handler=devices_scan)
    for parser in (listing, show, commission, exchange, calibrate, rekey, scan, resume,
                   *(sub.choices[a] for a in ("decommission", "suspend"))):
        add_state_arguments(parser)


def _device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meter-file", type=Path, help="a new device's [[meters]] table (TOML, without name)")
    parser.add_argument("--device", help="the identity the device must answer with (e.g. dlms-LDN)")
    parser.add_argument("--key-file", type=Path, help="the device's AES key (wireless M-Bus), 32 hex digits")
    parser.add_argument("--ek-file", type=Path, help="DLMS: global unicast encryption key")
    parser.add_argument("--ak-file", type=Path, help="DLMS: authentication key")
    parser.add_argument("--kek-file", type=Path, help="DLMS: master key (KEK), for later key transfers")
    parser.add_argument("--declare", type=Path, metavar="FILE.json", help="the device's declaration (JSON)")
    parser.add_argument("--metrological", action="append", metavar="PATTERN",
                        help="a metrological quantity or OBIS code (repeat; default: every measured quantity)")
    parser.add_argument("--firmware-version")
    parser.add_argument("--firmware-checksum")
    parser.add_argument("--calibration-date", help="YYYY-MM-DD")
    parser.add_argument("--clock-tolerance-s", type=float)
    parser.add_argument("--expected-interval-s", type=float, help="how often a wireless device transmits")
    parser.add_argument("--wait-s", type=float, help="how long to wait for a wireless device's telegram")


# -- handlers -----------------------------------------------------------------------------------


def devices_list(args: argparse.Namespace) -> int:
    from gateway.cli.output import print_json, print_table
    from gateway.lifecycle.service import summary
    from gateway.registry import MeterRegistry

    rows = [summary(entry) for entry in MeterRegistry(_state_dir(args)).entries]
    if args.json or not sys.stdout.isatty():
        print_json(rows)
    else:
        print_table(LIST_COLUMNS, [[row[c] for c in LIST_COLUMNS] for row in rows], title="Devices")
    return 0


def devices_show(args: argparse.Namespace) -> int:
    from gateway.cli.output import print_json, print_table
    from gateway.lifecycle.service import LifecycleError, describe
    from gateway.registry import MeterRegistry

    state = local_state(args)
    log = asyncio.run(_audit_log(state)) if args.history else None
    try:
        shown = describe(MeterRegistry(_state_dir(args)), args.name, log)
    except LifecycleError as exc:  # no such device
        raise UsageError(str(exc)) from None
    if args.json or not sys.stdout.isatty():
        print_json(shown)
    elif args.history:
        print_table(HISTORY_COLUMNS, [[row[c] for c in HISTORY_COLUMNS] for row in shown["history"]],
                    title=f"{shown['name']}: {shown['state']} (audit chain {'intact' if shown['chain_intact'] else 'BROKEN'})")
    else:
        print_table(("field", "value"), [[key, shown[key]] for key in LIST_COLUMNS + ("first_seen", "calibrating")],
                    title=f"Device {shown['name']}")
        for record in shown.get("point_history", []):
            print(f"  point {shown['point']}: {record['name']} from {record['from']} to {record.get('to') or 'now'}"
                  f" (first {record.get('first_reading') or '-'}; final {record.get('final_reading') or '-'})")
    if args.history and not shown["chain_intact"]:
        raise CommandFailed(f"the audit log's hash chain is broken at entry {shown['chain_broken_at']}")
    return 0


def devices_commission(args: argparse.Namespace) -> int:
    request = {"name": args.name, "point": args.point, **_install_request(args)}
    return _ask(args, "devices.commission", request, lambda r: f"device {r['name']} is {r['state']} at metering point "
                f"{r['point']} (first reading: {r.get('first_reading') or '-'})")


def devices_exchange(args: argparse.Namespace) -> int:
    request = {"name": args.name, "new": args.new, "point": args.point, **_install_request(args)}
    return _ask(args, "devices.exchange", request, lambda r: f"metering point {r['point']}: {args.name} replaced by "
                f"{args.new} (final reading {r.get('final_reading') or '-'}; first {r['new'].get('first_reading') or '-'})")


def devices_simple(action: str):
    def handler(args: argparse.Namespace) -> int:
        request = {"name": args.name, **({"reason": args.reason} if getattr(args, "reason", None) else {})}
        return _ask(args, f"devices.{action}", request, lambda r: f"device {r['name']} is {r['state']}")
    return handler


def devices_calibrate(args: argparse.Namespace) -> int:
    request = {"name": args.name, "action": args.action, "certificate": args.certificate, "note": args.note}
    return _ask(args, "devices.calibrate", request,
                lambda r: f"calibration of {r['name']} {'started' if args.action == 'start' else 'ended'}")


def devices_rekey(args: argparse.Namespace) -> int:
    keys = _keys({"key": args.key_file, "ek": args.ek_file, "ak": args.ak_file})
    if not keys:
        raise UsageError("give --key-file (wireless M-Bus) or --ek-file and --ak-file (DLMS)")
    request = {"name": args.name, "keys": keys, "overlap_s": args.overlap_s}
    return _ask(args, "devices.rekey", request, lambda r: f"device {r['name']} has new keys ({r['method']}); the "
                f"previous ones are accepted until {r['overlap_until']}")


def devices_scan(args: argparse.Namespace) -> int:
    return _ask(args, "devices.scan", {"bus": args.bus, "secondary": not args.primary},
                lambda r: f"bus {r['bus']}: {len(r['found'])} new devices discovered"
                          + (f" ({', '.join(r['found'])})" if r["found"] else ""))


# -- helpers ------------------------------------------------------------------------------------


def _state_dir(args: argparse.Namespace) -> Path:
    state = local_state(args)
    assert state.state_dir is not None
    return state.state_dir


async def _audit_log(state: Any) -> list[dict[str, Any]]:
    from gateway.cli.local_state import open_store

    if not state.store_path.exists():
        return []
    async with open_store(state) as store:
        return await store.audit_log()


def _ask(args: argparse.Namespace, command: str, request: dict[str, Any], describe) -> int:
    """Send a lifecycle command to the running daemon and print its answer."""
    from gateway.audit import local_actor
    from gateway.cli.output import print_json
    from gateway.control import DaemonNotRunning, request as ask

    state_dir = _state_dir(args)
    payload = {key: value for key, value in request.items() if value is not None}
    try:
        answer = asyncio.run(ask(state_dir, command, {**payload, "actor": local_actor()}, timeout_s=900))
    except DaemonNotRunning:
        raise CommandFailed("the gateway daemon is not running: the device lifecycle needs it (it reads the "
                            "device and switches its configuration); start it, e.g. `systemctl start gateway`") from None
    if not answer.get("ok"):
        raise CommandFailed(str(answer.get("error")))
    result = answer["result"]
    if not sys.stdout.isatty():
        print_json(result)
    else:
        print(describe(result))
    return 0


def _install_request(args: argparse.Namespace) -> dict[str, Any]:
    declaration: dict[str, Any] = {}
    if args.declare is not None:
        declaration = _read_json(args.declare)
    for name in ("metrological", "firmware_version", "firmware_checksum", "calibration_date", "clock_tolerance_s",
                 "expected_interval_s"):
        value = getattr(args, name)
        if value is not None:
            declaration[name] = value
    meter = read_meter_table(args.meter_file) if args.meter_file is not None else None
    keys = _keys({"key": args.key_file, "ek": args.ek_file, "ak": args.ak_file, "kek": args.kek_file})
    return {"meter": meter, "keys": keys or None, "declaration": declaration or None, "device": args.device,
            "wait_s": args.wait_s}


def _keys(files: dict[str, Path | None]) -> dict[str, str]:
    from gateway.registry import parse_key

    out = {}
    for name, path in files.items():
        if path is None:
            continue
        try:
            out[name] = parse_key(path.read_text(encoding="ascii", errors="replace"), str(path))
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a declaration is a JSON object")
    return data


def read_meter_table(path: Path) -> dict[str, Any]:
    """A ``[[meters]]`` table (without its name) from a TOML file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: TOML syntax: {exc}") from None
