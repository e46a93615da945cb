"""``gateway demo``: the real pipeline against simulated meters, with nothing else installed.

Simulated M-Bus heat meters answer on a pseudo-terminal at 2400 baud (paced like a real
bus); the gateway polls them with its real master, commits every reading to the store in
the state directory, signs and publishes when an MQTT broker is given, and prints readings
as they are committed. The state directory is reused across runs: store, signing key and
cursors carry over, so a killed demo resumes where it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TextIO

from gateway.app import STATUS_FILE, Gateway, Timing
from gateway.cli.local_state import default_demo_state_dir as default_state_dir
from gateway.config import GatewayConfig, parse_toml, validate_config
from gateway.model import Event, Reading, Record, value_text

SIMULATED_MBUS = "simulated:mbus"
SIMULATED_WMBUS = "simulated:wmbus"
SIMULATED_DLMS = "simulated:dlms"
#: The demo's keys, all well-known test keys (never real ones): the wireless meters' AES-128
#: key and the DLMS server's Green Book encryption (000102…0F) and authentication (D0D1…DF) keys.
DEMO_KEYS = {
    "demo-key": bytes(range(16)).hex().upper(),
    "demo-ek": bytes(range(16)).hex().upper(),
    "demo-ak": bytes(range(0xD0, 0xE0)).hex().upper(),
}
DEMO_WMBUS_KEY = DEMO_KEYS["demo-key"]
DEFAULT_DLMS_PORT = 4059
#: Where the demo meters' counters started; their values follow the wall clock from here,
#: so energy and volume only ever grow, across demo runs too.
METER_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class DemoOptions:
    state_dir: Path = field(default_factory=default_state_dir)
    duration_s: float | None = None
    mqtt_url: str | None = None
    dlms_port: int = DEFAULT_DLMS_PORT


def demo_config(options: DemoOptions, ports: dict[str, str], key_files: dict[str, Path]) -> GatewayConfig:
    """The packaged demo configuration with the simulators' ports, the demo key files, the
    state directory, the DLMS port and the optional MQTT uplink filled in."""
    source = resources.files("gateway") / "data" / "demo.toml"
    text = source.read_text(encoding="utf-8")
    data = parse_toml(text, str(source))
    data["gateway"]["state_dir"] = str(options.state_dir)
    for bus in data.get("buses", []):
        for where in ("port", "tcp"):
            if where in bus:
                bus[where] = ports.get(bus[where], bus[where])
    for meter in data.get("meters", []):
        _fill_key_files(meter, key_files, "key_file")
    servers = data.get("uplinks", {}).get("dlms", [])
    for server in [servers] if isinstance(servers, dict) else servers:
        _fill_key_files(server, key_files, "ek_file", "ak_file")
        server["port"] = options.dlms_port
    if options.mqtt_url:
        data.setdefault("uplinks", {})["mqtt"] = [{"name": "demo", "url": options.mqtt_url}]
    return validate_config(data, text, str(source))


def _fill_key_files(section: dict[str, object], key_files: dict[str, Path], *fields: str) -> None:
    for name in fields:
        if section.get(name) in key_files:
            section[name] = str(key_files[section[name]])


def write_demo_keys(state_dir: Path) -> dict[str, Path]:
    """The demo's test keys, each in a file only this user can read (as any key file)."""
    keys = state_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {}
    for reference, key in DEMO_KEYS.items():
        path = paths[reference] = keys / f"{reference}.key"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key + "\n")
    return paths


