"""A battery-powered DLMS/COSEM gas sensor that pushes its values (sensor-initiated transfer)
through its life at the gateway's ``dlms-push`` listener: discovered by its first push,
commissioned with its keys, its pushes stored with their APDU and protection, a replayed
push refused, its silence an interruption and its next push the recovery, re-keyed on site
(pushes under both keys accepted during the overlap)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from gateway.app import Gateway, Timing
from gateway.codecs.dlms.security import SecurityKeys
from gateway.config import StoreSection, parse_config
from gateway.control import request
from gateway.model import Event, Reading
from gateway.store import Store
from gateway.systemd import Notifier
from tests.lifecycle.push_sensor import OBJECTS, PushSensor, pushing, send
from tests.mqtt_broker import free_port
from tests.uplinks.conftest import eventually as until

pytestmark = pytest.mark.integration

TITLE = bytes.fromhex("475053000000002A")
DEVICE = "dlms-475053000000002A"
EK, AK = "00112233445566778899AABBCCDDEEF0", "F0EEDDCCBBAA99887766554433221100"
NEW_EK, NEW_AK = "0F0E0D0C0B0A09080706050403020100", "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0"


async def ask(state_dir, command: str, **args) -> dict:
    answer = await request(state_dir, command, {**args, "actor": "tester"}, timeout_s=120)
    assert answer["ok"], answer
    return answer["result"]


async def test_a_pushing_gas_sensor_is_discovered_commissioned_refuses_a_replay_and_is_rekeyed(tmp_path):
    state_dir, port = tmp_path / "state", free_port()
    text = (f'[gateway]\nid = "gw-push"\nstate_dir = "{state_dir}"\napply_grace_s = 10\n'
            f'[devices]\ncommission_wait_s = 10\n'
            f'[[buses]]\nname = "push"\nprotocol = "dlms-push"\nlisten = "127.0.0.1:{port}"\n')
    committed: list = []
    gateway = Gateway(parse_config(text), config_text=text, notifier=Notifier(None), timing=Timing(),
                      listeners=[lambda records, seqs: committed.extend(records)])
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    sensor = PushSensor(TITLE, SecurityKeys(bytes.fromhex(EK), bytes.fromhex(AK)))
    try:
        async with pushing(sensor, port):
            await until(lambda: _state(state_dir, "discovered"), timeout=30)
            assert not [r for r in committed if isinstance(r, Reading)]  # nothing stored while discovered

            result = await ask(state_dir, "devices.commission", name=DEVICE, point="GAS-1", keys={"ek": EK, "ak": AK},
                               meter={"objects": OBJECTS},
                               declaration={"transfer": "push", "expected_interval_s": 0.6,
                                            "metrological": ["7.0.3.0.0.255"]})
            assert result["state"] == "in service"
            await until(lambda: _count(committed, "commissioning", absent=True) >= 3)

            assert await send(port, sensor.sent[-1])  # a replayed push
            await until(lambda: _event(committed, "security.refused"))

            sensor.muted = True
            await until(lambda: _event(committed, "comm.failed"))
            sensor.muted = False
            await until(lambda: _event(committed, "comm.recovered"))

            rekeyed = await ask(state_dir, "devices.rekey", name=DEVICE, keys={"ek": NEW_EK, "ak": NEW_AK},
                                overlap_s=3600)
            assert rekeyed["method"] == "installed"
            await until(lambda: _count(committed, "previous_key") >= 1)
            sensor.rekey(SecurityKeys(bytes.fromhex(NEW_EK), bytes.fromhex(NEW_AK)))
            await until(lambda: _switched(state_dir))
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)

    async with Store(state_dir / "store.sqlite", StoreSection(), read_only=True) as store:
        records = [s.record for s in await store.read_after(0, 1_000_000)]
    readings = [r for r in records if isinstance(r, Reading)]
    volume = [r for r in readings if r.obis == "7-0:3.0.0*255"]
    assert volume and all(r.point == "GAS-1" and r.metrological and r.unit == "m^3" for r in volume)
    # exact: the pushed mantissa scaled by the pushed scaler_unit (thousandths of m^3)
    assert all(r.value.as_tuple().exponent == -3 and (r.value.scaleb(3) - sensor.volume_milli) % sensor.step_milli == 0
               and r.value > sensor.volume_at(0) for r in volume)
    temperature = [r for r in readings if r.obis == "7-0:41.0.0*255"]
    assert {r.value for r in temperature} == {Decimal("12.34")} and not any(r.metrological for r in temperature)
    assert {r.protection for r in readings} == {"authenticated+encrypted:dlms-suite0"}
    assert all(r.raw and r.raw[0] == 0xDB for r in readings)  # general-glo-ciphering, as received
    assert any("previous_key" in r.flags for r in readings) and "previous_key" not in readings[-1].flags
    events = [r for r in records if isinstance(r, Event)]
    codes = [e.code for e in events if e.code.startswith("device.")]
    assert codes == ["device.discovered", "device.installed", "device.commissioned", "device.in_service",
                     "device.rekeyed", "device.key_switched"]
    (replay,) = [e for e in events if e.code == "security.refused"]
    assert replay.details["field"] == "invocation-counter"
    assert [e.details["reason"] for e in events if e.code == "comm.failed"][0] == "not_heard"


async def _state(state_dir, state: str) -> bool:
    try:
        return any(d["state"] == state for d in await ask(state_dir, "devices.list"))
    except Exception:  # noqa: BLE001 - the daemon is starting
        return False


def _count(committed: list, flag: str, *, absent: bool = False) -> int:
    return sum(1 for r in committed if isinstance(r, Reading) and (flag not in r.flags if absent else flag in r.flags))


def _event(committed: list, code: str) -> bool:
    return any(isinstance(r, Event) and r.code == code for r in committed)


async def _switched(state_dir) -> bool:
    shown = await ask(state_dir, "devices.show", name=DEVICE)
    return bool((shown["entry"].get("keys") or {}).get("switched_at"))
