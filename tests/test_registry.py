"""The registry's lifecycle: states, the transitions allowed between them, metering points,
keys kept during an overlap, and files written before the lifecycle existed."""

from __future__ import annotations

import json
import threading

import pytest

from gateway.errors import ConfigError
from gateway.registry import (
    ACTIVE_STATES,
    DISCOVERED,
    MAX_DISCOVERED,
    STATES,
    TRANSITIONS,
    MeterRegistry,
    TransitionRefused,
    device_name,
)

KEY = "000102030405060708090A0B0C0D0E0F"
TABLE = {"protocol": "wmbus", "bus": "radio", "id": "12345678", "expected_interval_s": 60}


def test_every_state_has_its_transitions_and_the_two_ends_lead_nowhere():
    assert set(TRANSITIONS) == set(STATES)
    assert all(target in STATES for targets in TRANSITIONS.values() for target in targets)
    assert TRANSITIONS["exchanged"] == TRANSITIONS["decommissioned"] == frozenset()
    assert ACTIVE_STATES == {"commissioned", "in service", "faulty"}


def test_a_discovered_device_is_not_merged_until_it_is_commissioned(tmp_path):
    registry = MeterRegistry(tmp_path)
    entry = registry.add("w1", TABLE, source="heard", actor="gateway", state=DISCOVERED, device="GWY-12345678-01-07")
    assert registry.meter_tables() == [] and entry["history"][0]["action"] == "discovered"
    for state in ("installed", "commissioned"):
        registry.transition(entry, state, actor="op")
    assert [t["name"] for t in registry.meter_tables()] == ["w1"]
    assert [h["action"] for h in entry["history"]] == ["discovered", "installed", "commissioned"]


def test_a_transition_the_state_does_not_allow_is_refused_with_what_is_allowed(tmp_path):
    registry = MeterRegistry(tmp_path)
    entry = registry.add("w1", TABLE, source="heard", actor="gateway", state=DISCOVERED)
    with pytest.raises(TransitionRefused, match="discovered: it cannot become in service .*installed"):
        registry.transition(entry, "in service", actor="op")
    registry.transition(entry, "decommissioned", actor="op")
    with pytest.raises(TransitionRefused, match="its life has ended"):
        registry.transition(entry, "installed", actor="op")


def test_a_failed_check_leaves_an_installed_device_installed_with_the_reason(tmp_path):
    registry = MeterRegistry(tmp_path)
    entry = registry.add("w1", TABLE, source="cli", actor="op", state="installed")
    registry.transition(entry, "installed", actor="op", reason="read: security", action="commissioning failed")
    assert entry["reason"] == "read: security"
    assert entry["history"][-1] == {"at": entry["updated_at"], "action": "commissioning failed", "actor": "op",
                                    "reason": "read: security"}


def test_a_file_written_before_the_lifecycle_still_reads_as_in_service(tmp_path):
    path = tmp_path / "config" / "registry.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"format": 1, "meters": [{
        "id": "x", "name": "old", "state": "in service", "created_at": "t", "updated_at": "t", "source": "cli",
        "meter": {"protocol": "mbus", "bus": "b", "address": 3}, "history": []}]}))
    registry = MeterRegistry(tmp_path)
    assert registry.meter_tables() == [{"name": "old", "protocol": "mbus", "bus": "b", "address": 3}]
    assert registry.points == {} and registry.serving("anything") is None
    registry.save()
    assert json.loads(path.read_text())["format"] == 2


def test_a_device_is_found_by_name_or_by_the_identity_its_readings_carry(tmp_path):
    registry = MeterRegistry(tmp_path)
    registry.add("w1", TABLE, source="cli", actor="op", device="GWY-12345678-01-07", point="MP-1")
    assert registry.get("GWY-12345678-01-07")["name"] == "w1"
    assert registry.serving("MP-1")["name"] == "w1"
    with pytest.raises(ConfigError, match="no device named 'nope'"):
        registry.get("nope")


def test_a_replaced_key_is_kept_as_the_previous_one_and_dropped_files_go_at_save(tmp_path):
    registry = MeterRegistry(tmp_path)
    registry.add("w1", TABLE, source="cli", actor="op", key=KEY)
    registry.save()
    entry = registry.find("w1")
    registry.move_key(entry, "key_file", "previous_key_file", "prev.key")
    registry.set_key("w1", "F" * 32, actor="op")
    registry.save()
    keys = tmp_path / "keys" / "meters"
    assert (keys / "w1.prev.key").read_text().strip() == KEY
    assert (keys / "w1.key").read_text().strip() == "F" * 32
    assert (keys / "w1.prev.key").stat().st_mode & 0o777 == 0o600
    registry.drop_key(entry, "previous_key_file")
    registry.save()
    assert not (keys / "w1.prev.key").exists() and "previous_key_file" not in entry["meter"]


def test_discovered_devices_are_bounded_the_oldest_forgotten(tmp_path, monkeypatch):
    monkeypatch.setattr("gateway.registry.MAX_DISCOVERED", 3)
    registry = MeterRegistry(tmp_path)
    registry.add("kept", TABLE, source="cli", actor="op")
    for number in range(5):
        registry.add(f"d{number}", TABLE, source="heard", actor="gateway", state=DISCOVERED)
    assert [e["name"] for e in registry.entries] == ["kept", "d2", "d3", "d4"]
    assert MAX_DISCOVERED >= 100


def test_two_writers_under_the_lock_lose_nothing(tmp_path):
    def add(names: list[str]) -> None:
        for name in names:
            with MeterRegistry.locked(tmp_path) as registry:
                registry.add(name, TABLE, source="cli", actor="op")
                registry.save()

    threads = [threading.Thread(target=add, args=([f"{side}{n}" for n in range(15)],)) for side in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(MeterRegistry(tmp_path).entries) == 30


@pytest.mark.parametrize(("identity", "name"), [("GWY-12345678-01-07", "GWY-12345678-01-07"),
                                                ("@@@-12345678-00-0f", "x-12345678-00-0f")])
def test_a_discovered_device_is_named_by_its_identity_as_a_name_may_be_written(identity, name):
    assert device_name(identity) == name
