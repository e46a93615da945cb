"""The durable queue: the state changes guarded in SQL, outcome and event in one
transaction, what a restart finds started, and a store that never held an operation."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from gateway.config import StoreSection
from gateway.events import make_event
from gateway.model import Event
from gateway.operations import Operation, Outcome, Request, State
from gateway.operations.named import build
from gateway.operations.queue import OperationQueue
from gateway.simulators.dlms import SimulatedDlmsMeter
from gateway.store import Store
from tests.operations.helpers import events_of, rig

T0 = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)


def request(name: str = "disconnect", args: dict | None = None, **kwargs) -> Request:
    steps, params = build(name, args or {})
    options = {"meter": "m1", "deadline": T0 + timedelta(hours=1), "identity": "hes-a", "source": "test", **kwargs}
    return Request(options["meter"], name, steps, options["deadline"], options["identity"], options["source"], params)


def result_event(operation) -> Event:
    return make_event("operation.result", f"{operation.id}: {operation.outcome.value}", occurred_at=T0,
                      details={"id": operation.id, "outcome": operation.outcome.value})


@pytest.fixture
async def store(tmp_path):
    async with Store(tmp_path / "store.sqlite", StoreSection()) as opened:
        yield opened


@pytest.fixture
async def queue(store):
    queue = OperationQueue(lambda: store, result_event, lambda: T0)
    await queue.prepare()
    return queue


async def test_an_operation_goes_from_queued_to_started_to_done_with_its_event_in_one_transaction(store, queue):
    operation = await queue.submit(request())
    assert operation.state is State.QUEUED and operation.id == 1
    assert (await queue.head("m1")).id == operation.id and await queue.meters_with_work() == ["m1"]
    assert await queue.mark_started(operation)
    assert not await queue.mark_started(operation)  # only from queued
    done = await queue.finish(operation, Outcome.SUCCESS, [{"result": "success"}])
    assert done.state is State.DONE and done.event_seq == store.last_seq
    [stored] = await store.read_after(done.event_seq - 1, 1)
    assert stored.record.details == {"id": 1, "outcome": "success"}
    assert await queue.finish(operation, Outcome.UNKNOWN) is None  # ends once
    assert await queue.head("m1") is None and await queue.meters_with_work() == []
    assert (await queue.get(1)).to_json()["results"] == [{"result": "success"}]


async def test_a_cancel_and_a_start_that_race_settle_on_one(store, queue):
    operation = await queue.submit(request())
    cancelled, started = await asyncio.gather(queue.finish(operation, Outcome.CANCELLED, only_if=State.QUEUED),
                                              queue.mark_started(operation))
    assert (cancelled is not None) != started


async def test_a_refused_operation_is_stored_done_with_its_result_and_security_events(store, queue):
    refusal = make_event("security.refused", "no", occurred_at=T0)
    operation = await queue.submit(request(), refused="not permitted", extra_events=[refusal])
    assert operation.state is State.DONE and operation.outcome is Outcome.REFUSED
    codes = [s.record.code for s in await store.read_after(0, 10)]
    assert codes == ["operation.result", "security.refused"] and operation.event_seq == 1


async def test_after_a_restart_started_operations_end_unknown_unless_they_may_run_again(store, queue):
    action, reads = await queue.submit(request()), await queue.submit(request("disconnect-state"))
    transfer = await queue.submit(request("firmware", {"image": "0" * 64, "identifier": "x"}))
    activating = await queue.submit(request("firmware", {"image": "0" * 64, "identifier": "y"}))
    for operation in (action, reads, transfer, activating):
        await queue.mark_started(operation)
    await queue.save_progress(transfer, {"phase": "transfer"})
    await queue.save_progress(activating, {"phase": "activate"})
    from gateway.operations.relay import _resumable

    ended = await queue.recover(_resumable)
    assert [o.id for o in ended] == [activating.id, action.id]  # newest first
    assert {o.id: (await queue.get(o.id)).state for o in (action, reads, transfer, activating)} == {
        action.id: State.DONE, reads.id: State.QUEUED, transfer.id: State.QUEUED, activating.id: State.DONE}
    assert (await queue.get(action.id)).outcome is Outcome.UNKNOWN
    assert "not repeated" in (await queue.get(action.id)).error
    assert (await queue.get(transfer.id)).progress == {"phase": "transfer"}


async def test_a_restarted_relay_reports_an_interrupted_action_as_unknown_and_never_sends_it(tmp_path):
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        queue = OperationQueue(lambda: store, result_event, lambda: datetime.now(timezone.utc))
        await queue.prepare()
        action = await queue.submit(request(deadline=datetime.now(timezone.utc) + timedelta(hours=1)))
        await queue.mark_started(action)  # ... and then the gateway died
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        reads = await queue.submit(request("disconnect-state", deadline=later))
        await queue.mark_started(reads)
    meter = SimulatedDlmsMeter()
    async with rig(tmp_path, meter) as r:
        done = await r.outcome(reads)
        assert done.outcome is Outcome.SUCCESS  # the reads ran again
        assert (await r.relay.queue.get(action.id)).outcome is Outcome.UNKNOWN
        assert meter.actions() == []
        [unknown] = [e for e in await r.events("operation.result") if e.details["outcome"] == "unknown"]
        assert unknown.details["id"] == action.id


async def test_a_store_without_the_table_lists_nothing_read_only(tmp_path):
    async with Store(tmp_path / "store.sqlite", StoreSection()):
        pass
    async with Store(tmp_path / "store.sqlite", StoreSection(), read_only=True) as store:
        queue = OperationQueue(lambda: store, result_event, lambda: T0)
        assert await queue.list() == [] and await queue.get(1) is None


async def test_overdue_operations_are_those_queued_past_their_deadline(store, queue):
    late = await queue.submit(request(deadline=T0 - timedelta(microseconds=1)))
    await queue.submit(request(deadline=T0 + timedelta(seconds=1)))
    assert [o.id for o in await queue.overdue(T0)] == [late.id]
    assert await events_of(store, "operation.result") == []


def test_an_event_leaves_out_result_data_too_long_for_it():
    from gateway.operations.relay import MAX_EVENT_RESULTS, result_event

    operation = Operation(7, request("disconnect-state"), State.DONE, T0, Outcome.SUCCESS,
                          ({"request": "GET", "result": "success", "data": {"type": "octet-string",
                                                                            "value": "00" * MAX_EVENT_RESULTS}},))
    details = result_event(operation).details
    assert json.loads(details["results"]) == [{"request": "GET", "result": "success", "data": None,
                                               "data_omitted": "too long for the event: see op-status"}]
