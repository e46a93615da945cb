"""Data field types of EN 13757-3:2018 annex A: integers (type B), BCD (type A), 32-bit
real (type H), and the date/time types F, G, I, J and K.

All multi-byte numbers are little endian (least significant byte first). Decoders take the
data field exactly; callers check lengths first.

Exactness: integers and BCD are Python ints. A 32-bit real is reported as the shortest
decimal string that converts back to the same 32-bit float (``21.536703``, not the binary
expansion ``21.53670310974121...``): that is the float's own decimal representation, as
``Decimal(repr(f))`` is for a 64-bit float.

Dates and times are meter local time: the codec returns naive ``date``/``datetime``/
``time`` values, and the invalid (IV) and summer time (SU) bits, the leap year flag, day
of week, week and daylight saving deviation of type I, next to them in
:class:`TimeFields` (never hidden). Attaching a time zone is the collector's job, which
knows the meter's configuration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

_FLOAT32 = struct.Struct("<f")


def decode_int(data: bytes) -> int:
    """Type B: signed binary integer, two's complement, little endian."""
    return int.from_bytes(data, "little", signed=True)


def encode_int(value: int, length: int) -> bytes:
    return value.to_bytes(length, "little", signed=True)


def decode_bcd(data: bytes) -> int | None:
    """Type A: BCD, least significant byte first. 0xF in the most significant nibble
    means negative (EN 13757-3 annex A). ``None`` if any other digit is not decimal."""
    digits = data[::-1].hex()
    if digits.isdigit():
        return int(digits)
    if digits[:1] == "f" and (len(digits) == 1 or digits[1:].isdigit()):
        return -int(digits[1:] or "0")
    return None


def encode_bcd(value: int, length: int) -> bytes:
    """``length`` bytes of BCD; negative values use 0xF in the most significant nibble."""
    digits = 2 * length
    if value < 0:
        text = "f" + str(-value).rjust(digits - 1, "0")
    else:
        text = str(value).rjust(digits, "0")
    if len(text) != digits:
        raise ValueError(f"{value} does not fit {digits} BCD digits")
    return bytes.fromhex(text)[::-1]


def decode_real(data: bytes) -> Decimal:
    """Type H: IEEE 754 binary32, as the shortest decimal that round-trips to it."""
    return Decimal(shortest_float32_text(_FLOAT32.unpack(data)[0]))


def shortest_float32_text(number: float) -> str:
    if number != number or number in (float("inf"), float("-inf")):
        return repr(number)
    packed = _FLOAT32.pack(number)
    for precision in range(1, 10):
        text = f"{number:.{precision}g}"
        try:
            if _FLOAT32.pack(float(text)) == packed:
                return text
        except OverflowError:  # rounded up past the largest float32
            continue
    return repr(number)


def encode_real(value: Decimal) -> bytes:
    return _FLOAT32.pack(float(value))


@dataclass(frozen=True, slots=True)
class TimeFields:
    """A date/time data field and what it says (EN 13757-3 annex A), decoded on access.

    ``kind`` is the data type letter: ``F`` (4-byte date and time), ``G`` (date), ``I``
    (6-byte date and time with seconds), ``J`` (time) or ``K`` (daylight saving); ``raw``
    the data field as transmitted. The attributes (``year`` ... ``second``, ``invalid``
    for the IV bit, ``summer_time`` for the SU bit, ``leap_year``, ``day_of_week``,
    ``week``, ``dst_deviation_hours``, and for type K ``end_month``, ``end_day``,
    ``local_deviation_hours``, ``enabled``) are ``None`` where the type has no such field.
    """

    kind: str
    raw: bytes

    def fields(self) -> dict[str, int | bool]:
        """The fields that the type has."""
        return _FIELD_DECODERS[self.kind](self.raw)

    @property
    def invalid(self) -> bool:
        return bool(self.fields().get("invalid", False))

    @property
    def value(self) -> date | datetime | time | None:
        """The calendar value, or ``None`` when the fields do not form one (day 0,
        month 15 "every month", type K)."""
        return time_value(self.kind, self.raw)

    def as_dict(self) -> dict[str, object]:
        return {"type": self.kind, **self.fields()}


