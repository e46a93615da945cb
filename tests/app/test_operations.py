"""Operator workflows end to end: a real `gateway run` polling simulated M-Bus meters,
switched to new configurations with `gateway config apply`, `gateway meters` and SIGHUP,
and rolled back when a new configuration does not start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from gateway.config import StoreSection
from gateway.control import request
from gateway.errors import GatewayError
from gateway.demo import _heat_meter
from gateway.model import Event
from gateway.simulators.mbus import Pacing, SimulatedBus, SimulatedSlave, serve_pty
from gateway.store import Store
from gateway.transports import LineSettings

pytestmark = pytest.mark.integration

KEY = "000102030405060708090A0B0C0D0E0F"


def config_text(state_dir: Path, port: str, meters: list[int], *, extra: str = "") -> str:
    lines = ["[gateway]", 'id = "gw-ops"', f'state_dir = "{state_dir}"', "apply_grace_s = 3", "",
             "[[buses]]", 'name = "mbus1"', 'protocol = "mbus"', f'port = "{port}"', "baud = 9600", ""]
    for address in meters:
        lines += ["[[meters]]", f'name = "m{address}"', 'protocol = "mbus"', 'bus = "mbus1"', f"address = {address}",
                  "[meters.schedule]", "interval_s = 1", ""]
    return "\n".join(lines) + extra


async def gateway_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def status(state_dir: Path) -> dict:
    """The running daemon's status, asked on its control socket ({} while it does not answer)."""
    try:
        answer = await request(state_dir, "status", timeout_s=10)
    except GatewayError as exc:
        return {"error": str(exc)}
    return answer.get("result", answer)


async def until(condition, timeout_s: float = 30.0, message=None) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await condition():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"condition not met; {await message() if message else ''}") from None


async def reads(state_dir: Path, meter: str) -> int:
    return (await status(state_dir)).get("buses", {}).get("mbus1", {}).get("meters", {}).get(meter, {}).get("reads", 0)


async def stored_events(store_path: Path) -> list[Event]:
    async with Store(store_path, StoreSection(), read_only=True) as store:
        return [s.record for s in await store.read_after(0, 100_000) if isinstance(s.record, Event)]


@pytest.fixture
async def meters_on_a_pty():
    slaves = [SimulatedSlave(address, _heat_meter(address)) for address in (1, 2, 3)]
    async with serve_pty(SimulatedBus(slaves), Pacing(LineSettings(9600))) as server:
        yield server.path


async def test_apply_switches_the_daemon_rolls_back_a_failing_config_and_picks_up_registry_and_sighup(
        tmp_path, meters_on_a_pty):
    state = tmp_path / "state"
    operator = tmp_path / "gateway.toml"
    operator.write_text(config_text(state, meters_on_a_pty, [1]))
    log = open(tmp_path / "daemon.log", "wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", "--config", str(operator),
                                                  stdout=log, stderr=log, env=env)
    try:
        await until(lambda: _at_least(reads(state, "m1"), 1))

        # a changed meter list, applied while the daemon runs
        two = tmp_path / "two.toml"
        two.write_text(config_text(state, meters_on_a_pty, [1, 2]))
        code, out, err = await gateway_cli("config", "apply", str(two), "--config", str(operator))
        assert code == 0, err
        assert "runs (version 2" in out
        await until(lambda: _at_least(reads(state, "m2"), 1))

        # a configuration whose bus port does not exist: refused after trying, the old bus runs again
        broken = tmp_path / "broken.toml"
        broken.write_text(config_text(state, "/dev/ttyDOESNOTEXIST", [1, 2]))
        code, out, err = await gateway_cli("config", "apply", str(broken), "--config", str(operator))
        assert code == 1 and "not applied" in err and "ttyDOESNOTEXIST" in err
        before = await reads(state, "m2")
        await until(lambda: _at_least(reads(state, "m2"), before + 2))
        assert (await status(state))["config"]["number"] == 2

        # a meter registered with `gateway meters add`, picked up by the running daemon
        code, out, err = await gateway_cli("meters", "add", "m3", "--protocol", "mbus", "--bus", "mbus1",
                                           "--address", "3", "--interval-s", "1", "--config", str(operator))
        assert code == 0, err
        await until(lambda: _at_least(reads(state, "m3"), 1), message=lambda: status(state))

        # the operator edits the file and sends SIGHUP: only meter 1 from the file, m3 from the registry
        operator.write_text(config_text(state, meters_on_a_pty, [1], extra="# edited: m2 is gone\n"))
        daemon.send_signal(signal.SIGHUP)
        await until(lambda: _meters_are(state, {"m1", "m3"}))
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.wait(), 60)
        log.close()
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()[-2000:]

    events = await stored_events(state / "store.sqlite")
    codes = [e.code for e in events]
    changed = [e for e in events if e.code == "config.changed"]
    assert [e.details["source"] for e in changed][:2] == ["operator file", f"cli: {two}"]
    assert changed[1].details["old_hash"] == changed[0].details["new_hash"]
    (rolled_back,) = [e for e in events if e.code == "config.rolled_back"]
    assert "ttyDOESNOTEXIST" in rolled_back.details["reason"]
    assert rolled_back.details["old_hash"] == changed[1].details["new_hash"]
    assert codes.count("audit.config_applied") >= 3 and "audit.meter_added" in codes
    stop = [e for e in events if e.code == "gateway.stop"][-1]
    assert stop.details["reason"] == "signal SIGTERM"
    versions = json.loads((state / "config" / "index.json").read_text())
    assert versions["active"]["hash"] == changed[-1].details["new_hash"]
    assert (state / "config" / "active.toml").read_text() == operator.read_text()


