"""Carrying out an operation's requests in one association with the meter.

Each step is sent in order; the first request the meter refuses (a Data-Access-Result or
Action-Result other than success, an EXCEPTION-Response, a ConfirmedServiceError) ends the
operation there (``data-access-result``, with what the meter said), except for read-back
steps, whose answers are only reported. A step that gets no answer raises out of here: what
that means (retry, ``timeout``, ``unknown``) is the relay's decision.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.codecs.dlms.axdr import Data
from gateway.codecs.dlms.services import (
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    MethodDescriptor,
)
from gateway.collectors.dlms_session import DataAccessError, DlmsSession
from gateway.operations.model import Kind, Outcome, Step, StepResult


async def run_step(session: DlmsSession, step: Step) -> StepResult:
    """Send one request and say what the meter answered."""
    try:
        if step.kind is Kind.GET:
            value = await session.get_result(AttributeDescriptor(step.class_id, step.obis, step.index))
            if isinstance(value, DataAccessResult):
                return StepResult(step, value.name, code=value.code)
            return StepResult(step, "success", value)
        if step.kind is Kind.SET:
            await session.set(AttributeDescriptor(step.class_id, step.obis, step.index), step.data)
            return StepResult(step, "success", code=0)
        outcome = await session.action(MethodDescriptor(step.class_id, step.obis, step.index), step.data)
    except DataAccessError as exc:
        return refused(step, exc.result)
    returned = outcome.return_data
    if isinstance(returned, DataAccessResult):  # return data that could not be had
        return StepResult(step, "success", code=0, note=f"return data: {returned.name}")
    return StepResult(step, "success", returned if isinstance(returned, Data) else None, code=0)


def refused(step: Step, result: object) -> StepResult:
    """A negative answer: a result code keeps its number (a DLMS client through the gateway
    gets exactly that code), a service error its description."""
    if isinstance(result, (DataAccessResult, ActionResult)):
        return StepResult(step, result.name, code=result.code)
    describe = getattr(result, "description", None)
    return StepResult(step, describe() if callable(describe) else str(result))


async def run_steps(session: DlmsSession, steps: Sequence[Step]) -> list[StepResult]:
    """Every step in order, up to the first refused one that is not a read-back."""
    results = []
    for step in steps:
        result = await run_step(session, step)
        results.append(result)
        if not result.success and not step.readback:
            break
    return results


def outcome_of(results: Sequence[StepResult]) -> Outcome:
    if all(r.success for r in results if not r.step.readback):
        return Outcome.SUCCESS
    return Outcome.DATA_ACCESS_RESULT
