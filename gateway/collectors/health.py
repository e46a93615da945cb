"""A meter's communication health: a small state machine, pure (no clock, no I/O).

::

           failing_after consecutive failures         unreachable_after consecutive failures
    ok ───────────────────────────────────▶ failing ─────────────────────────────────▶ unreachable
     ▲                                         │                                            │
     └──────────── one success ◀───────────────┴────────────────────────────────────────────┘

Each change of state is a :class:`Transition`, which the collector turns into one event
(:func:`transition_event`): ``comm.failed`` (ok → failing), ``comm.unreachable``
(→ unreachable, also straight from ok when both thresholds are reached at once) and
``comm.recovered`` (failing or unreachable → ok). Failures that do not change the state
raise nothing: a dead meter read every 15 minutes is two events, not one per read.

A *failure* is what the bus says it is: a polled bus (wired M-Bus, DLMS/COSEM) counts every
failed read; the wireless receiver counts every expected interval in which a meter was not
heard (``not_heard``) and every telegram it refused (``security``) or could not decode
(``frame``). The reason is a short code from the exception's type (:func:`failure_reason`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import (
    ConfigError,
    DeviceTimeout,
    FrameError,
    ProtocolError,
    SecurityError,
    TransportError,
)
from gateway.events import make_event
from gateway.model import Event


class MeterState(str, enum.Enum):
    OK = "ok"
    FAILING = "failing"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """After how many consecutive failures a meter is failing, and unreachable."""

    failing_after: int = 1
    unreachable_after: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.failing_after <= self.unreachable_after:
            raise ValueError("need 1 <= failing_after <= unreachable_after")


#: Reason codes by exception type, most specific first (the first match along the MRO wins).
#: A collision on a wired bus (two slaves answered) is a frame problem to the meter's health.
REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (DeviceTimeout, "timeout"),
    (SecurityError, "security"),
    (FrameError, "frame"),
    (ProtocolError, "protocol"),
    (TransportError, "transport"),
    (ConfigError, "configuration"),
)
#: Reasons looked up by class name, for errors defined above the codecs (collectors).
NAMED_REASONS = {"MeterApplicationError": "application", "ModbusExceptionResponse": "application",
                 "Collision": "collision", "NotHeardYet": "not_heard"}


def failure_reason(exc: BaseException) -> str:
    """The short reason code of a failure: timeout, security, frame (checksum, length,
    malformed), protocol, application (the meter reported an error), collision, transport,
    configuration, or ``error``."""
    for cls in type(exc).__mro__:
        if cls.__name__ in NAMED_REASONS:
            return NAMED_REASONS[cls.__name__]
    for cls, reason in REASONS:
        if isinstance(exc, cls):
            return reason
    return "error"


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a meter's state, with what caused it."""

    meter: str
    old: MeterState
    new: MeterState
    reason: str | None
    consecutive_failures: int
    at: datetime

    @property
    def code(self) -> str:
        if self.new is MeterState.OK:
            return "comm.recovered"
        return "comm.unreachable" if self.new is MeterState.UNREACHABLE else "comm.failed"


@dataclass
class MeterHealth:
    """A meter's communication health as the HES sees it in ``status``, and its state machine.

    :meth:`succeeded` and :meth:`failed` return the :class:`Transition` when the state
    changes, else None.
    """

    name: str
    device: str | None = None
    thresholds: Thresholds = Thresholds()
    state: MeterState = MeterState.OK
    reads: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None
    reason: str | None = None

    def succeeded(self, at: datetime) -> Transition | None:
        old, failures = self.state, self.consecutive_failures
        self.reads += 1
        self.consecutive_failures = 0
        self.last_success = at
        self.last_error = self.reason = None
        self.state = MeterState.OK
        if old is MeterState.OK:
            return None
        return Transition(self.name, old, MeterState.OK, None, failures, at)

    def failed(self, reason: str, error: str, at: datetime) -> Transition | None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_failure = at
        self.last_error = error
        self.reason = reason
        old = self.state
        if self.consecutive_failures >= self.thresholds.unreachable_after:
            self.state = MeterState.UNREACHABLE
        elif self.consecutive_failures >= self.thresholds.failing_after:
            self.state = max(old, MeterState.FAILING, key=_RANK.__getitem__)
        if self.state is old:
            return None
        return Transition(self.name, old, self.state, reason, self.consecutive_failures, at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "state": self.state.value,
            "reason": self.reason,
            "reads": self.reads,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_failure": self.last_failure.isoformat() if self.last_failure else None,
            "last_error": self.last_error,
        }


_RANK = {MeterState.OK: 0, MeterState.FAILING: 1, MeterState.UNREACHABLE: 2}


def transition_event(transition: Transition, *, source: str, device: str | None, message: str,
                     details: dict[str, str | int] | None = None) -> Event:
    """The one event of a change of state (see the module docstring for the codes)."""
    facts: dict[str, str | int] = {"meter": transition.meter, "state": transition.new.value,
                                   "previous": transition.old.value}
    if transition.new is MeterState.OK:
        facts["failures"] = transition.consecutive_failures
    else:
        facts["reason"] = transition.reason or "error"
        facts["consecutive_failures"] = transition.consecutive_failures
    return make_event(transition.code, message, occurred_at=transition.at, device=device, source=source,
                      details={**facts, **(details or {})})