_FIELD_NAMES = (
    "year", "month", "day", "hour", "minute", "second", "summer_time", "leap_year", "day_of_week",
    "week", "dst_deviation_hours", "end_month", "end_day", "local_deviation_hours", "enabled",
)


def _field_property(name: str) -> property:
    return property(lambda self: self.fields().get(name), doc=f"The {name.replace('_', ' ')} field, if the type has one.")


for _name in _FIELD_NAMES:
    setattr(TimeFields, _name, _field_property(_name))

# Lengths of the date/time types.
TIME_TYPE_BY_LENGTH = {2: "G", 3: "J", 4: "F", 6: "I"}


def _year7(low_byte: int, high_byte: int) -> int:
    """The 7-bit year: three bits at the top of the day byte, four at the top of the
    month byte (types F, G, I)."""
    return (low_byte >> 5) | ((high_byte >> 4) << 3)


def _type_f_year(b1: int, b2: int, b3: int) -> int:
    """Type F: 1900 + 100 × hundred-year + year; meters that leave the hundred-year bits
    at 0 count 0..80 as 2000..2080 (as libmbus and jMBus also read them)."""
    year7 = _year7(b2, b3)
    hundred = (b1 >> 5) & 0x03
    year = 1900 + 100 * hundred + year7
    return year + 100 if hundred == 0 and year7 <= 80 else year


def fields_type_f(data: bytes) -> dict[str, int | bool]:
    """Type F (CP32): minute, IV | hour, hundred year, SU | day, year | month, year."""
    b0, b1, b2, b3 = data
    return {
        "year": _type_f_year(b1, b2, b3), "month": b3 & 0x0F, "day": b2 & 0x1F, "hour": b1 & 0x1F,
        "minute": b0 & 0x3F, "invalid": bool(b0 & 0x80), "summer_time": bool(b1 & 0x80),
    }


def fields_type_g(data: bytes) -> dict[str, int | bool]:
    """Type G (CP16): day, year | month, year; the year counts from 2000."""
    b0, b1 = data
    return {"year": 2000 + _year7(b0, b1), "month": b1 & 0x0F, "day": b0 & 0x1F}


def fields_type_i(data: bytes) -> dict[str, int | bool]:
    """Type I (CP48): second, SU, leap year | minute, DST sign, IV | hour, day of week |
    day, year | month, year | week, DST deviation (hours); the year counts from 2000."""
    b0, b1, b2, b3, b4, b5 = data
    deviation = b5 >> 6
    return {
        "year": 2000 + _year7(b3, b4), "month": b4 & 0x0F, "day": b3 & 0x1F, "hour": b2 & 0x1F,
        "minute": b1 & 0x3F, "second": b0 & 0x3F, "invalid": bool(b1 & 0x80), "summer_time": bool(b0 & 0x40),
        "leap_year": bool(b0 & 0x80), "day_of_week": b2 >> 5, "week": b5 & 0x3F,
        "dst_deviation_hours": deviation if b1 & 0x40 else -deviation,
    }


def fields_type_j(data: bytes) -> dict[str, int | bool]:
    """Type J (CP24): second | minute | hour."""
    b0, b1, b2 = data
    return {"hour": b2 & 0x1F, "minute": b1 & 0x3F, "second": b0 & 0x3F}


def fields_type_k(data: bytes) -> dict[str, int | bool]:
    """Type K (daylight saving): begin hour, local deviation (high) | begin day, local
    deviation (low), enable | end day, DST deviation, sign | begin month, end month."""
    b0, b1, b2, b3 = data
    deviation = (b2 >> 5) & 0x03
    return {
        "month": b3 & 0x0F, "day": b1 & 0x1F, "hour": b0 & 0x1F, "end_month": b3 >> 4, "end_day": b2 & 0x1F,
        "dst_deviation_hours": deviation if b2 & 0x80 else -deviation,
        "local_deviation_hours": ((b0 >> 5) << 2) | ((b1 >> 5) & 0x03), "enabled": bool(b1 & 0x80),
    }


