"""Wired M-Bus devices through their lifecycle, over the daemon's control socket (as
``gateway devices`` talks to it): found by a bus scan (discovered), commissioned at a
metering point, a permanent error in the status byte (an alarm, faulty) and its end (in
service again), a calibration (readings flagged meanwhile, its record kept), suspended and
resumed, decommissioned with its final reading."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.app import Gateway, Timing
from gateway.config import StoreSection, parse_config
from gateway.control import request
from gateway.model import Event, Reading
from gateway.simulators.mbus import MeterModel, Pacing, SimulatedBus, SimulatedSlave, serve_pty
from gateway.store import Store
from gateway.systemd import Notifier
from gateway.transports import LineSettings

pytestmark = pytest.mark.integration

HEAT = "GWY-31000001-01-04"


def config_text(state_dir, port: str) -> str:
    return (f'[gateway]\nid = "gw-wired"\nstate_dir = "{state_dir}"\napply_grace_s = 10\n\n'
            f'[[buses]]\nname = "mbus1"\nprotocol = "mbus"\nport = "{port}"\nbaud = 9600\n')


def model(identification: str) -> MeterModel:
    return MeterModel(identification=identification, wall_clock=lambda: datetime.now(timezone.utc))


async def ask(state_dir, command: str, **args) -> dict:
    answer = await request(state_dir, command, {**args, "actor": "tester"}, timeout_s=120)
    assert answer["ok"], answer
    return answer["result"]


async def until(condition, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_wired_meter_found_by_a_scan_lives_through_faults_calibration_and_decommissioning(tmp_path):
    state_dir = tmp_path / "state"
    heat, other = model("31000001"), model("42000002")
    bus = SimulatedBus([SimulatedSlave(1, heat), SimulatedSlave(2, other)])
    async with serve_pty(bus, Pacing(LineSettings(9600))) as server:
        text = config_text(state_dir, server.path)
        committed: list = []
        gateway = Gateway(parse_config(text), config_text=text, notifier=Notifier(None), timing=Timing(),
                          listeners=[lambda records, seqs: committed.extend(zip(seqs, records))])
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: (state_dir / "control.sock").exists() and gateway.collectors[0].connected)
            found = await ask(state_dir, "devices.scan", bus="mbus1")
            assert sorted(found["found"]) == [HEAT, "GWY-42000002-01-04"]
            assert (await ask(state_dir, "devices.scan", bus="mbus1"))["found"] == []  # known already
            assert not [r for _, r in committed if isinstance(r, Reading)]  # nothing stored while discovered

            result = await ask(state_dir, "devices.commission", name=HEAT, point="HEAT-1",
                               meter={"schedule": {"interval_s": 1}},
                               declaration={"metrological": ["energy*", "volume*"]})
            assert result["state"] == "in service"
            await until(lambda: _reads(committed, HEAT) >= 2)

            heat.status = 0x08  # permanent error
            await until(lambda: _state(state_dir) == "faulty")
            heat.status = 0x00
            await until(lambda: _state(state_dir) == "in service")

            await ask(state_dir, "devices.calibrate", name=HEAT, action="start")
            mark = len(committed)
            await until(lambda: _reads(committed[mark:], HEAT) >= 1)
            closed = await ask(state_dir, "devices.calibrate", name=HEAT, action="end", certificate="PTB-2026-0042")
            assert closed["calibration"]["certificate"] == "PTB-2026-0042"
            assert "energy=" in closed["calibration"]["before"] and "energy=" in closed["calibration"]["after"]

            assert (await ask(state_dir, "devices.suspend", name=HEAT, reason="building works"))["state"] == "suspended"
            assert HEAT not in str(gateway.collectors[0].meters())
            assert (await ask(state_dir, "devices.resume", name=HEAT))["state"] == "in service"
            final = await ask(state_dir, "devices.decommission", name=HEAT, reason="building demolished")
            assert final["state"] == "decommissioned"
            shown = await ask(state_dir, "devices.show", name=HEAT, history=True)
        finally:
            stop.set()
            await asyncio.wait_for(running, 60)

    async with Store(state_dir / "store.sqlite", StoreSection(), read_only=True) as store:
        records = [s.record for s in await store.read_after(0, 1_000_000)]
    events = [r for r in records if isinstance(r, Event)]
    lifecycle = [e.code for e in events if e.code.startswith("device.") and e.details.get("name") == HEAT]
    assert lifecycle == ["device.discovered", "device.installed", "device.commissioned", "device.in_service",
                         "device.faulty", "device.in_service", "device.calibration_started", "device.calibrated",
                         "device.suspended", "device.in_service", "device.decommissioned"]
    assert [h["event"] for h in shown["history"]] == lifecycle and shown["chain_intact"]
    alarms = [e for e in events if e.code == "meter.alarm"]
    assert [(a.details["set"], a.details["cleared"]) for a in alarms] == [("permanent_error", ""),
                                                                          ("", "permanent_error")]
    faulty = next(e for e in events if e.code == "device.faulty")
    assert faulty.details["actor"] == "gateway" and "permanent_error" in faulty.details["reason"]
    readings = [r for r in records if isinstance(r, Reading)]
    assert readings and all(r.device == HEAT and r.point == "HEAT-1" for r in readings)
    calibrating = [r for r in readings if "calibration" in r.flags]
    assert calibrating and all(r.quantity for r in calibrating)
    assert {r.protection for r in readings} == {"none"}
    assert all(r.metrological == (r.quantity.startswith(("energy", "volume"))) for r in readings)
    decommissioned = next(e for e in events if e.code == "device.decommissioned")
    assert decommissioned.details["final_seq"] > 0 and "energy=" in decommissioned.details["final_reading"]


def _reads(committed: list, device: str) -> int:
    return sum(1 for _, r in committed if isinstance(r, Reading) and r.device == device and r.quantity == "energy")


def _state(state_dir) -> str:
    from gateway.registry import MeterRegistry

    return MeterRegistry(state_dir).get(HEAT)["state"]
