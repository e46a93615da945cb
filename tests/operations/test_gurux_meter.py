"""The relay against the independent DLMS/COSEM meter (tests/peers/dlms-meter, gurux-dlms
1.0.203 behind the wrapper): what works there. GETs work; gurux answers every SET with
hardware-fault (its server cannot write a Register's or the Clock's attributes: the meter's
answer is relayed as it is, and nothing changes); it refuses the Clock's
adjust_to_quarter with read-write-denied; a Register's reset (ACTION) succeeds, after which
gurux can no longer encode the register's value (hardware-fault on GET)."""

from __future__ import annotations

import pytest

from gateway.operations import Outcome
from tests.operations.helpers import rig

pytestmark = pytest.mark.integration

CLOCK = {"class": 8, "obis": "0.0.1.0.0.255", "attribute": 2}
ENERGY = {"class": 3, "obis": "1.0.1.8.0.255", "attribute": 2}


async def test_gets_sets_and_actions_on_the_gurux_meter_carry_its_own_answers(tmp_path, dlms_meter):
    host, port = dlms_meter
    async with rig(tmp_path, address=f"{host}:{port}", line_options={"response_timeout_ms": 3000}) as r:
        async def run(name, args):
            done = await r.outcome(await r.submit(name, args), 30)
            return done.outcome, done.results[0]

        outcome, clock = await run("get", CLOCK)
        assert outcome is Outcome.SUCCESS and clock["data"]["type"] == "octet-string"
        assert len(bytes.fromhex(clock["data"]["value"])) == 12
        assert await run("get", ENERGY) == (Outcome.SUCCESS, {
            "request": "GET 1.0.1.8.0.255 class 3 attribute 2", "result": "success", "code": 0,
            "data": {"type": "double-long-unsigned", "value": 1234567}})
        outcome, written = await run("set", {**ENERGY, "data": {"type": "double-long-unsigned", "value": 5}})
        assert (outcome, written["result"], written["code"]) == (Outcome.DATA_ACCESS_RESULT, "hardware-fault", 1)
        assert (await run("get", ENERGY))[1]["data"]["value"] == 1234567  # unchanged
        outcome, adjusted = await run("clock-set", {"adjust": "quarter"})
        assert (outcome, adjusted["result"]) == (Outcome.DATA_ACCESS_RESULT, "read-write-denied")
        outcome, reset = await run("action", {"class": 3, "obis": "1.0.1.8.0.255", "method": 1,
                                              "data": {"type": "integer", "value": 0}})
        assert (outcome, reset["result"]) == (Outcome.SUCCESS, "success")
        assert (await run("get", ENERGY))[1]["result"] == "hardware-fault"
        assert [e.details["outcome"] for e in await r.events("operation.result")] == [
            "success", "success", "data-access-result", "success", "data-access-result", "success",
            "data-access-result"]
