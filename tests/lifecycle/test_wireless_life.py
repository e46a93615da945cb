"""A wireless sensor's whole life, end to end: a real gateway (in this process) listening to a
simulated radio dongle, a real Mosquitto broker, and an HES that commands the gateway over
MQTT 5 and verifies every message with jwcrypto and the public key alone.

The sensor is heard (discovered), commissioned with its key, read, re-keyed with an overlap
(telegrams under the old and the new key accepted during it, only the new one after),
exchanged for a spare (the metering point's history goes on), and silenced (communication
interruption and recovery); ``gateway devices show --history`` prints its audit trail, which
matches the events the HES received one by one.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.app import Gateway, Timing
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.config import parse_config
from gateway.simulators.wmbus import ImstDongle, WirelessMeterModel, serve_dongle
from gateway.systemd import Notifier
from tests.hes import received_records
from tests.mqtt_broker import Subscriber
from tests.app.test_operations import until
from tests.uplinks.conftest import GATEWAY, requester

pytestmark = pytest.mark.integration

KEY_1 = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
KEY_2 = "1F2E3D4C5B6A79889706B5C4D3E2F1A0"
SPARE_KEY = "00112233445566778899AABBCCDDEEFF"
INTERVAL_S = 0.3
SENSOR, SPARE = "GWY-31000001-01-07", "GWY-31000002-01-07"


def config_text(state_dir: Path, port: str, broker_url: str) -> str:
    return f"""
[gateway]
id = "{GATEWAY}"
state_dir = "{state_dir}"
apply_grace_s = 10

[devices]
commission_wait_s = 10

[[uplinks.mqtt]]
url = "{broker_url}"
allow_remote_devices = true
batch_size = 50

