"""COSEM date, time and date-time (Blue Book 4.1.6.1): not-specified fields, deviation, status."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given

from gateway.codecs.dlms.dates import ClockStatus, CosemDate, CosemDateTime, CosemTime
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError

from .strategies import date_times, dates, times

CET = timezone(timedelta(hours=1))


def test_a_meter_date_time_with_deviation_is_an_aware_datetime():
    # 2021-03-28 01:59:59.50 CET: deviation -60 (local time + deviation = UTC), no DST yet.
    stamp = CosemDateTime.from_bytes(bytes.fromhex("07E5031C0701 3B3B32 FFC4 00".replace(" ", "")))
    assert stamp.to_datetime() == datetime(2021, 3, 28, 1, 59, 59, 500_000, tzinfo=CET)
    assert stamp.utc_offset == timedelta(hours=1)
    assert stamp.status == ClockStatus(0)


def test_unspecified_deviation_gives_local_time_naive_or_in_the_zone_given():
    stamp = CosemDateTime(2020, 1, 2, None, 3, 4, 5, None, None, None)
    assert stamp.to_bytes()[-3:] == b"\x80\x00\xff"
    assert stamp.to_datetime() == datetime(2020, 1, 2, 3, 4, 5)
    assert stamp.to_datetime(default_tz=timezone.utc).tzinfo is timezone.utc


def test_not_specified_and_special_fields_are_kept_but_are_not_a_datetime():
    stamp = CosemDateTime.from_bytes(bytes.fromhex("FFFFFEFDFF0000FFFF800009"))
    assert (stamp.year, stamp.month, stamp.day, stamp.day_of_week) == (None, 0xFE, 0xFD, None)
    assert stamp.status == ClockStatus.INVALID_VALUE | ClockStatus.INVALID_CLOCK_STATUS
    assert stamp.to_bytes() == bytes.fromhex("FFFFFEFDFF0000FFFF800009")
    with pytest.raises(DLMSError, match="year is not specified"):
        stamp.to_datetime()
    with pytest.raises(DLMSError, match="not a valid date"):
        CosemDateTime(2021, 2, 30, None, 0, 0, 0).to_datetime()


def test_from_datetime_sets_deviation_weekday_and_hundredths():
    stamp = CosemDateTime.from_datetime(datetime(2024, 7, 1, 12, 30, 15, 123_456, tzinfo=timezone(timedelta(hours=2))))
    assert (stamp.day_of_week, stamp.hundredths, stamp.deviation, stamp.clock_status) == (1, 12, -120, 0)
    assert stamp.to_datetime() == datetime(2024, 7, 1, 12, 30, 15, 120_000, tzinfo=timezone(timedelta(hours=2)))
    assert CosemDateTime.from_datetime(datetime(2024, 7, 1)).deviation is None


def test_date_and_time_parts():
    assert CosemDate.from_bytes(bytes.fromhex("07E80701FF")).to_date().isoformat() == "2024-07-01"
    assert CosemTime.from_bytes(bytes.fromhex("0C1E00FF")).to_time().isoformat() == "12:30:00"
    assert CosemDate.from_date(datetime(2024, 7, 7).date()).day_of_week == 7
    assert CosemTime.from_time(datetime(2024, 7, 7, 1, 2, 3, 40_000).time()).hundredths == 4
    with pytest.raises(DLMSFrameError):
        CosemDate.from_bytes(b"\x00" * 4)


@given(date_times)
def test_date_times_round_trip(stamp):
    assert CosemDateTime.from_bytes(stamp.to_bytes()) == stamp


@given(dates, times)
def test_dates_and_times_round_trip(date_, time_):
    assert CosemDate.from_bytes(date_.to_bytes()) == date_
    assert CosemTime.from_bytes(time_.to_bytes()) == time_
