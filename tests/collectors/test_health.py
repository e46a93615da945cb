"""The meter health state machine: every transition, its reason and its one event."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus.errors import MBusAuthenticationError, MBusFrameError
from gateway.collectors.health import MeterHealth, MeterState, Thresholds, failure_reason, transition_event
from gateway.collectors.mbus_master import Collision, MeterApplicationError
from gateway.collectors.wmbus import NotHeardYet
from gateway.errors import ConfigError, DeviceTimeout, GatewayError, ProtocolError, TransportError
from gateway.model import Severity

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def at(n: int) -> datetime:
    return T0 + timedelta(minutes=15 * n)


def test_a_new_meter_is_ok_and_a_success_changes_nothing():
    health = MeterHealth("m1", thresholds=Thresholds(2, 4))
    assert health.state is MeterState.OK
    assert health.succeeded(at(0)) is None
    assert health.reads == 1 and health.last_success == at(0)


def test_ok_becomes_failing_after_failing_after_consecutive_failures_with_the_reason():
    health = MeterHealth("m1", thresholds=Thresholds(2, 4))
    assert health.failed("timeout", "no reply", at(1)) is None
    transition = health.failed("timeout", "no reply", at(2))
    assert transition is not None
    assert (transition.old, transition.new, transition.reason, transition.consecutive_failures) == (
        MeterState.OK, MeterState.FAILING, "timeout", 2)
    assert transition.code == "comm.failed" and transition.at == at(2)


def test_failing_becomes_unreachable_after_unreachable_after_failures_and_stays_quiet_afterwards():
    health = MeterHealth("m1", thresholds=Thresholds(1, 3))
    codes = [t.code if t else None for t in (health.failed("frame", "bad checksum", at(n)) for n in range(6))]
    assert codes == ["comm.failed", None, "comm.unreachable", None, None, None]
    assert health.state is MeterState.UNREACHABLE and health.consecutive_failures == 6 and health.failures == 6


def test_both_thresholds_at_one_go_straight_from_ok_to_unreachable():
    health = MeterHealth("m1", thresholds=Thresholds(1, 1))
    transition = health.failed("transport", "port gone", at(0))
    assert transition is not None and (transition.old, transition.new) == (MeterState.OK, MeterState.UNREACHABLE)
    assert transition.code == "comm.unreachable"


@pytest.mark.parametrize("failures, old", [(1, MeterState.FAILING), (5, MeterState.UNREACHABLE)])
def test_one_success_recovers_a_failing_or_unreachable_meter_with_the_failure_count(failures, old):
    health = MeterHealth("m1", thresholds=Thresholds(1, 5))
    for n in range(failures):
        health.failed("timeout", "no reply", at(n))
    transition = health.succeeded(at(failures))
    assert transition is not None
    assert (transition.old, transition.new, transition.consecutive_failures) == (old, MeterState.OK, failures)
    assert transition.code == "comm.recovered"
    assert health.consecutive_failures == 0 and health.reason is None and health.last_error is None
    assert health.failures == failures  # the total stays


def test_a_success_below_the_threshold_resets_the_count_without_an_event():
    health = MeterHealth("m1", thresholds=Thresholds(3, 5))
    health.failed("timeout", "x", at(0))
    health.failed("timeout", "x", at(1))
    assert health.succeeded(at(2)) is None
    assert health.failed("timeout", "x", at(3)) is None  # counting starts again
    assert health.state is MeterState.OK


def test_the_reason_of_the_latest_failure_is_reported():
    health = MeterHealth("m1", thresholds=Thresholds(1, 2))
    health.failed("timeout", "no reply", at(0))
    transition = health.failed("security", "wrong key", at(1))
    assert transition is not None and transition.reason == "security"
    assert health.as_dict()["reason"] == "security" and health.as_dict()["state"] == "unreachable"


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5), st.integers(0, 5))
def test_the_state_follows_the_consecutive_failures_and_every_change_is_one_transition(outcomes, failing, extra):
    thresholds = Thresholds(failing, failing + extra)
    health = MeterHealth("m", thresholds=thresholds)
    state = MeterState.OK
    for n, ok in enumerate(outcomes):
        transition = health.succeeded(at(n)) if ok else health.failed("timeout", "x", at(n))
        run = health.consecutive_failures
        expected = (MeterState.OK if run < thresholds.failing_after
                    else MeterState.FAILING if run < thresholds.unreachable_after else MeterState.UNREACHABLE)
        assert health.state is expected
        assert (transition is not None) == (expected is not state)
        if transition is not None:
            assert (transition.old, transition.new) == (state, expected)
        state = expected


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        Thresholds(3, 2)
    with pytest.raises(ValueError):
        Thresholds(0, 2)


@pytest.mark.parametrize("exc, reason", [
    (DeviceTimeout("no reply"), "timeout"),
    (MBusAuthenticationError("MAC"), "security"),
    (MBusFrameError("bad checksum", offset=4, field="CS"), "frame"),
    (ProtocolError("odd"), "protocol"),
    (MeterApplicationError("busy"), "application"),
    (Collision("two answered"), "collision"),
    (TransportError("gone"), "transport"),
    (ConfigError(["x"]), "configuration"),
    (NotHeardYet("quiet"), "not_heard"),
    (GatewayError("other"), "error"),
])
def test_the_reason_comes_from_the_exception_type(exc, reason):
    assert failure_reason(exc) == reason


def test_each_transition_is_one_event_with_the_vocabulary_severity_and_details():
    health = MeterHealth("heat-1", device="KAM-1-01-04", thresholds=Thresholds(1, 2))
    failed = transition_event(health.failed("timeout", "x", at(0)), source="bus1", device=health.device, message="m")
    unreachable = transition_event(health.failed("timeout", "x", at(1)), source="bus1", device=health.device,
                                   message="m")
    recovered = transition_event(health.succeeded(at(2)), source="bus1", device=health.device, message="m")
    assert [(e.code, e.severity) for e in (failed, unreachable, recovered)] == [
        ("comm.failed", Severity.WARNING), ("comm.unreachable", Severity.ERROR), ("comm.recovered", Severity.INFO)]
    assert failed.details == {"meter": "heat-1", "state": "failing", "previous": "ok", "reason": "timeout",
                              "consecutive_failures": 1}
    assert recovered.details == {"meter": "heat-1", "state": "ok", "previous": "unreachable", "failures": 2}
    assert failed.device == "KAM-1-01-04" and failed.source == "bus1" and failed.occurred_at == at(0)