async def _at_least(count, minimum: int) -> bool:
    return await count >= minimum


async def _meters_are(state: Path, names: set[str]) -> bool:
    return set((await status(state)).get("buses", {}).get("mbus1", {}).get("meters", {})) == names


def offline_config(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", 'id = "gw-ops"', f'state_dir = "{state}"', "",
        "[[buses]]", 'name = "mbus1"', 'protocol = "mbus"', 'tcp = "127.0.0.1:1"', "",
        "[[buses]]", 'name = "radio"', 'protocol = "wmbus"', 'port = "/dev/ttyUSB9"', 'dongle = "imst"', "",
        "[[meters]]", 'name = "from-file"', 'protocol = "mbus"', 'bus = "mbus1"', "address = 1", ""]))
    return path


async def test_meters_import_add_list_remove_writes_keys_0600_and_never_prints_them(tmp_path, caplog):
    config = offline_config(tmp_path)
    csv_file = tmp_path / "meters.csv"
    csv_file.write_text("name,protocol,bus,id,manufacturer,key,expected_interval_s,address\n"
                        f"water-1,wmbus,radio,12345678,KAM,{KEY},900,\n"
                        f"water-2,wmbus,radio,12345679,KAM,{KEY.lower()},900,\n"
                        "heat-2,mbus,mbus1,,,,,2\n")
    code, out, err = await gateway_cli("meters", "import", str(csv_file), "--config", str(config))
    assert code == 0, err
    assert "3 meters imported" in out
    key_file = tmp_path / "state" / "keys" / "meters" / "water-1.key"
    assert key_file.read_text().strip() == KEY and key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700

    code, out, err = await gateway_cli("meters", "list", "--json", "--config", str(config))
    assert code == 0, err
    listed = {row["name"]: row for row in json.loads(out)}
    assert set(listed) == {"from-file", "water-1", "water-2", "heat-2"}
    assert listed["water-1"]["key"] == "yes" and listed["water-1"]["state"] == "in service"
    assert listed["from-file"]["source"] == "configuration"
    assert listed["heat-2"]["source"].startswith("registry (import:")

    key_path = tmp_path / "new.key"
    key_path.write_text("F" * 32 + "\n")
    key_path.chmod(0o600)
    code, out, err = await gateway_cli("meters", "set-key", "water-2", "--key-file", str(key_path),
                                       "--config", str(config))
    assert code == 0, err
    assert (tmp_path / "state" / "keys" / "meters" / "water-2.key").read_text().strip() == "F" * 32

    # a name that the file uses already is refused, and nothing changes
    code, out, err = await gateway_cli("meters", "add", "from-file", "--protocol", "mbus", "--bus", "mbus1",
                                       "--address", "9", "--config", str(config))
    assert code == 2 and "unique" in err
    code, out, err = await gateway_cli("meters", "remove", "water-1", "--config", str(config))
    assert code == 0, err
    assert not key_file.exists()
    code, out, err = await gateway_cli("meters", "list", "--json", "--config", str(config))
    assert {row["name"] for row in json.loads(out)} == {"from-file", "water-2", "heat-2"}

    code, out, err = await gateway_cli("audit", "--json", "--config", str(config))
    assert code == 0, err
    audit = json.loads(out)
    assert audit["chain_intact"] is True
    assert [e["action"] for e in audit["entries"]].count("meter_key_changed") == 3
    everything = out + err + (tmp_path / "state" / "config" / "registry.json").read_text()
    for text in (everything, *(e.getMessage() for e in caplog.records)):
        assert KEY not in text.upper() and "F" * 32 not in text


