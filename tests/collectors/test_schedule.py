"""Meters are read on slots aligned to the clock in the gateway's time zone."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from gateway.collectors.schedule import next_due

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_fifteen_minute_meters_are_due_on_the_quarter_hour():
    assert next_due(at("2026-03-01T10:07:12+00:00"), 900, 0, ZoneInfo("UTC")) == at("2026-03-01T10:15:00+00:00")


def test_a_time_exactly_on_a_slot_is_due_at_the_next_slot():
    assert next_due(at("2026-03-01T10:15:00+00:00"), 900, 0, ZoneInfo("UTC")) == at("2026-03-01T10:30:00+00:00")


def test_daily_meters_are_due_at_local_midnight():
    due = next_due(at("2026-06-01T12:00:00+00:00"), 86400, 0, BERLIN)
    assert due == at("2026-06-02T00:00:00+02:00")


def test_offset_shifts_the_slot():
    due = next_due(at("2026-06-01T10:00:00+00:00"), 3600, 120, ZoneInfo("UTC"))
    assert due == at("2026-06-01T10:02:00+00:00")


def test_daily_slot_after_the_spring_dst_change_is_still_midnight():
    due = next_due(at("2026-03-29T12:00:00+00:00"), 86400, 0, BERLIN)
    assert due.astimezone(BERLIN).hour == 0 and due.astimezone(BERLIN).day == 30


def test_intervals_longer_than_a_day_align_to_the_epoch():
    due = next_due(at("2026-01-01T00:00:01+00:00"), 7 * 86400, 0, BERLIN)
    assert (due - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % (7 * 86400) == 0


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        next_due(datetime(2026, 1, 1), 900, 0, BERLIN)


def test_daily_slot_on_the_25_hour_autumn_day_is_the_next_local_midnight():
    due = next_due(at("2026-10-25T12:00:00+00:00"), 86400, 0, BERLIN)
    assert due == at("2026-10-26T00:00:00+01:00")


def test_quarter_hours_continue_through_the_autumn_dst_change():
    due = next_due(at("2026-10-25T00:59:00+00:00"), 900, 0, BERLIN)  # 02:59 CET after the change
    assert due == at("2026-10-25T01:00:00+00:00")
