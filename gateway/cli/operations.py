"""Operator workflows: ``gateway config apply|versions|reload``, ``gateway meters
add|list|remove|import|set-key`` and ``gateway audit``.

Changes go through the running daemon's control socket (:mod:`gateway.control`) so that it
switches transactionally (:meth:`gateway.app.Gateway.apply`: rollback when the new
configuration does not start). When no daemon runs, the change is recorded in the state
directory and the daemon starts with it. Meter keys are never printed or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli import CommandFailed, UsageError, Verbs
from gateway.cli.local_state import LocalState, add_state_arguments, local_state

#: CSV columns of ``gateway meters import`` (name, protocol and bus are required).
CSV_COLUMNS = ("name", "protocol", "bus", "address", "secondary", "id", "manufacturer", "version", "device_type",
               "key", "interval_s", "offset_s", "expected_interval_s", "not_heard_after")
_INTEGER_COLUMNS = ("address", "version", "device_type", "not_heard_after")


def register(verbs: Verbs) -> None:
    config = verbs.verb("config")
    actions = next(a for a in config._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    apply = actions.add_parser("apply", help="switch the running gateway to a new configuration (rolls back if it "
                                             "does not start)")
    apply.add_argument("file", type=Path, metavar="FILE", help="the new configuration (TOML)")
    add_state_arguments(apply)
    apply.set_defaults(handler=config_apply)
    versions = actions.add_parser("versions", help="the configurations applied last, newest last")
    add_state_arguments(versions)
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(handler=config_versions)
    reload = actions.add_parser("reload", help="make the daemon read its configuration file and registry again "
                                               "(as SIGHUP does)")
    add_state_arguments(reload)
    reload.set_defaults(handler=config_reload)

    meters = verbs.verb("meters", help="meters registered beside the configuration file",
                        description="List, register, remove and import meters, and replace their keys.")
    sub = meters.add_subparsers(title="actions", metavar="ACTION")
    listing = sub.add_parser("list", help="configured and registered meters")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=meters_list)
    add = sub.add_parser("add", help="register a meter")
    add.add_argument("name")
    add.add_argument("--protocol", choices=("mbus", "wmbus", "modbus"))
    add.add_argument("--bus")
    add.add_argument("--address", type=int, help="M-Bus primary address")
    add.add_argument("--secondary", help="M-Bus secondary address")
    add.add_argument("--id", help="wireless M-Bus identification number")
    add.add_argument("--heard", metavar="DEVICE", help="a wireless meter from the status's unknown_meters "
                                                       "(its device, e.g. KAM-12345678-1b-07)")
    add.add_argument("--manufacturer")
    add.add_argument("--version", type=int)
    add.add_argument("--device-type", type=lambda text: int(text, 0))
    add.add_argument("--interval-s", type=int, help="wired: read every N seconds (900)")
    add.add_argument("--expected-interval-s", type=float, help="wireless: how often the meter transmits")
    add.add_argument("--key-file", type=Path, help="the meter's AES key (32 hex digits) in a file")
    add.add_argument("--unit", type=int, help="Modbus unit address (1-247)")
    add.add_argument("--map", help="Modbus: a shipped register map (`gateway read modbus --help` lists them)")
    add.add_argument("--map-file", type=Path, help="Modbus: a register map of your own (TOML)")
    add.add_argument("--meter-file", type=Path,
                     help="the meter's whole [[meters]] table (TOML, without name): any protocol, e.g. a DLMS "
                          "meter with its key files; the options above override its fields")
    add.set_defaults(handler=meters_add)
    remove = sub.add_parser("remove", help="remove a registered meter (and its key file)")
    remove.add_argument("name")
    remove.set_defaults(handler=meters_remove)
    importing = sub.add_parser("import", help="register meters (and their keys) from CSV",
                               description=f"CSV with a header row; columns: {', '.join(CSV_COLUMNS)}. name, "
                                           "protocol and bus are required; key is 32 hex digits.")
    importing.add_argument("file", type=Path, metavar="FILE.csv")
    importing.set_defaults(handler=meters_import)
    set_key = sub.add_parser("set-key", help="import or replace a registered meter's key")
    set_key.add_argument("name")
    set_key.add_argument("--key-file", type=Path, required=True, help="file holding the key (32 hex digits)")
    set_key.set_defaults(handler=meters_set_key)
    for parser in (listing, add, remove, importing, set_key):
        add_state_arguments(parser)

    audit = verbs.verb("audit", audit_command, help="the audit log of security-relevant actions",
                       description="Print the audit log and check its hash chain (exit 1 when it is broken).")
    audit.add_argument("--json", action="store_true")
    add_state_arguments(audit)


# -- helpers --------------------------------------------------------------------------------


def _state_dir(state: LocalState) -> Path:
    assert state.state_dir is not None
    return state.state_dir


def _daemon(state_dir: Path, command: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's answer, or None when no daemon runs."""
    from gateway.control import DaemonNotRunning, request

    try:
        return asyncio.run(request(state_dir, command, args))
    except DaemonNotRunning:
        return None