async def test_a_modbus_meter_is_added_with_its_unit_and_map_and_a_map_that_does_not_exist_is_refused(tmp_path):
    config = offline_config(tmp_path)
    config.write_text(config.read_text() + "\n".join([
        "", "[[buses]]", 'name = "rs485"', 'protocol = "modbus"', 'tcp = "127.0.0.1:2"', ""]))
    code, out, err = await gateway_cli("meters", "add", "sub-1", "--protocol", "modbus", "--bus", "rs485",
                                       "--unit", "7", "--map", "sdm630", "--config", str(config))
    assert code == 0, err
    code, out, err = await gateway_cli("meters", "add", "sub-2", "--protocol", "modbus", "--bus", "rs485",
                                       "--unit", "8", "--map", "no-such-meter", "--config", str(config))
    assert code == 2 and "no shipped register map is named 'no-such-meter'" in err
    table = tmp_path / "sub-3.toml"
    table.write_text('protocol = "modbus"\nbus = "rs485"\nunit = 9\nmap = "abb-b23"\n')
    code, out, err = await gateway_cli("meters", "add", "sub-3", "--meter-file", str(table), "--unit", "10",
                                       "--config", str(config))
    assert code == 0, err

    code, out, err = await gateway_cli("meters", "list", "--json", "--config", str(config))
    assert code == 0, err
    assert {row["name"] for row in json.loads(out)} == {"from-file", "sub-1", "sub-3"}
    registry = json.loads((tmp_path / "state" / "config" / "registry.json").read_text())
    meters = {entry["name"]: entry["meter"] for entry in registry["meters"]}
    assert meters["sub-1"] == {"protocol": "modbus", "bus": "rs485", "unit": 7, "map": "sdm630"}
    assert meters["sub-3"] == {"protocol": "modbus", "bus": "rs485", "unit": 10, "map": "abb-b23"}


async def test_a_bad_key_in_the_csv_is_refused_with_its_line_and_without_the_key(tmp_path):
    config = offline_config(tmp_path)
    csv_file = tmp_path / "meters.csv"
    csv_file.write_text("name,protocol,bus,id,key,expected_interval_s\nw,wmbus,radio,12345678,SECRETSECRET,900\n")
    code, out, err = await gateway_cli("meters", "import", str(csv_file), "--config", str(config))
    assert code == 2 and f"{csv_file}:2: key" in err and "SECRETSECRET" not in err + out
    assert not (tmp_path / "state" / "config" / "registry.json").exists()


async def test_key_rotation_keeps_the_old_public_key_exportable_and_is_audited(tmp_path):
    config = offline_config(tmp_path)
    code, first, err = await gateway_cli("keys", "generate", "--config", str(config))
    assert code == 0, err
    code, second, err = await gateway_cli("keys", "rotate", "--config", str(config))
    assert code == 0, err
    assert second.strip() != first.strip()
    code, out, err = await gateway_cli("keys", "export", "--all", "--format", "jwk", "--config", str(config))
    kids = [key["kid"] for key in json.loads(out)["keys"]]
    assert kids == [second.strip(), first.strip()]
    code, out, err = await gateway_cli("audit", "--json", "--config", str(config))
    (entry,) = json.loads(out)["entries"]
    assert entry["action"] == "key_rotated" and entry["details"] == {"old_kid": first.strip(),
                                                                      "new_kid": second.strip()}
    events = await stored_events(tmp_path / "state" / "store.sqlite")
    assert [e.code for e in events] == ["audit.key_rotated"]
    assert events[0].details["audit_hash"] == entry["hash"]
