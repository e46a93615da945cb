"""COSEM date, time and date-time (Blue Book, IEC 62056-6-2 4.1.6.1).

=========  ==========================================================================
date       year (2 bytes, 0xFFFF = not specified), month, day of month, day of week
time       hour, minute, second, hundredths
date-time  date, time, deviation (signed, minutes; 0x8000 = not specified), clock status
=========  ==========================================================================

Every one-byte field uses 0xFF for "not specified"; here such a field is ``None``. The
other special values (month 0xFD/0xFE = end/begin of daylight saving time, day 0xFD/0xFE
= second-last/last day of the month) are kept as the integers they are, so encoding gives
back the same bytes.

The deviation is "in minutes of local time to UTC" (4.1.6.1): local time + deviation = UTC,
so Central European Time (UTC+01:00) is sent as -60. A few companion specifications use the
opposite sign; :meth:`CosemDateTime.to_datetime` follows the Blue Book. The daylight-saving
bit of the clock status is reported, never applied: the deviation already says how the
local time relates to UTC.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError

NOT_SPECIFIED = 0xFF
YEAR_NOT_SPECIFIED = 0xFFFF
DEVIATION_NOT_SPECIFIED = -0x8000  # 0x8000 read as a signed 16-bit value
MONTH_DST_END = 0xFD
MONTH_DST_BEGIN = 0xFE
DAY_SECOND_LAST = 0xFD
DAY_LAST = 0xFE

_DATE = struct.Struct(">HBBB")
_TIME = struct.Struct(">BBBB")
_DATE_TIME = struct.Struct(">HBBBBBBBhB")


class ClockStatus(enum.IntFlag):
    """Bits of the clock status byte (4.1.6.1); 0xFF means "not specified"."""

    INVALID_VALUE = 0x01
    DOUBTFUL_VALUE = 0x02
    DIFFERENT_CLOCK_BASE = 0x04
    INVALID_CLOCK_STATUS = 0x08
    DAYLIGHT_SAVING_ACTIVE = 0x80


def _opt(value: int, sentinel: int = NOT_SPECIFIED) -> int | None:
    return None if value == sentinel else value


def _raw(value: int | None, sentinel: int = NOT_SPECIFIED) -> int:
    return sentinel if value is None else value


@dataclass(frozen=True, slots=True)
class CosemDate:
    """A date (5 bytes); ``None`` = not specified, day_of_week 1 = Monday .. 7 = Sunday."""

    year: int | None
    month: int | None
    day: int | None
    day_of_week: int | None = None

    SIZE = 5

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemDate:
        if len(data) != cls.SIZE:
            raise DLMSFrameError(f"a date is {cls.SIZE} bytes, got {len(data)}", field="date")
        year, month, day, dow = _DATE.unpack(data)
        return cls(_opt(year, YEAR_NOT_SPECIFIED), _opt(month), _opt(day), _opt(dow))

    def to_bytes(self) -> bytes:
        return _DATE.pack(_raw(self.year, YEAR_NOT_SPECIFIED), _raw(self.month), _raw(self.day), _raw(self.day_of_week))

    def to_date(self) -> date:
        """The calendar date; :class:`DLMSError` when a field is not specified or special."""
        return _checked(lambda: date(_need(self.year, "year"), _need(self.month, "month"), _need(self.day, "day")))

    @classmethod
    def from_date(cls, value: date) -> CosemDate:
        return cls(value.year, value.month, value.day, value.isoweekday())


@dataclass(frozen=True, slots=True)
class CosemTime:
    """A time of day (4 bytes); ``None`` = not specified."""

    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None = None

    SIZE = 4

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemTime:
        if len(data) != cls.SIZE:
            raise DLMSFrameError(f"a time is {cls.SIZE} bytes, got {len(data)}", field="time")
        return cls(*(_opt(v) for v in data))

    def to_bytes(self) -> bytes:
        return _TIME.pack(_raw(self.hour), _raw(self.minute), _raw(self.second), _raw(self.hundredths))

    def to_time(self) -> time:
        """The time of day (hundredths not specified = 0)."""
        return _checked(
            lambda: time(
                _need(self.hour, "hour"),
                _need(self.minute, "minute"),
                _need(self.second, "second"),
                (self.hundredths or 0) * 10_000,
            )
        )

    @classmethod
    def from_time(cls, value: time) -> CosemTime:
        return cls(value.hour, value.minute, value.second, value.microsecond // 10_000)


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """A date-time (12 bytes): local date and time, its deviation to UTC and clock status.

    ``None`` marks a field that is not specified. ``deviation`` is minutes of local time
    to UTC (local + deviation = UTC); ``clock_status`` is the raw status byte (see
    :class:`ClockStatus`)."""

    year: int | None
    month: int | None
    day: int | None
    day_of_week: int | None
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None = None
    deviation: int | None = None
    clock_status: int | None = None

    SIZE = 12

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemDateTime:
        if len(data) != cls.SIZE:
            raise DLMSFrameError(f"a date-time is {cls.SIZE} bytes, got {len(data)}", field="date-time")
        return cls._unpack(_DATE_TIME.unpack(data))

    @classmethod
    def _unpack(cls, f: tuple[int, ...]) -> CosemDateTime:
        return cls(
            None if f[0] == YEAR_NOT_SPECIFIED else f[0],
            None if f[1] == NOT_SPECIFIED else f[1],
            None if f[2] == NOT_SPECIFIED else f[2],
            None if f[3] == NOT_SPECIFIED else f[3],
            None if f[4] == NOT_SPECIFIED else f[4],
            None if f[5] == NOT_SPECIFIED else f[5],
            None if f[6] == NOT_SPECIFIED else f[6],
            None if f[7] == NOT_SPECIFIED else f[7],
            None if f[8] == DEVIATION_NOT_SPECIFIED else f[8],
            None if f[9] == NOT_SPECIFIED else f[9],
        )

    def to_bytes(self) -> bytes:
        return _DATE_TIME.pack(
            _raw(self.year, YEAR_NOT_SPECIFIED),
            _raw(self.month),
            _raw(self.day),
            _raw(self.day_of_week),
            _raw(self.hour),
            _raw(self.minute),
            _raw(self.second),
            _raw(self.hundredths),
            _raw(self.deviation, DEVIATION_NOT_SPECIFIED),
            _raw(self.clock_status),
        )

    @property
    def status(self) -> ClockStatus | None:
        """The clock status as flags (``None`` when not specified)."""
        return None if self.clock_status is None else ClockStatus(self.clock_status)

    @property
    def utc_offset(self) -> timedelta | None:
        """Local time minus UTC (the negated deviation), ``None`` when not specified."""
        return None if self.deviation is None else timedelta(minutes=-self.deviation)

    def to_datetime(self, default_tz: tzinfo | None = None) -> datetime:
        """The date-time as a :class:`datetime`.

        Aware (fixed offset from the deviation) when the deviation is specified; otherwise
        the local wall time with ``default_tz`` attached, or naive when none is given.
        Hundredths not specified count as 0. Raises :class:`DLMSError` when a date or time
        field is not specified or out of range (e.g. a month of 0xFE = begin of DST)."""
        tz = default_tz if self.deviation is None else _fixed_zone(self.deviation)
        return _checked(
            lambda: datetime(
                _need(self.year, "year"),
                _need(self.month, "month"),
                _need(self.day, "day"),
                _need(self.hour, "hour"),
                _need(self.minute, "minute"),
                _need(self.second, "second"),
                (self.hundredths or 0) * 10_000,
                tzinfo=tz,
            )
        )

    @classmethod
    def from_datetime(cls, value: datetime, clock_status: int | None = 0) -> CosemDateTime:
        """Encode a datetime; aware ones get their deviation, naive ones "not specified".
        Sub-hundredth precision is dropped (the wire carries hundredths)."""
        offset = value.utcoffset()
        deviation = None if offset is None else -int(offset.total_seconds() // 60)
        return cls(
            value.year,
            value.month,
            value.day,
            value.isoweekday(),
            value.hour,
            value.minute,
            value.second,
            value.microsecond // 10_000,
            deviation,
            clock_status,
        )


_ZONES: dict[int, timezone] = {}


def _fixed_zone(deviation: int) -> timezone:
    zone = _ZONES.get(deviation)
    if zone is None:
        zone = _checked(lambda: timezone(timedelta(minutes=-deviation)))
        if len(_ZONES) < 4096:
            _ZONES[deviation] = zone
    return zone


def _need(value: int | None, name: str) -> int:
    if value is None:
        raise DLMSError(f"{name} is not specified", field=name)
    return value


def _checked(build):
    try:
        return build()
    except (ValueError, OverflowError) as exc:
        raise DLMSError(f"not a valid date or time: {exc}", field="date-time") from None
