"""`gateway demo` runs the real pipeline against simulated meters and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal

import pytest

from gateway.cli import main


def run_demo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "demo", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_timed_demo_prints_committed_readings_and_a_summary_and_exits_0(tmp_path):
    state = tmp_path / "state"
    result = run_demo("--duration", "8", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if " event " not in line]
    devices = {line[1] for line in lines}
    assert devices == {"GWY-10000001-01-04", "GWY-10000002-01-04", "GWY-10000003-01-04",  # wired heat meters
                       "GWY-20000001-01-07", "GWY-20000002-01-07"}  # encrypted wireless water meters
    assert any(line[2] == "energy" and line[-1] == "Wh" for line in lines)
    assert "see them with: gateway readings" in result.stderr
    assert (state / "store.sqlite").exists() and (state / "keys" / "signing-key.pem").exists()


def test_the_state_directory_carries_over_and_sequence_numbers_continue(tmp_path, capsys):
    state = tmp_path / "state"
    assert run_demo("--duration", "6", "--state-dir", str(state)).returncode == 0
    assert main(["readings", "--state-dir", str(state), "--format", "json"]) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert run_demo("--duration", "6", "--state-dir", str(state)).returncode == 0
    assert main(["readings", "--state-dir", str(state), "--format", "json"]) == 0
    both = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert both[: len(first)] == first
    seqs = [r["seq"] for r in both]
    assert seqs == sorted(set(seqs)) and len(both) > len(first)


@pytest.mark.parametrize("device, quantity", [("GWY-10000001-01-04", "energy"), ("GWY-20000001-01-07", "volume")])
def test_a_demo_meter_counter_never_goes_backwards_across_runs(tmp_path, capsys, device, quantity):
    state = tmp_path / "state"
    for _ in range(2):
        assert run_demo("--duration", "6", "--state-dir", str(state)).returncode == 0
    assert main(["readings", "--state-dir", str(state), "--device", device, "--format", "json"]) == 0
    values = [Decimal(json.loads(line)["value"]) for line in capsys.readouterr().out.splitlines()
              if json.loads(line)["quantity"] == quantity]
    assert len(values) >= 2 and values == sorted(values)


def test_the_demo_key_file_is_readable_only_by_its_owner(tmp_path):
    state = tmp_path / "state"
    assert run_demo("--duration", "3", "--state-dir", str(state)).returncode == 0
    assert (state / "keys" / "demo-wmbus.key").stat().st_mode & 0o077 == 0


@pytest.mark.integration
async def test_a_demo_with_mqtt_publishes_everything_it_committed_signed(tmp_path, mosquitto):
    from tests.hes import received_records
    from tests.mqtt_broker import Subscriber

    state = tmp_path / "state"
    async with Subscriber(mosquitto, "metering/demo-gateway/+") as subscriber:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "demo", "--duration", "8", "--state-dir", str(state),
            "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(90):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        stored = await stored_records(state)
        key = state / "keys" / "signing-key.pem"
        await subscriber.wait_for(lambda messages: set(stored) <= set(received_records(messages, key)))
        received = received_records(subscriber.messages, key)
    assert set(stored) <= set(received)
    assert all(received[seq] == stored[seq] for seq in received if seq in stored)
    assert "0 not yet sent" in err.decode()


async def stored_records(state) -> dict[int, dict]:
    """Every record in the store, in the JSON form the HES receives, by seq."""
    from gateway.config import StoreSection
    from gateway.payload import record_json
    from gateway.store import Store

    async with Store(state / "store.sqlite", StoreSection(), read_only=True) as store:
        return {r.seq: record_json(r) for r in await store.read_after(0, 1_000_000)}