def _audit(state: LocalState, action: str, details: dict[str, Any]) -> None:
    """Append to the audit log: through the daemon, or to the store directly."""
    from gateway.audit import local_actor, record

    actor = local_actor()
    if _daemon(_state_dir(state), "audit", {"action": action, "actor": actor, "details": details}) is not None:
        return

    async def offline() -> None:
        from gateway.store import Store

        state.store_path.parent.mkdir(parents=True, exist_ok=True)
        async with Store(state.store_path, state.store) as store:
            await record(store, action, actor, details)

    asyncio.run(offline())


def _base_text(state: LocalState, args: argparse.Namespace) -> tuple[str, str]:
    """The configuration text the registry is merged into: the active one, else the file."""
    from gateway.config_versions import ConfigVersions

    active = ConfigVersions(_state_dir(state)).active_text()
    if active is not None:
        return active, "active configuration"
    if args.config is None:
        raise UsageError("no configuration has run in this state directory yet: give --config FILE")
    return Path(args.config).read_text(encoding="utf-8"), str(args.config)


# -- config ---------------------------------------------------------------------------------


def config_apply(args: argparse.Namespace) -> int:
    from gateway.audit import local_actor
    from gateway.config_versions import ConfigVersions, effective_config

    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror}") from None
    if args.config is None and args.state_dir is None:
        from gateway.config import parse_config

        args.state_dir = parse_config(text, args.file).state_dir  # the new file says where
    state = local_state(args)
    versions = ConfigVersions(_state_dir(state))
    config = effective_config(text, versions.registry_meters(), args.file)  # invalid: exit 2 here
    answer = _daemon(versions.state_dir, "config", {"toml": text, "source": f"cli: {args.file}", "actor": local_actor()})
    if answer is None:
        version = versions.record(text, config, f"cli: {args.file}")
        _audit(state, "config_applied", {"new_hash": version.hash, "source": f"cli: {args.file}"})
        print(f"configuration {version.hash} recorded (version {version.number}); the daemon is not running and "
              "starts with it")
        return 0
    if not answer.get("ok"):
        raise CommandFailed(f"not applied: {answer.get('error')}")
    result = answer["result"]
    if not result.get("changed"):
        print(f"configuration {result['hash']} is already running")
    else:
        print(f"configuration {result['hash']} runs (version {result['version']}, was {result['previous']})")
    return 0


def config_versions(args: argparse.Namespace) -> int:
    from gateway.cli.output import print_json, print_table
    from gateway.config_versions import ConfigVersions

    versions = ConfigVersions(_state_dir(local_state(args)))
    rows = [v.as_dict() for v in versions.versions()]
    active = (versions.index().get("active") or {}).get("number")
    if args.json or not sys.stdout.isatty():
        print_json({"active": active, "versions": rows})
    else:
        print_table(("", "number", "hash", "applied at", "source"),
                    [["*" if r["number"] == active else "", r["number"], r["hash"], r["applied_at"], r["source"]]
                     for r in rows], title="Configurations")
    return 0


def config_reload(args: argparse.Namespace) -> int:
    return _reload(_state_dir(local_state(args)), quiet=False)


def _reload(state_dir: Path, *, quiet: bool) -> int:
    from gateway.audit import local_actor

    answer = _daemon(state_dir, "reload", {"actor": local_actor()})
    if answer is None:
        if not quiet:
            print("the daemon is not running; it reads the configuration when it starts")
        return 0
    if not answer.get("ok"):
        raise CommandFailed(f"the daemon did not take the change: {answer.get('error')}")
    result = answer["result"]
    print(f"configuration {result['hash']} runs" + ("" if result.get("changed") else " (unchanged)"))
    return 0