_FIELD_DECODERS = {"F": fields_type_f, "G": fields_type_g, "I": fields_type_i, "J": fields_type_j, "K": fields_type_k}


def time_value(kind: str, data: bytes) -> date | datetime | time | None:
    """The naive date/datetime/time a type F, G, I or J field holds, or ``None`` when its
    fields are no calendar value (day 0, month 0 or 15 ...) and for type K."""
    try:
        if kind == "F":
            b0, b1, b2, b3 = data
            return datetime(_type_f_year(b1, b2, b3), b3 & 0x0F, b2 & 0x1F, b1 & 0x1F, b0 & 0x3F)
        if kind == "G":
            b0, b1 = data
            return date(2000 + _year7(b0, b1), b1 & 0x0F, b0 & 0x1F)
        if kind == "I":
            b0, b1, b2, b3, b4, _ = data
            return datetime(2000 + _year7(b3, b4), b4 & 0x0F, b3 & 0x1F, b2 & 0x1F, b1 & 0x3F, b0 & 0x3F)
        if kind == "J":
            b0, b1, b2 = data
            return time(b2 & 0x1F, b1 & 0x3F, b0 & 0x3F)
    except ValueError:
        return None
    return None


def encode_time_value(value: date | datetime | time, length: int, *, invalid: bool = False,
                      summer_time: bool = False) -> bytes:
    """Encode a date/time value as type G (2 bytes), J (3), F (4) or I (6).

    Type I gets the day of week and ISO week of the date; the leap year flag follows the
    calendar."""
    kind = TIME_TYPE_BY_LENGTH.get(length)
    if kind == "J":
        if not isinstance(value, time):
            raise ValueError("type J carries a time of day")
        return bytes([value.second, value.minute, value.hour])
    if not isinstance(value, date) or (kind != "G" and not isinstance(value, datetime)):
        raise ValueError(f"type {kind} needs a {'date' if kind == 'G' else 'datetime'}, got {value!r}")
    if kind == "G":
        year7 = _year_since(value.year, 2000)
        return bytes([value.day | (year7 & 0x07) << 5, value.month | (year7 >> 3) << 4])
    if kind == "F":
        year7, hundred = _type_f_coded_year(value.year)
        return bytes([
            value.minute | (0x80 if invalid else 0),
            value.hour | hundred << 5 | (0x80 if summer_time else 0),
            value.day | (year7 & 0x07) << 5,
            value.month | (year7 >> 3) << 4,
        ])
    if kind == "I":
        year7 = _year_since(value.year, 2000)
        leap = value.year % 4 == 0 and (value.year % 100 != 0 or value.year % 400 == 0)
        return bytes([
            value.second | (0x40 if summer_time else 0) | (0x80 if leap else 0),
            value.minute | (0x80 if invalid else 0),
            value.hour | value.isoweekday() << 5,
            value.day | (year7 & 0x07) << 5,
            value.month | (year7 >> 3) << 4,
            value.isocalendar()[1],
        ])
    raise ValueError(f"no date/time type is {length} bytes long")


def _year_since(year: int, base: int) -> int:
    if not base <= year <= base + 99:
        raise ValueError(f"year {year} is outside {base}..{base + 99}")
    return year - base


def _type_f_coded_year(year: int) -> tuple[int, int]:
    """(year, hundred-year) as most meters send them: 1981..2080 with hundred-year 0."""
    if 1981 <= year <= 2080:
        return year % 100, 0
    if 2081 <= year <= 2199:
        return (year - 1900) % 100, (year - 1900) // 100
    raise ValueError(f"year {year} cannot be coded in data type F")