[[buses]]
name = "radio"
protocol = "wmbus"
port = "{port}"
dongle = "imst"
"""


def sensor(identification: str, key: str) -> WirelessMeterModel:
    return WirelessMeterModel(identification=identification, key=AesKey.from_hex(key), interval_s=INTERVAL_S,
                              wall_clock=lambda: datetime.now(timezone.utc).replace(tzinfo=None))


async def test_a_wireless_sensor_is_discovered_commissioned_rekeyed_exchanged_and_silenced(tmp_path, mosquitto):
    state_dir = tmp_path / "state"
    meter, spare = sensor("31000001", KEY_1), sensor("31000002", SPARE_KEY)
    spare.muted = True  # the spare is still in the van
    async with serve_dongle(ImstDongle(), [meter, spare]) as dongle:
        text = config_text(state_dir, dongle.path, mosquitto.url)
        committed: list = []
        gateway = Gateway(parse_config(text), config_text=text, notifier=Notifier(None),
                          timing=Timing(status_file_s=0.5, drain_uplinks_s=10),
                          listeners=[lambda records, seqs: committed.extend(zip(seqs, records))])
        stop = asyncio.Event()
        running = asyncio.create_task(gateway.run(stop))
        try:
            async with Subscriber(mosquitto, f"metering/{GATEWAY}/#") as uplink, requester(mosquitto) as hes:
                await until(lambda: _connected(gateway), message=lambda: _said("the uplink"))
                await _life(gateway, hes, meter, spare, committed)
                # every record reached the HES before the check
                await until(lambda: _delivered(uplink, committed, state_dir), message=lambda: _said("delivery"))
                history = await _history_from_the_cli(state_dir, SENSOR)
        finally:
            stop.set()
            await asyncio.wait_for(running, 60)

    records = received_records(uplink.messages, state_dir / "keys" / "signing-key.pem")  # verified: ES256, jwcrypto
    events = [r for _, r in sorted(records.items()) if r["kind"] == "event"]
    lifecycle = [(e["code"], e["details"].get("name")) for e in events if e["code"].startswith("device.")]
    assert lifecycle == [
        ("device.discovered", SENSOR),
        ("device.installed", SENSOR), ("device.commissioned", SENSOR), ("device.in_service", SENSOR),
        ("device.rekeyed", SENSOR), ("device.key_switched", SENSOR),
        ("device.discovered", SPARE),
        ("device.installed", SPARE), ("device.commissioned", SPARE), ("device.in_service", SPARE),
        ("device.exchanged", SENSOR),
    ]
    # silenced and back: the communication interruption and its recovery, after the exchange
    comm = [(e["code"], e["details"].get("reason")) for e in events if e["code"].startswith("comm.")
            and e["device"] == SPARE]
    assert comm[:2] == [("comm.failed", "not_heard"), ("comm.recovered", None)]
    exchanged = next(e for e in events if e["code"] == "device.exchanged")
    assert exchanged["seq"] < min(e["seq"] for e in events if e["code"] == "comm.failed" and e["device"] == SPARE)

    # the audit trail printed by the CLI is the events the HES received, one for one
    trail = [e for e in events if e["code"].startswith("device.") and e["details"].get("name") == SENSOR]
    assert [(h["event"], h["audit_id"], h["hash"]) for h in history["history"]] == \
        [(e["code"], e["details"]["audit_id"], e["details"]["audit_hash"]) for e in trail]
    assert history["chain_intact"] and history["state"] == "exchanged"
    assert all(e["details"]["actor"] == ("gateway" if e["code"] in ("device.discovered", "device.key_switched")
                                         else "hes via mqtt") for e in trail)

    readings = [r for _, r in sorted(records.items()) if r["kind"] == "reading"]
    point = [r for r in readings if r["point"] == "MP-1"]
    devices_in_order = [r["device"] for r in point]
    first_spare = devices_in_order.index(SPARE)
    assert set(devices_in_order[:first_spare]) == {SENSOR} and set(devices_in_order[first_spare:]) == {SPARE}
    # the metering point's history: the old device's final reading before the spare's first one
    assert exchanged["details"]["final_seq"] < exchanged["details"]["first_seq"]
    assert "volume=" in exchanged["details"]["final_reading"] and "volume=" in exchanged["details"]["first_reading"]
    assert records[exchanged["details"]["first_seq"]]["device"] == SPARE
    assert "commissioning" in records[exchanged["details"]["first_seq"]]["flags"]
    volume = [r for r in point if r["quantity"] == "volume"]
    assert all(r["metrological"] is True for r in volume)
    assert all(r["metrological"] is False for r in point if r["quantity"].startswith("time_point"))
    assert {r["protection"] for r in volume} == {"encrypted:wmbus-mode5"}
    # telegrams under the old key were accepted during the overlap (flagged), never after it
    old_key = [r for r in volume if "previous_key" in r["flags"]]
    assert old_key and all(r["device"] == SENSOR for r in old_key)
    refused = [e for e in events if e["code"] == "security.refused" and e["device"] == SENSOR]
    assert refused, "a telegram under the old key after the overlap is refused"
    assert max(r["seq"] for r in old_key) < refused[0]["seq"]
    # nothing of a device is stored before it is installed
    assert not any(r["device"] == SPARE for r in readings if r["seq"] < exchanged["details"]["first_seq"])


async def _life(gateway, hes, meter: WirelessMeterModel, spare: WirelessMeterModel, committed: list) -> None:
    # heard: discovered, nothing stored
    await until(lambda: _state_is(hes, SENSOR, "discovered"), message=lambda: _said("the discovery"))
    assert not [r for _, r in committed if getattr(r, "device", None) == SENSOR and hasattr(r, "quantity")]

    # commissioned with its key by the HES, then read at its metering point
    answer = await hes.ask("devices.commission", {
        "name": SENSOR, "point": "MP-1", "keys": {"key": KEY_1},
        "declaration": {"expected_interval_s": INTERVAL_S * 2, "metrological": ["volume*"]}}, timeout=60)
    assert answer["ok"], answer
    assert answer["result"]["state"] == "in service"
    assert {c["check"] for c in answer["result"]["checks"]} >= {"read", "protection", "identity", "clock"}
    await until(lambda: _readings_after(committed, SENSOR, "commissioning", 3), message=lambda: _said("readings at the point"))

    # re-keyed: the meter still sends under its old key during the overlap, then switches
    answer = await hes.ask("devices.rekey", {"name": SENSOR, "keys": {"key": KEY_2}, "overlap_s": 6}, timeout=60)
    assert answer["ok"], answer
    overlap_until = datetime.fromisoformat(answer["result"]["overlap_until"])
    await until(lambda: _flagged(committed, SENSOR, "previous_key"), message=lambda: _said("a telegram under the old key"))
    meter.key = AesKey.from_hex(KEY_2)
    await until(lambda: _key_switched(hes, SENSOR), message=lambda: _said("the switch to the new key"))
    # after the overlap the old key is refused
    while datetime.now(overlap_until.tzinfo) <= overlap_until:
        await asyncio.sleep(0.1)
    meter.key = AesKey.from_hex(KEY_1)
    await until(lambda: _event(committed, "security.refused"), message=lambda: _said("the old key refused after the overlap"))
    meter.key = AesKey.from_hex(KEY_2)

    # exchanged for the spare, which is heard once it is installed on site
    spare.muted = False
    await until(lambda: _state_is(hes, SPARE, "discovered"), message=lambda: _said("the spare's discovery"))
    answer = await hes.ask("devices.exchange", {
        "name": SENSOR, "new": SPARE, "keys": {"key": SPARE_KEY},
        "declaration": {"expected_interval_s": INTERVAL_S * 2, "metrological": ["volume*"]}}, timeout=60)
    assert answer["ok"], answer
    meter.muted = True  # the old one is taken away
    await until(lambda: _readings_after(committed, SPARE, "commissioning", 3), message=lambda: _said("the spare's readings"))

    # silenced: a communication interruption, then its recovery
    spare.muted = True
    await until(lambda: _event(committed, "comm.failed", SPARE), message=lambda: _said("the interruption"))
    spare.muted = False
    await until(lambda: _event(committed, "comm.recovered", SPARE), message=lambda: _said("the recovery"))


async def _said(what: str) -> str:
    return f"waited in vain for {what}"


async def _state_is(hes, name: str, state: str) -> bool:
    answer = await hes.ask("devices.list", {})
    return any(d["name"] == name and d["state"] == state for d in answer.get("result", []))


async def _key_switched(hes, name: str) -> bool:
    answer = await hes.ask("devices.show", {"name": name})
    return bool(answer["result"]["entry"]["keys"].get("switched_at"))


async def _readings_after(committed: list, device: str, flag: str, count: int) -> bool:
    flagged = [seq for seq, r in committed if getattr(r, "device", None) == device and flag in getattr(r, "flags", ())]
    return bool(flagged) and sum(1 for seq, r in committed if getattr(r, "device", None) == device
                                 and hasattr(r, "quantity") and seq > flagged[0] and r.quantity == "volume") >= count


async def _flagged(committed: list, device: str, flag: str) -> bool:
    return any(getattr(r, "device", None) == device and flag in getattr(r, "flags", ()) for _, r in committed)


async def _event(committed: list, code: str, device: str | None = None) -> bool:
    return any(getattr(r, "code", None) == code and device in (None, r.device) for _, r in committed)


async def _connected(gateway) -> bool:
    return bool(gateway.uplinks) and gateway.uplinks[0].counters.connected


async def _delivered(uplink, committed: list, state_dir: Path) -> bool:
    if not committed:
        return False
    records = received_records(uplink.messages, state_dir / "keys" / "signing-key.pem")
    return max(seq for seq, _ in committed) in records


async def _history_from_the_cli(state_dir: Path, name: str) -> dict:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "devices", "show", name, "--history", "--json", "--state-dir",
        str(state_dir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out)
