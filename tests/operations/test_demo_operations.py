"""The demo's simulated DLMS electricity meter is operated with `gateway op` through the
running demo's control socket."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.app.test_operations import gateway_cli

pytestmark = pytest.mark.integration


async def test_the_demo_meter_is_disconnected_and_reconnected_with_gateway_op(tmp_path):
    from tests.mqtt_broker import free_port

    state = tmp_path / "state"
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--duration", "30", "--state-dir", str(state),
        "--dlms-port", str(free_port()), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            while not (state / "control.sock").exists():
                await asyncio.sleep(0.1)
        outcomes = []
        for operation in ("disconnect", "reconnect"):
            code, out, err = await gateway_cli("op", "submit", "electricity-1", operation, "--state-dir", str(state),
                                               "--wait", "--timeout-s", "60", "--json")
            assert code == 0, err
            outcomes.append(json.loads(out))
    finally:
        demo.terminate()
        async with asyncio.timeout(60):
            await demo.communicate()
    assert [(o["operation"], o["outcome"]) for o in outcomes] == [("disconnect", "success"), ("reconnect", "success")]
    assert [r["data"] for r in outcomes[0]["results"][1:]] == [{"type": "boolean", "value": False},
                                                              {"type": "enum", "value": 0}]
