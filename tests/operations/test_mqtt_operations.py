"""Operations from an HES over MQTT, end to end: a real Mosquitto whose ACL ties each HES to
its identity topic, the whole gateway, the simulated DLMS meter. Each named operation is
answered "queued" with an id, carried out on the meter, and its outcome arrives as a signed
``operation.result`` event and through ``op-status``; refusals are security events."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from gateway.signing import SigningKey
from gateway.simulators.dlms import ControlState, SimulatedDlmsMeter
from tests.operations.e2e import acl_broker, hes, running_gateway, verified_records

pytestmark = pytest.mark.integration

PERMISSIONS = """
[[operations.permissions]]
identity = "hes-a"
operations = ["*"]
meters = ["m*"]
[[operations.permissions]]
identity = "hes-b"
operations = ["get", "disconnect-state"]
"""


async def run(a, operation: str, args: dict | None = None, **extra) -> dict:
    """Submit over MQTT, check the "queued" answer, return the outcome event's details."""
    answer = await a.ask("op", {"meter": "m1", "operation": operation, "args": args or {}, **extra})
    assert answer["ok"], answer
    assert answer["result"]["state"] == "queued" and answer["result"]["operation"] == operation
    event = await a.outcome(answer["result"]["id"])
    return event["details"]


async def test_every_named_operation_from_mqtt_reaches_the_meter_and_reports_its_outcome(tmp_path):
    image = os.urandom(64 * 6 + 10)
    digest = hashlib.sha256(image).hexdigest()
    with acl_broker(tmp_path) as broker:
        async with running_gateway(tmp_path, broker, SimulatedDlmsMeter(clock_offset_s=-300),
                                   operations=PERMISSIONS) as g, hes(broker, "hes-a") as a:
            meter = g.meter
            assert (await run(a, "disconnect"))["outcome"] == "success"
            assert meter.disconnect.state is ControlState.DISCONNECTED
            assert (await run(a, "reconnect"))["outcome"] == "success" and meter.disconnect.output_state
            details = await run(a, "limiter", {"threshold_normal": 4000, "min_over_threshold_duration_s": 90})
            assert details["outcome"] == "success" and meter.limiter.values[4].value == 4000
            details = await run(a, "calendar", {"name": "tou-2", "seasons": [{"name": "all", "start": "01-01",
                                                                              "week": "w"}],
                                                "weeks": [{"name": "w", "days": [1] * 7}],
                                                "days": [{"id": 1, "actions": [{"start": "07:00",
                                                                                "script": "0.0.10.0.100.255",
                                                                                "selector": 1}]}],
                                                "activate_at": "now"})
            assert details["outcome"] == "success" and meter.calendar.active[2].value == b"tou-2"
            assert (await run(a, "clock-set", {"time": "now"}))["outcome"] == "success"
            assert abs(meter.clock_offset_s) < 2
            assert (await run(a, "message", {"text": "hello"}))["outcome"] == "success"
            assert meter.message.get(2).value == b"hello"
            details = await run(a, "get", {"class": 3, "obis": "1.0.1.8.0.255", "attribute": 2})
            assert '"type":"double-long-unsigned"' in details["results"]
            # firmware: the image uploaded in chunks, then transferred
            for offset in range(0, len(image), 150):
                chunk = base64.b64encode(image[offset:offset + 150]).decode()
                answer = await a.ask("op-image", {"sha256": digest, "size": len(image), "offset": offset,
                                                  "data": chunk})
                assert answer["ok"], answer
            assert answer["result"] == {"sha256": digest, "size": len(image), "received": len(image),
                                        "complete": True}
            details = await run(a, "firmware", {"image": digest, "identifier": "FW-9"})
            assert details["outcome"] == "success" and meter.firmware == b"FW-9" and meter.firmware_image == image
            assert '"phase":"done"' in details["progress"]
            # op-status: one operation, and the list
            status = await a.ask("op-status", {"id": 1}, identity=None)
            assert status["result"]["outcome"] == "success" and status["result"]["identity"] == "hes-a"
            listed = await a.ask("op-status", {"meter": "m1", "limit": 3}, identity=None)
            assert [o["operation"] for o in listed["result"]["operations"]] == ["firmware", "get", "message"]
            # the outcome events are signed by the gateway
            key = SigningKey.load_or_create(tmp_path / "state" / "keys" / "signing-key.pem")
            signed = [r for raw in a.raw_events for r in verified_records(raw, key.public_pem().encode())]
            assert sum(r["code"] == "operation.result" for r in signed) == 8


async def test_refused_operations_are_answered_refused_and_raise_security_events(tmp_path):
    with acl_broker(tmp_path) as broker:
        async with running_gateway(tmp_path, broker, operations=PERMISSIONS) as g, \
                hes(broker, "hes-a") as a, hes(broker, "hes-b") as b:
            answer = await b.ask("op", {"meter": "m1", "operation": "disconnect"})
            assert not answer["ok"] and "refused: not permitted: hes-b may not run disconnect on meter m1" in \
                answer["error"]
            event = await b.event(lambda e: e.get("code") == "security.refused")
            assert event["details"] == {"identity": "hes-b", "operation": "disconnect", "meter": "m1",
                                        "reason": "not permitted"}
            refused = await b.event(lambda e: e.get("code") == "operation.result")
            assert refused["details"]["outcome"] == "refused"
            # a permitted read works for hes-b
            answer = await b.ask("op", {"meter": "m1", "operation": "disconnect-state"})
            assert (await b.outcome(answer["result"]["id"]))["details"]["outcome"] == "success"
            # no identity: refused
            answer = await a.ask("op", {"meter": "m1", "operation": "disconnect"}, identity=None)
            assert not answer["ok"] and "cmd/op/IDENTITY" in answer["error"]
            await a.event(lambda e: e.get("code") == "security.refused" and e["details"].get("reason") == "no identity")
            # hes-b posing as hes-a: the broker drops it (the ACL), the gateway never sees it
            await b.publish("op", {"meter": "m1", "operation": "disconnect"}, identity="hes-a")
            answer = await b.ask("op", {"meter": "m1", "operation": "disconnect-state"})  # after it, in order
            assert answer["ok"]
            assert "Denied PUBLISH from test-hes-b" in broker.log_tail(400)
            identities = {o.request.identity for o in await g.gateway.relay.queue.list()}
            assert identities == {"hes-b"} and g.meter.disconnect.output_state
            assert g.meter.disconnect.state is ControlState.CONNECTED
            # a cancel of another's operation needs "cancel"
            await g.meter_server.stop()
            queued = await a.ask("op", {"meter": "m1", "operation": "disconnect"})
            answer = await b.ask("op-cancel", {"id": queued["result"]["id"]})
            assert not answer["ok"] and "may not cancel" in answer["error"]
            answer = await a.ask("op-cancel", {"id": queued["result"]["id"]})
            assert answer["ok"] and answer["result"]["outcome"] == "cancelled"