# -- meters ---------------------------------------------------------------------------------


def meters_list(args: argparse.Namespace) -> int:
    from gateway.cli.output import print_json, print_table
    from gateway.config import parse_toml
    from gateway.registry import MeterRegistry

    state = local_state(args)
    text, _where = _base_text(state, args)
    rows = [{"name": m.get("name"), "source": "configuration", "state": "in service", **_where_is(m)}
            for m in parse_toml(text).get("meters", [])]
    for entry in MeterRegistry(_state_dir(state)).entries:
        rows.append({"name": entry["name"], "source": f"registry ({entry['source']})", "state": entry["state"],
                     "id": entry["id"], **_where_is(entry["meter"])})
    if args.json or not sys.stdout.isatty():
        print_json(rows)
    else:
        print_table(("name", "protocol", "bus", "address", "key", "state", "source"),
                    [[r["name"], r["protocol"], r["bus"], r["address"], r["key"], r["state"], r["source"]]
                     for r in rows], title="Meters")
    return 0


def _where_is(meter: dict[str, Any]) -> dict[str, Any]:
    address = meter.get("address", meter.get("secondary", meter.get("id")))
    return {"protocol": meter.get("protocol"), "bus": meter.get("bus"), "address": address,
            "key": "yes" if meter.get("key_file") else "no"}


def meters_add(args: argparse.Namespace) -> int:
    state = local_state(args)
    table: dict[str, Any] = {}
    if args.meter_file is not None:
        from gateway.cli.devices import read_meter_table

        table.update(read_meter_table(args.meter_file))
    options = {"protocol": args.protocol, "bus": args.bus, "address": args.address, "secondary": args.secondary,
               "id": args.id, "manufacturer": args.manufacturer, "version": args.version,
               "device_type": args.device_type, "expected_interval_s": args.expected_interval_s,
               "unit": args.unit, "map": args.map,
               "map_file": None if args.map_file is None else str(args.map_file.resolve())}
    table.update({field: value for field, value in options.items() if value is not None})
    source = "cli"
    if args.heard:
        table.update(_heard(state, args.heard))
        source = "heard"
    if args.interval_s is not None:
        table["schedule"] = {"interval_s": args.interval_s}
    if table.get("protocol") is None or table.get("bus") is None:
        raise UsageError("say --protocol and --bus (or --heard DEVICE, or --meter-file T.toml)")
    key = _read_key_file(args.key_file) if args.key_file else None
    actor = _actor()

    def change(registry: Any) -> list[tuple[str, dict[str, Any]]]:
        registry.add(args.name, table, source=source, actor=actor, key=key)
        audits = [("meter_added", {"meter": args.name})]
        return audits + ([("meter_key_changed", {"meter": args.name})] if key else [])

    _change_registry(state, args, change)
    print(f"meter {args.name} registered")
    return 0


def _heard(state: LocalState, device: str) -> dict[str, Any]:
    """What a wireless meter heard but not configured looks like, from the status file."""
    status_file = _state_dir(state) / "status.json"
    try:
        buses = json.loads(status_file.read_text()).get("buses", {})
    except (OSError, ValueError):
        raise UsageError(f"no status in {status_file}: is the daemon running?") from None
    for bus, info in buses.items():
        for heard in info.get("unknown_meters", []):
            if heard.get("device") == device:
                return {"protocol": "wmbus", "bus": bus, "id": heard["id"], "manufacturer": heard["manufacturer"],
                        "version": heard["version"], "device_type": int(heard["device_type"], 16)}
    raise UsageError(f"{device} is not among the meters heard and not configured (`gateway status --json`)")


def meters_remove(args: argparse.Namespace) -> int:
    state = local_state(args)
    actor = _actor()
    removed: list[Any] = []

    def change(registry: Any) -> list[tuple[str, dict[str, Any]]]:
        removed.append(registry.remove(args.name, actor=actor))
        return [("meter_removed", {"meter": args.name})]

    registry = _change_registry(state, args, change)
    registry.remove_key_file(removed[0])
    print(f"meter {args.name} removed")
    return 0


def meters_set_key(args: argparse.Namespace) -> int:
    state = local_state(args)
    key = _read_key_file(args.key_file)
    actor = _actor()

    def change(registry: Any) -> list[tuple[str, dict[str, Any]]]:
        registry.set_key(args.name, key, actor=actor)
        return [("meter_key_changed", {"meter": args.name})]

    _change_registry(state, args, change)
    print(f"key of meter {args.name} replaced")
    return 0