class ReadingPrinter:
    """Prints each committed reading on one line, and counts what it saw."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.readings = 0
        self.events = 0
        self.devices: set[str] = set()
        self.first_seq: int | None = None
        self.last_seq = 0

    def __call__(self, records: Sequence[Record], seqs: list[int]) -> None:
        for record, seq in zip(records, seqs):
            self.first_seq = seq if self.first_seq is None else self.first_seq
            self.last_seq = seq
            if isinstance(record, Reading):
                self.readings += 1
                self.devices.add(record.device)
                unit = f" {record.unit}" if record.unit else ""
                self.out.write(f"{seq:>7}  {record.device:<22} {record.quantity:<36} {value_text(record.value)}{unit}\n")
            elif isinstance(record, Event):
                self.events += 1
                self.out.write(f"{seq:>7}  event {record.code}: {record.message}\n")
        self.out.flush()


async def run_demo(options: DemoOptions, out: TextIO, err: TextIO) -> int:
    from gateway.simulators.dlms import SimulatedDlmsMeter
    from gateway.simulators.dlms import serving as serve_dlms
    from gateway.simulators.mbus import Pacing, SimulatedBus, SimulatedSlave, serve_pty
    from gateway.simulators.wmbus import ImstDongle, serve_dongle
    from gateway.transports import LineSettings

    key_files = write_demo_keys(options.state_dir)
    slaves = [SimulatedSlave(address, _heat_meter(address)) for address in (1, 2, 3)]
    printer = ReadingPrinter(out)
    started = time.monotonic()
    async with serve_pty(SimulatedBus(slaves), Pacing(LineSettings(2400))) as wired, \
            serve_dongle(ImstDongle(), [_water_meter(n) for n in (1, 2)]) as radio, \
            serve_dlms(SimulatedDlmsMeter(name=b"DEMO000000000001")) as electricity:
        config = demo_config(options, {SIMULATED_MBUS: wired.path, SIMULATED_WMBUS: radio.path,
                                       SIMULATED_DLMS: electricity.address}, key_files)
        err.write(f"demo: 3 simulated M-Bus heat meters on {wired.path} (2400 baud), 2 encrypted wireless "
                  f"water meters heard by a simulated IMST dongle on {radio.path}; state in {options.state_dir}\n")
        err.write(f"demo: a simulated DLMS/COSEM electricity meter on {electricity.address}: operate it with "
                  f"`gateway op submit electricity-1 disconnect --state-dir {options.state_dir}`\n")
        err.write(f"demo: DLMS/COSEM server on 127.0.0.1:{options.dlms_port} (wrapper; management client SAP 1 "
                  "with HLS-GMAC and the Green Book keys, public client SAP 16)\n")
        if options.mqtt_url:
            err.write(f"demo: publishing signed readings to {options.mqtt_url} "
                      f"(topics metering/{config.gateway.id}/...)\n")
        err.write("demo: readings appear as they are committed (seq, device, quantity, value); "
                  + ("stops after %g s\n" % options.duration_s if options.duration_s else "Ctrl-C stops\n"))
        gateway = Gateway(config, timing=Timing(drain_uplinks_s=10.0), listeners=[printer])
        await _run_until_stopped(gateway, options.duration_s)
    _print_summary(options, printer, time.monotonic() - started, err)
    return 0


def _hours_since_epoch() -> float:
    return (datetime.now(timezone.utc) - METER_EPOCH).total_seconds() / 3600


def _heat_meter(address: int) -> object:
    from gateway.simulators.mbus import MeterModel

    power_w = (9_000, 14_000, 4_500)[address - 1]
    flow_l_per_h = (450, 700, 220)[address - 1]
    hours = _hours_since_epoch()
    return MeterModel(
        identification=f"{10_000_000 + address:08d}",
        power_w=power_w,
        flow_l_per_h=flow_l_per_h,
        energy_wh=1_000_000 * address + int(power_w * hours),
        volume_l=50_000 * address + int(flow_l_per_h * hours),
        wall_clock=lambda: datetime.now(timezone.utc),
    )


def _water_meter(number: int) -> object:
    from gateway.codecs.mbus.wmbus_security import AesKey
    from gateway.simulators.wmbus import WirelessMeterModel

    interval_s, step_l = 4.0, 1
    # The model adds step_l per telegram; its starting volume grows with the wall clock at
    # twice that rate, so a later demo run always starts above where an earlier one ended.
    litres_per_hour = 2 * step_l * 3600 / interval_s
    return WirelessMeterModel(
        identification=f"{20_000_000 + number:08d}",
        key=AesKey.from_hex(DEMO_WMBUS_KEY),
        interval_s=interval_s,
        step_l=step_l,
        volume_l=10_000 * number + int(litres_per_hour * _hours_since_epoch()),
    )


async def _run_until_stopped(gateway: Gateway, duration_s: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    timer = loop.call_later(duration_s, stop.set) if duration_s else None
    try:
        await gateway.run(stop)
    finally:
        if timer is not None:
            timer.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _print_summary(options: DemoOptions, printer: ReadingPrinter, elapsed_s: float, err: TextIO) -> None:
    status_path = options.state_dir / STATUS_FILE
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    store = status.get("store", {})
    err.write(f"demo: {printer.readings} readings from {len(printer.devices)} meters and {printer.events} events "
              f"committed in {elapsed_s:.0f} s (seq {printer.first_seq}..{printer.last_seq}); "
              f"the store holds {store.get('records', '?')} records up to seq {store.get('last_seq', '?')}\n")
    for name, cursor in store.get("cursors", {}).items():
        backlog = store.get("backlog", {}).get(name, "?")
        err.write(f"demo: uplink {name}: acknowledged up to seq {cursor}, {backlog} not yet sent\n")
    err.write(f"demo: see them with: gateway readings --state-dir {options.state_dir}\n")
