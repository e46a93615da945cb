"""How the gateway's records become COSEM: logical device names, OBIS codes, units, values.

Rules (they are the public contract with the HES; changing one changes what it reads):

* **Logical device name** (Blue Book 4.3.1 / Green Book: ``octet-string SIZE(0..16)``) of a
  meter, from its device id: a DLMS meter (``dlms-NAME``) keeps its own name when it fits;
  otherwise the id's letters and digits (``KAM-12345678-1b-04`` → ``KAM123456781b04``, 15
  characters: manufacturer, identification number, version, medium); an id whose letters
  and digits exceed 16 characters becomes its first 9 of them and 7 hex digits of its
  SHA-256 (``abcdefghi3F2A9C1``). The management logical device is named the same way from
  the gateway id. Should two names ever collide, the registry gives the later device the
  16-hex-digit digest form; the name is kept with the SAP, so it never changes afterwards.
* **OBIS code** of a quantity: the reading's own ``obis`` where it has one that is valid and
  not taken (by another quantity of the meter or by an object every logical device has);
  otherwise the next free code of the manufacturer-specific range ``0-0:128.D.E*255``
  (IEC 62056-6-1: value group C 128..199 is manufacturer specific), numbered in the order the
  quantities first appeared: D = n // 255, E = n % 255. The quantity directory object
  ``0-0:129.0.0*255`` of each meter lists code, quantity name and unit.
* **Unit** (Blue Book 4.3.2 enumeration): the reading's unit text looked up among the
  symbols of :data:`gateway.codecs.dlms.units.UNITS` and a few spellings the collectors use;
  a decimal prefix (k, M, G, m) is taken into the scaler (``kWh`` is Wh with 10^3). No unit
  is 255 (count); an unknown unit is 254 (other) and its text is in the directory.
* **Value**: exact. A number is an integer mantissa with the register's scaler: the scaler
  is the smallest decimal exponent of every value the quantity ever had (so every stored
  value is an integer at it), and it only ever decreases. The mantissa travels as
  double-long when it fits 32 bits, else long64 (or long64-unsigned); a value that cannot be
  carried exactly (beyond 64 bits at the scaler, NaN, infinities) is null-data. Text is
  visible-string (ASCII) or utf8-string, bytes octet-string, a date-time the 12-byte COSEM
  date-time octet-string in UTC (deviation 0), a boolean boolean.
"""

from __future__ import annotations

import hashlib
import re
import struct
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.dates import CosemDate, CosemDateTime, CosemTime
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.units import UNITS
from gateway.errors import ProtocolError

MAX_NAME = 16
#: Value group C of the manufacturer-specific codes the gateway hands out (IEC 62056-6-1).
ABSTRACT_C = 128
#: ... and of its own manufacturer-specific objects (directories, columns).
GATEWAY_C = 129
UNIT_COUNT = 255
UNIT_OTHER = 254
SCALER_MIN, SCALER_MAX = -128, 127  # scaler is an Integer (Blue Book 4.3.2)

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,16}")


def logical_device_name(device: str) -> bytes:
    """The logical device name of a device id (see the module docstring)."""
    own = device.removeprefix("dlms-")
    if own != device and _PRINTABLE.fullmatch(own):
        return own.encode("ascii")
    compact = _NOT_ALNUM.sub("", device.encode("ascii", "ignore").decode("ascii"))
    if 0 < len(compact) <= MAX_NAME:
        return compact.encode("ascii")
    return (compact[:9] + digest_name(device)[:7]).encode("ascii")


def digest_name(device: str) -> str:
    """16 hex digits of the id's SHA-256: the name given when the usual one is taken."""
    return hashlib.sha256(device.encode("utf-8")).hexdigest()[:MAX_NAME].upper()