def meters_import(args: argparse.Namespace) -> int:
    state = local_state(args)
    actor = _actor()
    rows = _csv_rows(args.file)

    def change(registry: Any) -> list[tuple[str, dict[str, Any]]]:
        audits = []
        for table, key in rows:
            name = table.pop("name")
            registry.add(name, table, source=f"import:{args.file.name}", actor=actor, key=key)
            audits.append(("meter_added", {"meter": name}))
            if key:
                audits.append(("meter_key_changed", {"meter": name}))
        return audits

    _change_registry(state, args, change)
    print(f"{len(rows)} meters imported from {args.file}")
    return 0


def _csv_rows(path: Path) -> list[tuple[dict[str, Any], str | None]]:
    """(meter table, key or None) per row; a bad row is an error that names its line,
    never its key."""
    from gateway.registry import parse_key

    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    out = []
    with handle:
        reader = csv.DictReader(handle)
        unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
        if unknown or not {"name", "protocol", "bus"} <= set(reader.fieldnames or ()):
            raise UsageError(f"{path}:1: columns must include name, protocol, bus and be among "
                             f"{', '.join(CSV_COLUMNS)} (unknown: {', '.join(sorted(unknown)) or 'none'})")
        for row in reader:
            line = reader.line_num
            values = {k: v.strip() for k, v in row.items() if k and v and v.strip()}
            key = parse_key(values.pop("key"), f"{path}:{line}: key") if "key" in values else None
            table: dict[str, Any] = {}
            try:
                for column, value in values.items():
                    if column in _INTEGER_COLUMNS:
                        table[column] = int(value, 0)
                    elif column in ("interval_s", "offset_s"):
                        table.setdefault("schedule", {})[column] = int(value)
                    elif column == "expected_interval_s":
                        table[column] = float(value)
                    else:
                        table[column] = value
            except ValueError:
                raise UsageError(f"{path}:{line}: {column}: not a number") from None
            out.append((table, key))
    return out


def _read_key_file(path: Path) -> str:
    from gateway.registry import parse_key

    try:
        return parse_key(path.read_text(encoding="ascii", errors="replace"), str(path))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


def _actor() -> str:
    from gateway.audit import local_actor

    return local_actor()


def _change_registry(state: LocalState, args: argparse.Namespace, change: Any) -> Any:
    """Change the registry transactionally: validate the merged configuration, write, let
    the daemon switch (it rolls back if the change does not start: then the registry is
    restored too), and audit each action."""
    from gateway.config_versions import effective_config
    from gateway.errors import ConfigError
    from gateway.registry import MeterRegistry

    state_dir = _state_dir(state)
    text, where = _base_text(state, args)
    with MeterRegistry.locked(state_dir) as registry:  # the daemon registers discovered devices meanwhile
        before = registry.path.read_bytes() if registry.path.exists() else None
        audits = change(registry)
        registry.save()
    try:
        effective_config(text, registry.meter_tables(), where)
        _reload(state_dir, quiet=True)
    except (ConfigError, CommandFailed):
        _restore(registry, before)
        raise
    for action, details in audits:
        _audit(state, action, details)
    return registry


def _restore(registry: Any, before: bytes | None) -> None:
    from gateway.config_versions import write_private

    if before is None:
        registry.path.unlink(missing_ok=True)
    else:
        write_private(registry.path, before, owner_of=registry.state_dir)


# -- audit ----------------------------------------------------------------------------------


def audit_command(args: argparse.Namespace) -> int:
    from gateway.audit import verify_chain
    from gateway.cli.local_state import open_store
    from gateway.cli.output import print_json, print_table

    async def entries() -> list[dict[str, Any]]:
        async with open_store(local_state(args)) as store:
            return await store.audit_log()

    log = asyncio.run(entries())
    broken = verify_chain(log)
    if args.json or not sys.stdout.isatty():
        print_json({"entries": log, "chain_intact": broken is None, "broken_at": broken})
    else:
        print_table(("id", "at", "action", "actor", "details"),
                    [[e["id"], e["at"], e["action"], e["actor"], json.dumps(e["details"])] for e in log],
                    title="Audit log")
    if broken is not None:
        raise CommandFailed(f"the audit log's hash chain is broken at entry {broken}")
    return 0
