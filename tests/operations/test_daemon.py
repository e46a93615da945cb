"""Operations against a real ``gateway run``: the command line through the control socket,
and a daemon killed (SIGKILL) after an ACTION was marked started and sent but before its
answer came: after the restart it is reported ``unknown`` and never sent again, while what
was queued behind it survives and runs."""

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
from gateway.simulators.dlms import ControlState, MeterServer, SimulatedDlmsMeter
from gateway.store import Store
from tests.app.test_operations import gateway_cli
from tests.operations.e2e import gateway_config
from tests.operations.helpers import events_of

pytestmark = pytest.mark.integration


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:
        daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", "--config", str(config),
                                                      stdout=out, stderr=out, env={**os.environ,
                                                                                   "PYTHONUNBUFFERED": "1"})
    state = config.parent / "state"
    async with asyncio.timeout(30):
        while True:
            try:
                answer = await request(state, "status", timeout_s=5)
                if (answer.get("result") or {}).get("operations") is not None:
                    return daemon
            except GatewayError:
                pass
            await asyncio.sleep(0.1)


async def operation(state: Path, id_: int) -> dict:
    async with Store(state / "store.sqlite", StoreSection(), read_only=True) as store:
        from gateway.operations.queue import OperationQueue
        from gateway.operations.relay import result_event

        found = await OperationQueue(lambda: store, result_event, lambda: None).get(id_)
        return found.to_json() if found else {}


async def until(condition, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_a_daemon_killed_mid_operation_reports_it_unknown_after_restart_and_never_repeats_it(tmp_path):
    meter = SimulatedDlmsMeter(action_delay_s=30)  # carries the ACTION out at once, answers much later
    server = MeterServer(meter)
    await server.start()
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_config(tmp_path, server.address, None, dlms_server=False,
                                     relay={"retry_s": 0.3}).replace("response_timeout_ms = 1000",
                                                                     "response_timeout_ms = 60000"))
    state = tmp_path / "state"
    log = tmp_path / "daemon.log"
    daemon = await start_daemon(config, log)
    try:
        code, out, err = await gateway_cli("op", "submit", "m1", "disconnect", "--config", str(config), "--json")
        assert code == 0, err
        submitted = json.loads(out)
        assert submitted["state"] == "queued" and submitted["source"].startswith("cli:")
        code, out, err = await gateway_cli("op", "submit", "m1", "disconnect-state", "--config", str(config), "--json")
        behind = json.loads(out)

        async def sent_and_started() -> bool:
            return bool(meter.actions(70)) and (await operation(state, submitted["id"]))["state"] == "started"

        await until(sent_and_started)
        daemon.send_signal(signal.SIGKILL)  # between "started" and the answer
        await daemon.wait()
        assert meter.disconnect.state is ControlState.DISCONNECTED  # the meter did carry it out

        meter.action_delay_s = 0
        daemon = await start_daemon(config, log)
        await until(lambda: _state_is(state, behind["id"], "done"))
        interrupted = await operation(state, submitted["id"])
        assert interrupted["state"] == "done" and interrupted["outcome"] == "unknown"
        assert "not repeated" in interrupted["error"]
        assert (await operation(state, behind["id"]))["outcome"] == "success"  # queued behind it: kept, then run

        # the command line waits for an outcome through the running daemon
        code, out, err = await gateway_cli("op", "submit", "m1", "reconnect", "--config", str(config), "--wait",
                                           "--json")
        assert code == 0, err
        assert json.loads(out)["outcome"] == "success" and meter.disconnect.output_state
        code, out, err = await gateway_cli("op", "list", "--config", str(config), "--json")
        assert [(o["operation"], o["outcome"]) for o in json.loads(out)] == [
            ("reconnect", "success"), ("disconnect-state", "success"), ("disconnect", "unknown")]
        assert meter.actions(70) == [(70, "0.0.96.3.10.255", 1), (70, "0.0.96.3.10.255", 2)]  # never again
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.wait(), 60)
        await server.stop()
    assert daemon.returncode == 0, log.read_text()[-2000:]
    async with Store(state / "store.sqlite", StoreSection(), read_only=True) as store:
        outcomes = [(e.details["id"], e.details["outcome"]) for e in await events_of(store, "operation.result")]
    assert outcomes == [(submitted["id"], "unknown"), (behind["id"], "success"), (behind["id"] + 1, "success")]


async def _state_is(state: Path, id_: int, wanted: str) -> bool:
    return (await operation(state, id_)).get("state") == wanted