def abstract_obis(index: int) -> Obis:
    """The ``index``-th manufacturer-specific code of a meter: ``0-0:128.D.E*255``."""
    if not 0 <= index < 128 * 255:
        raise ValueError(f"no abstract OBIS code for index {index}")
    return Obis(0, 0, ABSTRACT_C, index // 255, index % 255)


def reading_obis(text: str | None) -> Obis | None:
    """The OBIS code a reading carries, if it is a valid one outside the gateway's own
    manufacturer-specific groups."""
    if not text:
        return None
    try:
        obis = Obis.parse(text)
    except ProtocolError:
        return None
    return None if obis.c in (ABSTRACT_C, GATEWAY_C) else obis


# --- units ------------------------------------------------------------------------------

def _symbols() -> dict[str, int]:
    table: dict[str, int] = {}
    for code in sorted(UNITS):  # the lower code wins (13 volume before 14 corrected volume)
        table.setdefault(UNITS[code][0], code)
    return table


#: Unit text -> DLMS unit code: the Blue Book symbols and the spellings the collectors use.
UNIT_CODES: dict[str, int] = {
    **_symbols(),
    "l": 19, "L": 19, "deg": 8, "degC": 9, "currency unit": 10, "year": 1, "years": 1,
    "month": 2, "months": 2, "day": 4, "days": 4, "hour": 5, "hours": 5, "minute": 6, "minutes": 6,
    "second": 7, "seconds": 7, "m3": 13, "m3/h": 15, "ohm": 38,
}
#: Decimal prefixes taken into the scaler.
PREFIXES = {"k": 3, "M": 6, "G": 9, "m": -3}


def dlms_unit(text: str | None) -> tuple[int, int]:
    """``(unit code, power of ten)`` of a unit text: ``kWh`` is ``(30, 3)``."""
    if text is None or not text.strip():
        return UNIT_COUNT, 0
    text = text.strip()
    code = UNIT_CODES.get(text)
    if code is not None:
        return code, 0
    prefix = PREFIXES.get(text[0])
    if prefix is not None and text[1:] in UNIT_CODES:
        return UNIT_CODES[text[1:]], prefix
    return UNIT_OTHER, 0


# --- values -----------------------------------------------------------------------------

NULL = b"\x00"


def exponent(value: Any) -> int | None:
    """The decimal exponent of a finite number, ``None`` for anything else."""
    if isinstance(value, Decimal):
        return value.as_tuple().exponent if value.is_finite() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return 0
    return None


def clamp_scaler(value: int) -> int:
    return max(SCALER_MIN, min(SCALER_MAX, value))


def mantissa(value: Any, shift: int) -> int | None:
    """``value × 10^shift`` when it is an integer, else None. Exact for any number of
    digits (Decimal arithmetic would round to its context's 28 digits)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        return None
    number = Decimal(value) if isinstance(value, int) else value
    if not number.is_finite():
        return None
    sign, digits, exp = number.as_tuple()
    coefficient = int("".join(map(str, digits)) or "0")
    power = exp + shift
    if coefficient == 0:
        return 0
    if power > 40:  # far beyond 64 bits
        return None
    if power >= 0:
        result = coefficient * 10**power
    else:
        result, rest = divmod(coefficient, 10**-power)
        if rest:
            return None
    return -result if sign else result


#: The integer types a mantissa travels as, smallest first: (type, lowest, highest, packer).
_INTEGERS = (
    (DataType.DOUBLE_LONG, -(1 << 31), (1 << 31) - 1, struct.Struct(">i").pack),
    (DataType.LONG64, -(1 << 63), (1 << 63) - 1, struct.Struct(">q").pack),
    (DataType.LONG64_UNSIGNED, 0, (1 << 64) - 1, struct.Struct(">Q").pack),
)


def encode_integer(number: int | None) -> bytes:
    """The A-XDR bytes of a mantissa: double-long, long64 or long64-unsigned; null-data
    when it does not fit 64 bits (or is None)."""
    if number is not None:
        for dtype, lowest, highest, pack in _INTEGERS:
            if lowest <= number <= highest:
                return bytes((dtype,)) + pack(number)
    return NULL


def integer_data(number: int | None) -> Data:
    """:func:`encode_integer` as Data."""
    if number is not None:
        for dtype, lowest, highest, _ in _INTEGERS:
            if lowest <= number <= highest:
                return Data(dtype, number)
    return Data(DataType.NULL_DATA)


def date_time_bytes(moment: datetime) -> bytes:
    """The 12-byte COSEM date-time of an aware time, in UTC (deviation 0, status 0)."""
    return CosemDateTime.from_datetime(moment.astimezone(timezone.utc)).to_bytes()


def date_time_data(moment: datetime) -> Data:
    return Data(DataType.OCTET_STRING, date_time_bytes(moment))


def text_data(text: str) -> Data:
    if text.isascii() and text.isprintable():
        return Data(DataType.VISIBLE_STRING, text)
    return Data(DataType.UTF8_STRING, text)


def value_data(value: Any) -> Data:
    """A non-numeric reading value as Data (see the module docstring)."""
    if value is None:
        return Data(DataType.NULL_DATA)
    if isinstance(value, bool):
        return Data(DataType.BOOLEAN, value)
    if isinstance(value, str):
        return text_data(value)
    if isinstance(value, (bytes, bytearray)):
        return Data(DataType.OCTET_STRING, bytes(value))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return Data(DataType.OCTET_STRING, CosemDateTime.from_datetime(value).to_bytes())
        return date_time_data(value)
    if isinstance(value, date):
        return Data(DataType.OCTET_STRING, CosemDate.from_date(value).to_bytes())
    if isinstance(value, time):
        return Data(DataType.OCTET_STRING, CosemTime.from_time(value).to_bytes())
    return Data(DataType.NULL_DATA)
