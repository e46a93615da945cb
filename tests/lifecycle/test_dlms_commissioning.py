"""Commissioning and re-keying a DLMS/COSEM meter through ``gateway devices`` (the CLI talking
to a running gateway over its control socket): a meter that demands HLS-GMAC and ciphering
(:mod:`tests.lifecycle.secured_dlms_meter`) stays installed, with the reason, when given a
wrong key or when its firmware is not the declared one; with the right keys its clock, five
minutes off, is set and reported, its readings keep the APDUs as received, it appears as a
logical device of the gateway's DLMS server only then, and it takes new keys by key transfer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.app import Gateway, Timing
from gateway.codecs.dlms.security import SecurityKeys
from gateway.config import StoreSection, parse_config
from gateway.model import Event, Reading
from gateway.store import Store
from gateway.systemd import Notifier
from tests.app.test_operations import gateway_cli, until
from tests.collectors.dlms_sim_meter import serving
from tests.lifecycle.secured_dlms_meter import SecuredMeter

pytestmark = pytest.mark.integration

EK = bytes.fromhex("5A4B3C2D1E0F00112233445566778899")
AK = bytes.fromhex("A0B1C2D3E4F5061728394A5B6C7D8E9F")
KEK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
NEW_EK = bytes.fromhex("11111111222222223333333344444444")
NEW_AK = bytes.fromhex("55555555666666667777777788888888")
WRONG = bytes.fromhex("DEADBEEFDEADBEEFDEADBEEFDEADBEEF")
DEVICE = "dlms-SIM0000000000001"


def config_text(state_dir: Path, endpoint: str) -> str:
    return f"""
[gateway]
id = "gw-dlms-life"
state_dir = "{state_dir}"
apply_grace_s = 10

[[uplinks.dlms]]
port = 0

