"""What an operation is: the requests it sends (steps), its life (states, outcomes) and its
record as stored and reported.

An operation is one or more COSEM requests to one meter, sent in one association, in order:
a step is a GET, SET or ACTION of one attribute or method (class, OBIS, index) with its data.
Its life::

    queued ──▶ started ──▶ done (outcome)
      │  ▲        │
      │  └────────┘  a GET-only operation that timed out, an image transfer interrupted
      └──▶ done (expired, cancelled, refused)

"started" is stored durably *before* the first request goes out: an operation found
"started" after a crash may or may not have been carried out, so it ends as ``unknown``
and is never sent again, unless all its steps are GETs (idempotent: queued again) or it is
an image transfer in a phase that resumes (see :mod:`~gateway.operations.image_transfer`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gateway.codecs.dlms.axdr import Data
from gateway.codecs.dlms.obis import Obis
from gateway.errors import GatewayError
from gateway.operations.data_json import data_from_json, data_to_json


#: Image transfer phases that may run again after an interruption (activation may not: it
#: may have switched the firmware already).
RESUMABLE = frozenset({"initiate", "transfer", "verify"})


class OperationError(GatewayError):
    """An operation that cannot be taken as given: unknown meter or operation, a missing or
    bad argument, a meter that the relay cannot reach (not a DLMS meter)."""


class State(str, enum.Enum):
    QUEUED = "queued"
    STARTED = "started"
    DONE = "done"


class Outcome(str, enum.Enum):
    """How an operation ended (the ``outcome`` of ``operation.result``)."""

    SUCCESS = "success"                          # every request answered with success
    DATA_ACCESS_RESULT = "data-access-result"    # the meter refused a request (its result code)
    TIMEOUT = "timeout"                          # sent, and the meter did not answer in time
    EXPIRED = "expired"                          # not carried out before its deadline
    UNKNOWN = "unknown"                          # started, then the gateway crashed or the link broke
    CANCELLED = "cancelled"                      # cancelled while queued
    REFUSED = "refused"                          # not permitted, or not possible (unknown meter)


class Kind(str, enum.Enum):
    GET = "get"
    SET = "set"
    ACTION = "action"


@dataclass(frozen=True, slots=True)
class Step:
    """One request: ``index`` is the attribute (GET, SET) or method (ACTION). A ``readback``
    step (reading the state an ACTION left) is reported but does not decide the outcome."""

    kind: Kind
    class_id: int
    obis: Obis
    index: int
    data: Data | None = None
    readback: bool = False

    def describe(self) -> str:
        what = "method" if self.kind is Kind.ACTION else "attribute"
        return f"{self.kind.value.upper()} {self.obis.dotted} class {self.class_id} {what} {self.index}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "class": self.class_id, "obis": self.obis.dotted,
                               "index": self.index}
        if self.data is not None:
            out["data"] = data_to_json(self.data)
        if self.readback:
            out["readback"] = True
        return out

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Step:
        data = document.get("data")
        return cls(Kind(document["kind"]), int(document["class"]), Obis.parse(document["obis"]),
                   int(document["index"]), None if data is None else data_from_json(data),
                   bool(document.get("readback", False)))


@dataclass(frozen=True, slots=True)
class StepResult:
    """What the meter answered to one step: ``result`` is ``success`` or the name of its
    Data-Access-Result / Action-Result (or the description of a service error), ``code`` that
    result's number (None for a service error), ``data`` the value read or the ACTION's
    return data, ``note`` anything else worth saying."""

    step: Step
    result: str
    data: Data | None = None
    code: int | None = 0
    note: str | None = None

    @property
    def success(self) -> bool:
        return self.result == "success"

    def to_json(self) -> dict[str, Any]:
        out = {"request": self.step.describe(), "result": self.result, "code": self.code,
               "data": None if self.data is None else data_to_json(self.data)}
        if self.step.readback:
            out["readback"] = True
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class Request:
    """An operation as submitted: ``meter`` is a configured meter name, ``name`` the named
    operation (``disconnect`` ...) or ``get``/``set``/``action``; ``params`` what a named
    operation needs beyond its steps (the image transfer's image)."""

    meter: str
    name: str
    steps: tuple[Step, ...]
    deadline: datetime
    identity: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def image_transfer(self) -> bool:
        """A firmware image transfer (a procedure, not a list of requests)."""
        return self.name == "firmware" and not self.steps

    @property
    def idempotent(self) -> bool:
        """Only reads may be sent again after a timeout or a crash."""
        return bool(self.steps) and all(step.kind is Kind.GET for step in self.steps)


@dataclass(frozen=True, slots=True)
class Operation:
    """An operation as the queue holds it."""

    id: int
    request: Request
    state: State
    submitted_at: datetime
    outcome: Outcome | None = None
    results: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    progress: dict[str, Any] | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    event_seq: int | None = None

    @property
    def meter(self) -> str:
        return self.request.meter

    @property
    def name(self) -> str:
        return self.request.name

    def with_state(self, **changes: Any) -> Operation:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The operation as ``op-status`` and ``gateway op show`` report it."""
        request = self.request
        return {
            "id": self.id, "meter": request.meter, "operation": request.name, "identity": request.identity,
            "source": request.source, "state": self.state.value,
            "outcome": None if self.outcome is None else self.outcome.value,
            "submitted_at": self.submitted_at.isoformat(), "deadline": request.deadline.isoformat(),
            "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at), "attempts": self.attempts,
            "steps": [step.to_json() for step in request.steps], "params": request.params,
            "results": list(self.results), "error": self.error, "progress": self.progress,
            "event_seq": self.event_seq,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
