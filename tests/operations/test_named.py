"""Named operations build the requests of the Blue Book: the right class, logical name,
attribute or method and data for each, their read-backs, and arguments refused with what is
wrong; requests classified for permissions."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.obis import Obis
from gateway.operations.model import Kind, OperationError, Step
from gateway.operations.named import build, classify, late_steps


def shape(steps) -> list[tuple[str, int, str, int, bool]]:
    return [(s.kind.value, s.class_id, s.obis.dotted, s.index, s.readback) for s in steps]


def test_disconnect_and_reconnect_act_on_the_disconnect_control_and_read_its_state_back():
    steps, _ = build("disconnect", {})
    assert shape(steps) == [("action", 70, "0.0.96.3.10.255", 1, False), ("get", 70, "0.0.96.3.10.255", 2, True),
                            ("get", 70, "0.0.96.3.10.255", 3, True)]
    assert steps[0].data == Data(DataType.INTEGER, 0)
    assert shape(build("reconnect", {"obis": "0-1:96.3.10*255"})[0])[0] == ("action", 70, "0.1.96.3.10.255", 2, False)
    assert [s.index for s in build("disconnect-state", {})[0]] == [2, 3, 4]


def test_the_limiter_writes_the_blue_books_attributes():
    steps, _ = build("limiter", {"threshold_active": 1, "threshold_normal": 2, "threshold_emergency": 3,
                                 "min_over_threshold_duration_s": 4, "min_under_threshold_duration_s": 5})
    writes = [s for s in steps if s.kind is Kind.SET]
    assert [(s.class_id, s.obis.dotted, s.index, s.data.value) for s in writes] == [
        (71, "0.0.17.0.0.255", 3, 1), (71, "0.0.17.0.0.255", 4, 2), (71, "0.0.17.0.0.255", 5, 3),
        (71, "0.0.17.0.0.255", 6, 4), (71, "0.0.17.0.0.255", 7, 5)]
    assert [s.index for s in steps if s.readback] == [3, 4, 5, 6, 7]


def test_the_calendar_tables_are_encoded_as_the_blue_book_lays_them_out():
    steps, _ = build("calendar", {
        "name": "T1", "seasons": [{"name": "s", "start": "2026-04-01T00:00:00", "week": "w"}],
        "weeks": [{"name": "w", "days": [1, 2, 3, 4, 5, 6, 7]}],
        "days": [{"id": 1, "actions": [{"start": "06:30", "script": "0-0:10.0.100*255", "selector": 2}]}],
        "activate_at": "2026-04-01T00:00:00+02:00"})
    assert [(s.kind.value, s.index) for s in steps] == [("set", 6), ("set", 7), ("set", 8), ("set", 9), ("set", 10)]
    name, seasons, weeks, days, activation = (s.data for s in steps)
    assert name == Data(DataType.OCTET_STRING, b"T1")
    assert seasons.to_bytes().hex() == ("0101" "0203" "090173" "090c07ea04010300000000" "8000ff" "090177")
    assert weeks.to_python() == [[b"w", 1, 2, 3, 4, 5, 6, 7]]
    assert days.to_bytes().hex() == ("0101" "0202" "1101" "0101" "0203" "0904061e0000" "09060000" "0a0064ff" "120002")
    assert CosemDateTime.from_bytes(activation.value) == CosemDateTime(2026, 4, 1, 3, 0, 0, 0, 0, -120, 0)


def test_clock_set_to_now_gets_its_time_when_it_is_sent():
    steps, params = build("clock-set", {"time": "now"})
    sent = late_steps("clock-set", steps, params, datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc),
                      ZoneInfo("Europe/Berlin"))
    moment = CosemDateTime.from_bytes(sent[0].data.value)
    assert (moment.hour, moment.minute, moment.deviation) == (3, 30, -120)  # summer time already
    assert sent[1] == steps[1]
    assert shape(build("clock-set", {"adjust": "quarter"})[0])[0] == ("action", 8, "0.0.1.0.0.255", 1, False)
    assert build("clock-set", {"shift_s": -30})[0][0].data == Data(DataType.LONG, -30)


@pytest.mark.parametrize("name, args, reason", [
    ("clock-set", {}, "give one of time"),
    ("clock-set", {"time": "now", "shift_s": 1}, "give one of time"),
    ("clock-set", {"shift_s": 901}, "shift_s must be -900..900"),
    ("clock-set", {"adjust": "hour"}, "adjust is one of"),
    ("limiter", {}, "give at least one of"),
    ("calendar", {"name": "x", "seasons": [], "weeks": [{"name": "w", "days": [1]}], "days": []}, "seven day ids"),
    ("set", {"class": 1, "obis": "0.0.96.13.0.255", "attribute": 2}, "missing argument 'data'"),
    ("set", {"class": 1, "obis": "0.0.96.13.0.255", "attribute": 2, "data": {"type": "unsigned", "value": 256}},
     "data data.value"),
    ("get", {"class": 1, "attribute": 2}, "missing argument 'obis'"),
    ("get", {"class": 1, "obis": "0.0.96.13.0.255", "attribute": 0}, "attribute must be 1..127"),
    ("firmware", {"image": "abc", "identifier": "x"}, "64 hex digits"),
    ("message", {}, "missing argument 'text'"),
    ("launch", {}, "unknown operation"),
])
def test_bad_arguments_say_what_is_wrong(name, args, reason):
    with pytest.raises(OperationError, match=reason):
        build(name, args)


def test_requests_are_classified_as_the_named_operation_they_amount_to():
    def step(kind, class_id, index):
        return Step(kind, class_id, Obis(0, 0, 1, 0, 0), index)

    assert classify(step(Kind.ACTION, 70, 1)) == "disconnect"
    assert classify(step(Kind.ACTION, 70, 2)) == "reconnect"
    assert classify(step(Kind.SET, 71, 4)) == "limiter"
    assert classify(step(Kind.SET, 20, 10)) == "calendar"
    assert classify(step(Kind.ACTION, 18, 2)) == "firmware"
    assert classify(step(Kind.SET, 8, 2)) == "clock-set"
    assert classify(step(Kind.SET, 1, 2)) == "set"
    assert classify(step(Kind.ACTION, 3, 1)) == "action"