[[buses]]
name = "line1"
protocol = "dlms"
interface = "wrapper"
tcp = "{endpoint}"
"""


METER_TABLE = """
protocol = "dlms"
bus = "line1"
client_sap = 1
server_logical = 1
authentication = "gmac"
objects = ["1.0.1.8.0.255"]
[schedule]
interval_s = 1
"""


def key_file(directory: Path, name: str, key: bytes) -> str:
    path = directory / name
    path.write_text(key.hex().upper() + "\n")
    path.chmod(0o600)
    return str(path)


async def stored(path: Path) -> list:
    async with Store(path, StoreSection(), read_only=True) as store:
        return [s for s in await store.read_after(0, 1_000_000)]


async def test_a_dlms_meter_with_a_wrong_key_stays_installed_and_with_the_right_keys_its_clock_is_set(tmp_path):
    state_dir = tmp_path / "state"
    meter = SecuredMeter(keys=SecurityKeys(EK, AK), kek=KEK, clock_offset_s=300.0)
    table = tmp_path / "meter.toml"
    table.write_text(METER_TABLE)
    where = ("--state-dir", str(state_dir))
    async with serving(meter) as endpoint:
        text = config_text(state_dir, endpoint)
        gateway = Gateway(parse_config(text), config_text=text, notifier=Notifier(None),
                          timing=Timing(status_file_s=0.5))
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: _answers(state_dir))
            server = gateway.uplinks[0]

            # a wrong encryption key: the meter refuses the association; installed, with the reason
            code, out, err = await gateway_cli(
                "devices", "commission", "heat-1", "--point", "MP-7", "--meter-file", str(table),
                "--ek-file", key_file(tmp_path, "wrong.ek", WRONG), "--ak-file", key_file(tmp_path, "ak", AK), *where)
            assert code == 1, out + err
            assert "stays installed" in err and "read: security" in err
            shown = await _show(state_dir, "heat-1")
            assert shown["state"] == "installed" and shown["reason"].startswith("read: security")
            assert meter.clock_offset_s == 300.0  # nothing was done to the meter

            # the right keys, but not the declared firmware: still installed
            code, out, err = await gateway_cli(
                "devices", "commission", "heat-1", "--point", "MP-7", "--ek-file", key_file(tmp_path, "ek", EK),
                "--ak-file", key_file(tmp_path, "ak", AK), "--kek-file", key_file(tmp_path, "kek", KEK),
                "--firmware-version", "FW-9.9.9", *where)
            assert code == 1 and "firmware_version: reported FW-1.2.3, declared FW-9.9.9" in err, err
            assert server.registry.meter_of(DEVICE) is None  # no logical device before commissioning
            assert abs(meter.clock_offset_s) < 5  # its clock was set all the same (and reported)
            meter.clock_offset_s = 300.0  # ... and is off again when it is commissioned

            # the declared firmware: commissioned; its clock, 5 minutes off, is set and reported
            code, out, err = await gateway_cli(
                "devices", "commission", "heat-1", "--point", "MP-7", "--firmware-version", "FW-1.2.3",
                "--firmware-checksum", "a1b2c3d4", "--clock-tolerance-s", "30", *where)
            assert code == 0, err
            result = json.loads(out)
            assert result["state"] == "in service" and result["device"] == DEVICE
            clock = next(c for c in result["checks"] if c["check"] == "clock")
            assert clock["ok"] and clock["detail"].startswith("off by +30")
            assert abs(meter.clock_offset_s) < 5
            await until(lambda: _logical_device(server))

            # re-keyed by key transfer, wrapped with the KEK; reading goes on under the new keys
            code, out, err = await gateway_cli(
                "devices", "rekey", "heat-1", "--ek-file", key_file(tmp_path, "new.ek", NEW_EK),
                "--ak-file", key_file(tmp_path, "new.ak", NEW_AK), "--overlap-s", "3600", *where)
            assert code == 0, err
            assert meter.keys.encryption_key == NEW_EK and meter.keys.authentication_key == NEW_AK
            assert json.loads(out)["method"] == "global_key_transfer"
            await until(lambda: _switched(state_dir, "heat-1"))
            associations = meter.associations
            await until(lambda: _more(meter, associations + 2))
        finally:
            stop.set()
            await asyncio.wait_for(running, 60)

    records = await stored(state_dir / "store.sqlite")
    events = [s.record for s in records if isinstance(s.record, Event)]
    codes = [e.code for e in events if e.code.startswith("device.")]
    assert codes == ["device.installed", "device.commissioning_failed", "device.installed",
                     "device.commissioning_failed", "device.installed", "device.commissioned", "device.in_service",
                     "device.rekeyed", "device.key_switched"]
    failed = [e for e in events if e.code == "device.commissioning_failed"]
    assert [e.details["check"] for e in failed] == ["read", "firmware_version"]
    clock_set = [e for e in events if e.code == "clock.set"]
    assert len(clock_set) == 2 and all(e.device == DEVICE for e in clock_set)
    assert all(299 < float(e.details["before_s"]) < 301 and abs(float(e.details["after_s"])) < 5 for e in clock_set)
    readings = [s.record for s in records if isinstance(s.record, Reading)]
    assert readings and all(r.device == DEVICE and r.point == "MP-7" for r in readings)
    energy = [r for r in readings if r.obis == "1-0:1.8.0*255"]
    assert len(energy) >= 3 and all(r.metrological for r in energy)
    assert {r.protection for r in energy} == {"authenticated+encrypted:dlms-suite0"}
    assert all(r.raw and r.raw[0] == 0xCC for r in energy)  # glo-get-response, as received
    assert "commissioning" in energy[0].flags and "commissioning" not in energy[-1].flags
    assert not any("previous_key" in r.flags for r in readings)
    assert meter.refused == 1  # the association with the wrong key, and no other


async def _answers(state_dir: Path) -> bool:
    code, _, _ = await gateway_cli("devices", "list", "--state-dir", str(state_dir))
    return (state_dir / "control.sock").exists() and code == 0


async def _show(state_dir: Path, name: str) -> dict:
    code, out, err = await gateway_cli("devices", "show", name, "--json", "--state-dir", str(state_dir))
    assert code == 0, err
    return json.loads(out)


async def _switched(state_dir: Path, name: str) -> bool:
    return bool(((await _show(state_dir, name))["entry"].get("keys") or {}).get("switched_at"))


async def _logical_device(server) -> bool:
    return server.registry.meter_of(DEVICE) is not None


async def _more(meter: SecuredMeter, count: int) -> bool:
    return meter.associations >= count
