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
                       "GWY-20000001-01-07", "GWY-20000002-01-07",  # encrypted wireless water meters
                       "dlms-DEMO000000000001"}  # the DLMS electricity meter
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


def test_the_demo_key_files_are_readable_only_by_their_owner(tmp_path):
    state = tmp_path / "state"
    assert run_demo("--duration", "3", "--state-dir", str(state)).returncode == 0
    for name in ("demo-key", "demo-ek", "demo-ak"):
        assert (state / "keys" / f"{name}.key").stat().st_mode & 0o077 == 0


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


@pytest.mark.integration
async def test_an_hes_reads_the_demo_over_dlms_with_the_green_book_keys(tmp_path):
    """The demo serves DLMS/COSEM: the gateway's own client, as an HES would, associates
    with HLS-GMAC and suite 0, finds the meters in the SAP list and reads a register whose
    value is one the store holds."""
    from tests.mqtt_broker import free_port

    state, port = tmp_path / "state", free_port()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--duration", "14", "--state-dir", str(state),
        "--dlms-port", str(port), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until_listening(port)
        await asyncio.sleep(6)  # a few polls, so every meter has readings
        sap_list = await hes_read(state, port, 1, "0.0.41.0.0.255:17:2")
        saps = {int(sap): bytes.fromhex(name).decode() for sap, name in json.loads(sap_list["values"][0]["value"])}
        water_sap = next(sap for sap, name in saps.items() if name.startswith("GWY20000001"))
        register = await hes_read(state, port, water_sap, "0-0:128.0.0*255")
    finally:
        async with asyncio.timeout(60):
            _, err = await demo.communicate()
    assert demo.returncode == 0, err.decode()
    stored = await stored_records(state)
    volumes = {r["value"] for r in stored.values()
               if r.get("device") == "GWY-20000001-01-07" and r.get("quantity") == "volume"}
    assert register["values"][0]["unit"] == "m^3"
    assert register["values"][0]["value"] in volumes


async def wait_until_listening(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            writer.close()
            return


async def hes_read(state, port: int, sap: int, *objects: str) -> dict:
    keys = state / "keys"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "read", "dlms", "--tcp", f"127.0.0.1:{port}", "--client-sap", "1",
        "--server-address", str(sap), "--auth", "gmac", "--secure", "--ek-file", str(keys / "demo-ek.key"),
        "--ak-file", str(keys / "demo-ak.key"), "--state-dir", str(state.parent / "hes"), *objects,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)
