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
from gateway.config import GatewayConfig, MBusBus, MqttUplink, parse_config
from gateway.model import Event, Reading, Record, value_text

SIMULATED_PORT = "simulated"
#: Where the demo meters' counters started; their values follow the wall clock from here,
#: so energy only ever grows, across demo runs too.
METER_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gateway" / "demo"


@dataclass(frozen=True)
class DemoOptions:
    state_dir: Path = field(default_factory=default_state_dir)
    duration_s: float | None = None
    mqtt_url: str | None = None


def demo_config(options: DemoOptions, port: str) -> GatewayConfig:
    """The packaged demo configuration with the simulator's port, the state directory and
    the optional MQTT uplink filled in."""
    source = resources.files("gateway") / "data" / "demo.toml"
    config = parse_config(source.read_text(encoding="utf-8"), str(source))
    buses = [bus.model_copy(update={"port": port}) if isinstance(bus, MBusBus) and bus.port == SIMULATED_PORT else bus
             for bus in config.buses]
    update: dict[str, object] = {
        "gateway": config.gateway.model_copy(update={"state_dir": options.state_dir}),
        "buses": buses,
    }
    if options.mqtt_url:
        uplink = MqttUplink(name="demo", url=options.mqtt_url)
        update["uplinks"] = config.uplinks.model_copy(update={"mqtt": [uplink]})
    return config.model_copy(update=update)


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
    from gateway.simulators.mbus import Pacing, SimulatedBus, SimulatedSlave, serve_pty
    from gateway.transports import LineSettings

    config = demo_config(options, SIMULATED_PORT)
    bus_config = next(b for b in config.buses if isinstance(b, MBusBus))
    slaves = [SimulatedSlave(address, _meter_model(address)) for address in (1, 2, 3)]
    printer = ReadingPrinter(out)
    started = time.monotonic()
    async with serve_pty(SimulatedBus(slaves), Pacing(LineSettings(bus_config.baud))) as simulator:
        config = demo_config(options, simulator.path)
        err.write(f"demo: 3 simulated M-Bus meters on {simulator.path} at {bus_config.baud} baud; "
                  f"state in {options.state_dir}\n")
        if options.mqtt_url:
            err.write(f"demo: publishing signed readings to {options.mqtt_url} "
                      f"(topics metering/{config.gateway.id}/...)\n")
        err.write("demo: readings appear as they are committed (seq, device, quantity, value); "
                  + ("stops after %g s\n" % options.duration_s if options.duration_s else "Ctrl-C stops\n"))
        gateway = Gateway(config, timing=Timing(drain_uplinks_s=10.0), listeners=[printer])
        await _run_until_stopped(gateway, options.duration_s)
    _print_summary(options, printer, time.monotonic() - started, err)
    return 0


def _meter_model(address: int) -> object:
    from gateway.simulators.mbus import MeterModel

    power_w = (9_000, 14_000, 4_500)[address - 1]
    flow_l_per_h = (450, 700, 220)[address - 1]
    hours = (datetime.now(timezone.utc) - METER_EPOCH).total_seconds() / 3600
    return MeterModel(
        identification=f"{10_000_000 + address:08d}",
        power_w=power_w,
        flow_l_per_h=flow_l_per_h,
        energy_wh=1_000_000 * address + int(power_w * hours),
        volume_l=50_000 * address + int(flow_l_per_h * hours),
        wall_clock=lambda: datetime.now(timezone.utc),
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
