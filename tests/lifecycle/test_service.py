"""The lifecycle service on its own (a fake gateway around it): a key overlap that expired
is ended; a discovery is registered once, whoever hears the device again; operations the
state does not allow are refused with the reason; and ``gateway devices`` without a daemon."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.cli import main
from gateway.collectors.base import Discovery
from gateway.config import StoreSection, parse_config
from gateway.lifecycle.service import DeviceLifecycle, LifecycleError
from gateway.registry import MeterRegistry
from gateway.store import Store

KEY = "000102030405060708090A0B0C0D0E0F"
TABLE = {"protocol": "wmbus", "bus": "radio", "id": "12345678", "expected_interval_s": 60}


class FakeHost:
    def __init__(self, state_dir, store) -> None:
        self.config = parse_config(f'[gateway]\nid = "gw"\nstate_dir = "{state_dir}"\n')
        self.collectors: list = []
        self.store = store
        self.applied: list[str] = []

    async def commit(self, records):
        return await self.store.append(records)

    async def apply_registry(self, source, actor):
        self.applied.append(source)
        return {"changed": True}

    async def read_now(self, meter):
        raise KeyError(meter)


@pytest.fixture
async def service(tmp_path):
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        lifecycle = DeviceLifecycle(FakeHost(tmp_path, store))
        await lifecycle.start()
        yield lifecycle


async def test_a_key_overlap_that_expired_is_ended_and_the_previous_key_file_removed(service, tmp_path):
    registry = MeterRegistry(tmp_path)
    entry = registry.add("w1", TABLE, source="cli", actor="op", key=KEY)
    registry.move_key(entry, "key_file", "previous_key_file", "prev.key")
    registry.set_key("w1", "F" * 32, actor="op")
    entry["meter"]["key_overlap_until"] = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    registry.save()
    previous = tmp_path / "keys" / "meters" / "w1.prev.key"
    assert previous.exists()
    await service._end_expired_overlaps()
    table = MeterRegistry(tmp_path).find("w1")["meter"]
    assert "previous_key_file" not in table and "key_overlap_until" not in table
    assert not previous.exists() and (tmp_path / "keys" / "meters" / "w1.key").exists()
    assert service.host.applied == ["devices: key overlap ended for w1"]


async def test_a_device_heard_again_is_discovered_once(service, tmp_path):
    found = Discovery("GWY-12345678-01-07", {"id": "12345678", "manufacturer": "GWY"},
                      {"protocol": "wmbus", "id": "12345678"}, datetime.now(timezone.utc))
    assert await service._register_discovered("radio", found) == "GWY-12345678-01-07"
    assert await service._register_discovered("radio", found) is None
    (entry,) = MeterRegistry(tmp_path).entries
    assert (entry["state"], entry["meter"]["bus"], entry["source"]) == ("discovered", "radio", "heard")
    log = await service.host.store.audit_log()
    assert [(e["action"], e["actor"], e["details"]["manufacturer"]) for e in log] == [
        ("device_discovered", "gateway", "GWY")]


async def test_operations_the_state_does_not_allow_are_refused_with_the_reason(service, tmp_path):
    registry = MeterRegistry(tmp_path)
    registry.add("d1", TABLE, source="heard", actor="gateway", state="discovered")
    registry.save()
    with pytest.raises(LifecycleError, match="d1 is discovered: it cannot become suspended"):
        await service.suspend("d1", actor="op")
    with pytest.raises(LifecycleError, match="d1 is discovered, not suspended"):
        await service.resume("d1", actor="op")
    with pytest.raises(LifecycleError, match="not being calibrated"):
        await service.calibrate("d1", "end", actor="op", certificate="C-1")
    with pytest.raises(LifecycleError, match="no device named 'nope'"):
        await service.decommission("nope", actor="op")
    result = await service.decommission("d1", actor="op", reason="a neighbour's meter")
    assert result["state"] == "decommissioned" and service.host.applied == []


def test_devices_list_and_show_work_without_a_daemon_and_changes_need_one(tmp_path, capsys):
    registry = MeterRegistry(tmp_path)
    registry.add("w1", TABLE, source="cli", actor="op", point="MP-1", device="GWY-12345678-01-07")
    registry.save()
    assert main(["devices", "list", "--state-dir", str(tmp_path), "--json"]) == 0
    assert '"name":"w1"' in capsys.readouterr().out
    assert main(["devices", "show", "GWY-12345678-01-07", "--history", "--state-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert '"history":[]' in shown and '"chain_intact":true' in shown
    assert main(["devices", "show", "nope", "--state-dir", str(tmp_path)]) == 2
    assert main(["devices", "suspend", "w1", "--state-dir", str(tmp_path)]) == 1
    assert "the gateway daemon is not running" in capsys.readouterr().err
