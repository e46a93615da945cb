"""The relay against the simulated meter, on the real DLMS collector and store: each named
operation, in order per meter, queued while the meter is down, expiry, cancellation,
timeouts (GETs retried, an ACTION not repeated), permissions."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from gateway.codecs.dlms.axdr import Data, DataType
from gateway.config import OperationPermission
from gateway.operations import OperationError, Outcome, State
from gateway.simulators.dlms import ControlState, SimulatedDlmsMeter
from tests.operations.helpers import SIM_DEVICE, results_of, rig


async def test_a_disconnect_opens_the_relay_and_reads_its_state_back(tmp_path):
    async with rig(tmp_path) as r:
        done = await r.outcome(await r.submit("disconnect"))
        assert done.outcome is Outcome.SUCCESS
        assert r.meter.disconnect.state is ControlState.DISCONNECTED
        assert [res["result"] for res in done.results] == ["success"] * 3
        assert [res["data"] for res in done.results[1:]] == [{"type": "boolean", "value": False},
                                                            {"type": "enum", "value": 0}]
        [event] = await r.events("operation.result")
        assert event.details["outcome"] == "success" and event.details["operation"] == "disconnect"
        assert event.device == SIM_DEVICE and event.details["id"] == done.id
        assert results_of(event)[0]["request"] == "ACTION 0.0.96.3.10.255 class 70 method 1"
        assert done.event_seq is not None
        done = await r.outcome(await r.submit("reconnect"))
        assert done.outcome is Outcome.SUCCESS and r.meter.disconnect.output_state


async def test_limiter_thresholds_and_durations_are_written_and_read_back(tmp_path):
    async with rig(tmp_path) as r:
        done = await r.outcome(await r.submit("limiter", {
            "threshold_normal": 5000, "threshold_emergency": {"type": "long-unsigned", "value": 2000},
            "min_over_threshold_duration_s": 60, "min_under_threshold_duration_s": 30}))
        assert done.outcome is Outcome.SUCCESS
        values = r.meter.limiter.values
        assert (values[4], values[5], values[6], values[7]) == (
            Data(DataType.DOUBLE_LONG_UNSIGNED, 5000), Data(DataType.LONG_UNSIGNED, 2000),
            Data(DataType.DOUBLE_LONG_UNSIGNED, 60), Data(DataType.DOUBLE_LONG_UNSIGNED, 30))
        assert [res["data"]["value"] for res in done.results if res.get("readback")] == [5000, 2000, 60, 30]


CALENDAR = {
    "name": "summer-2026",
    "seasons": [{"name": "winter", "start": "01-01", "week": "wk"}, {"name": "summer", "start": "04-01", "week": "wk"}],
    "weeks": [{"name": "wk", "days": [1, 1, 1, 1, 1, 2, 2]}],
    "days": [{"id": 1, "actions": [{"start": "06:00", "script": "0.0.10.0.100.255", "selector": 1},
                                   {"start": "22:00", "script": "0.0.10.0.100.255", "selector": 2}]},
             {"id": 2, "actions": [{"start": "00:00", "script": "0.0.10.0.100.255", "selector": 2}]}],
}


async def test_a_tariff_calendar_is_written_passive_and_activated_now(tmp_path):
    async with rig(tmp_path) as r:
        done = await r.outcome(await r.submit("calendar", {**CALENDAR, "activate_at": "now"}))
        assert done.outcome is Outcome.SUCCESS
        calendar = r.meter.calendar
        assert calendar.activations == 1 and calendar.active[2].value == b"summer-2026"
        seasons = calendar.active[3].to_python()
        assert [s[0] for s in seasons] == [b"winter", b"summer"] and seasons[1][1][:6] == bytes.fromhex("ffff0401ff00")
        assert calendar.active[4].to_python() == [[b"wk", 1, 1, 1, 1, 1, 2, 2]]
        assert calendar.active[5].to_python()[0] == [1, [[bytes.fromhex("06000000"), bytes.fromhex("00000a0064ff"), 1],
                                                         [bytes.fromhex("16000000"), bytes.fromhex("00000a0064ff"), 2]]]
        assert [(kind, index) for kind, c, _, index in r.meter.requests if c == 20] == [
            ("set", 6), ("set", 7), ("set", 8), ("set", 9), ("action", 1)]


async def test_a_tariff_calendar_activated_at_a_time_waits_for_the_meter_clock(tmp_path):
    async with rig(tmp_path) as r:
        at = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
        done = await r.outcome(await r.submit("calendar", {**CALENDAR, "activate_at": at.isoformat()}))
        assert done.outcome is Outcome.SUCCESS and r.meter.calendar.activations == 0
        r.meter.clock_offset_s = 3601  # the meter's clock passes the activation time
        await r.outcome(await r.submit("get", {"class": 20, "obis": "0.0.13.0.0.255", "attribute": 2}))
        assert r.meter.calendar.activations == 1 and r.meter.calendar.active[2].value == b"summer-2026"


async def test_clock_set_to_now_adjust_and_shift(tmp_path):
    async with rig(tmp_path, SimulatedDlmsMeter(clock_offset_s=-600)) as r:
        done = await r.outcome(await r.submit("clock-set", {"time": "now"}))
        assert done.outcome is Outcome.SUCCESS and abs(r.meter.clock_offset_s) < 2
        await r.outcome(await r.submit("clock-set", {"shift_s": 30}))
        assert 28 < r.meter.clock_offset_s < 32
        await r.outcome(await r.submit("clock-set", {"adjust": "minute"}))
        assert r.meter.now().second in (0, 59)
        assert [m for _, _, m in r.meter.actions(8)] == [6, 3]


async def test_a_consumer_message_is_written_as_text(tmp_path):
    async with rig(tmp_path) as r:
        done = await r.outcome(await r.submit("message", {"text": "Zahlung fällig"}))
        assert done.outcome is Outcome.SUCCESS
        assert r.meter.message.get(2) == Data(DataType.OCTET_STRING, "Zahlung fällig".encode())


async def test_a_refused_set_ends_with_the_meters_data_access_result(tmp_path):
    async with rig(tmp_path) as r:
        done = await r.outcome(await r.submit("set", {"class": 70, "obis": "0.0.96.3.10.255", "attribute": 2,
                                                     "data": {"type": "boolean", "value": False}}))
        assert done.outcome is Outcome.DATA_ACCESS_RESULT
        assert done.results[0]["result"] == "read-write-denied" and done.results[0]["code"] == 3
        [event] = await r.events("operation.result")
        assert event.details["outcome"] == "data-access-result" and event.severity.value == "warning"


async def test_generic_get_and_action_with_return_data(tmp_path):
    async with rig(tmp_path) as r:
        done = await r.outcome(await r.submit("get", {"class": 1, "obis": "1.0.0.2.0.255", "attribute": 2}))
        assert done.results[0]["data"] == {"type": "octet-string", "value": b"FW-1.0".hex()}
        done = await r.outcome(await r.submit("action", {"class": 70, "obis": "0.0.96.3.10.255", "method": 1,
                                                        "data": {"type": "integer", "value": 0}}))
        assert done.outcome is Outcome.SUCCESS and not r.meter.disconnect.output_state


async def test_operations_wait_while_the_meter_is_down_and_run_in_order_when_it_is_back(tmp_path):
    async with rig(tmp_path) as r:
        await r.server.stop()
        first = await r.submit("disconnect")
        second = await r.submit("reconnect")
        third = await r.submit("disconnect")
        await asyncio.sleep(1.0)  # several retries against a dead meter
        assert [await r.state_of(o) for o in (first, second, third)] == [State.QUEUED] * 3
        assert r.relay.counters["retries"] >= 2
        await r.server.start()
        done = [await r.outcome(o) for o in (first, second, third)]
        assert [d.outcome for d in done] == [Outcome.SUCCESS] * 3
        assert r.meter.disconnect.history == ["c", "d", "c"]  # in the order submitted
        assert [d.id for d in done] == sorted(d.id for d in done)
        assert [e.details["id"] for e in await r.events("operation.result")] == [d.id for d in done]


async def test_an_operation_not_carried_out_before_its_deadline_expires(tmp_path):
    async with rig(tmp_path) as r:
        await r.server.stop()
        operation = await r.submit("disconnect", deadline=datetime.now(timezone.utc) + timedelta(seconds=0.6))
        done = await r.outcome(operation)
        assert done.outcome is Outcome.EXPIRED and done.started_at is None
        await r.server.start()
        await asyncio.sleep(0.5)
        assert r.meter.actions() == []  # never sent, not even once the meter is back
        [event] = await r.events("operation.result")
        assert event.details["outcome"] == "expired"


async def test_a_queued_operation_is_cancelled_and_a_done_one_cannot_be(tmp_path):
    async with rig(tmp_path) as r:
        await r.server.stop()
        operation = await r.submit("disconnect")
        cancelled = await r.relay.cancel(operation.id, "local")
        assert cancelled.outcome is Outcome.CANCELLED
        with pytest.raises(OperationError, match="done, not queued"):
            await r.relay.cancel(operation.id, "local")
        await r.server.start()
        await asyncio.sleep(0.5)
        assert r.meter.actions() == []
        assert [e.details["outcome"] for e in await r.events("operation.result")] == ["cancelled"]


async def test_an_action_without_an_answer_times_out_and_is_not_repeated(tmp_path):
    async with rig(tmp_path, SimulatedDlmsMeter(action_delay_s=1.0)) as r:
        done = await r.outcome(await r.submit("disconnect"))
        assert done.outcome is Outcome.TIMEOUT and done.attempts == 1
        await asyncio.sleep(1.5)
        assert r.meter.actions(70) == [(70, "0.0.96.3.10.255", 1)]  # carried out once, late, and never again
        [event] = await r.events("operation.result")
        assert event.details["outcome"] == "timeout" and "DeviceTimeout" in event.details["error"]


async def test_a_get_without_an_answer_is_sent_again(tmp_path):
    async with rig(tmp_path) as r:
        await r.outcome(await r.submit("disconnect-state"))  # identified: the next association sends the GETs
        r.meter.silent_requests = 1
        done = await r.outcome(await r.submit("disconnect-state"))
        assert done.outcome is Outcome.SUCCESS and done.attempts == 2
        assert [res["data"]["value"] for res in done.results] == [True, 1, 1]


async def test_operations_are_refused_unless_permitted_with_a_security_event(tmp_path):
    permissions = [OperationPermission(identity="hes-a", operations=["disconnect", "get"], meters=["m*"]),
                   OperationPermission(identity="hes-b", operations=["action"], meters=["other"]),
                   OperationPermission(identity="hes-c", operations=["action"])]
    async with rig(tmp_path, permissions=permissions) as r:
        assert (await r.outcome(await r.submit("disconnect", identity="hes-a"))).outcome is Outcome.SUCCESS
        refused = await r.submit("reconnect", identity="hes-a")
        assert refused.outcome is Outcome.REFUSED and refused.state is State.DONE
        assert "hes-a may not run reconnect on meter m1" in refused.error
        assert (await r.submit("disconnect", identity="hes-b")).outcome is Outcome.REFUSED  # not this meter
        assert (await r.submit("disconnect", identity="nobody")).outcome is Outcome.REFUSED
        # "action" covers any named operation made of ACTIONs (read-backs aside)
        assert (await r.outcome(await r.submit("reconnect", identity="hes-c"))).outcome is Outcome.SUCCESS
        security = await r.events("security.refused")
        assert [(e.details["identity"], e.details["operation"]) for e in security] == [
            ("hes-a", "reconnect"), ("hes-b", "disconnect"), ("nobody", "disconnect")]
        outcomes = [e.details["outcome"] for e in await r.events("operation.result")]
        assert outcomes.count("refused") == 3
        assert [a for a in r.meter.actions(70)] == [(70, "0.0.96.3.10.255", 1), (70, "0.0.96.3.10.255", 2)]
        with pytest.raises(OperationError, match="may not cancel"):
            waiting = await r.submit("disconnect", identity="hes-a", deadline=None)
            await r.relay.cancel(waiting.id, "hes-c")


async def test_unknown_meters_and_operations_are_errors_and_a_meter_is_found_by_its_device(tmp_path):
    async with rig(tmp_path) as r:
        with pytest.raises(OperationError, match="no DLMS meter is named 'm9'"):
            await r.submit("disconnect", meter="m9")
        with pytest.raises(OperationError, match="unknown operation"):
            await r.submit("explode")
        with pytest.raises(OperationError, match="OBIS value group above 255"):
            await r.submit("limiter", {"threshold_normal": 1, "obis": "0.0.17.0.0.256"})
        with pytest.raises(OperationError, match="threshold_normal must be 0..4294967295"):
            await r.submit("limiter", {"threshold_normal": -1})
        await r.outcome(await r.submit("disconnect-state"))  # the meter is identified
        done = await r.outcome(await r.submit("disconnect", meter=SIM_DEVICE))
        assert done.meter == "m1" and done.outcome is Outcome.SUCCESS
