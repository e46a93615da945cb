"""Values held in Modbus registers, decoded exactly.

A Modbus register is 16 bits, sent most significant byte first (Modbus Application
Protocol V1.1b3, 4.2). Wider values span consecutive registers in an order the standard
leaves to the device, and a few devices also swap the two bytes of each register, so a
register map names both for every entry:

* ``word_order``: ``big`` = the register at the lowest address holds the most significant
  16 bits (Eastron's "normal" register order, ABB's order); ``little`` = the least
  significant first;
* ``byte_order``: ``big`` = each register as the standard sends it; ``little`` = the two
  bytes of each register swapped.

Integers are exact by nature; a scale factor is applied in :class:`~decimal.Decimal`.
An IEEE 754 float is reported as the *shortest* decimal that reads back as the same float
of its width: for a float32 the meter holds, e.g., ``0x43661999`` (230.1 rounded to 24
bits) and this module reports ``Decimal("230.1")``, not the binary expansion
``230.1000061035156``: that is ``Decimal(repr(x))`` done at float32 precision, the
meter's own number. A NaN or an infinity is no number: :func:`decode_value` returns no
value and names it in ``status``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext
from typing import Literal

from gateway.codecs.modbus.errors import RegisterValueError

Order = Literal["big", "little"]


@dataclass(frozen=True, slots=True)
class DataType:
    """A register data type: how many registers it takes and how its bytes read."""

    name: str
    registers: int
    #: struct format character of the big-endian value.
    code: str

    @property
    def is_float(self) -> bool:
        return self.code in "fd"

    @property
    def signed(self) -> bool:
        return self.code in "hiqfd"


#: The data types of register maps, by the names the maps use.
DATA_TYPES: dict[str, DataType] = {t.name: t for t in (
    DataType("int16", 1, "h"),
    DataType("uint16", 1, "H"),
    DataType("int32", 2, "i"),
    DataType("uint32", 2, "I"),
    DataType("int64", 4, "q"),
    DataType("uint64", 4, "Q"),
    DataType("float32", 2, "f"),
    DataType("float64", 4, "d"),
)}

#: A float32 reads back exactly from 9 significant digits (IEEE 754-2008, 5.12.2).
FLOAT32_DIGITS = 9
#: Working precision for scaling: far more digits than a 64-bit integer times any factor
#: a map may hold, so every product is exact (the context traps Inexact to prove it).
_SCALE_PRECISION = 80


def value_bytes(words: Sequence[int], word_order: Order = "big", byte_order: Order = "big") -> bytes:
    """The registers' bytes in big-endian value order."""
    if any(not 0 <= word <= 0xFFFF for word in words):
        raise RegisterValueError(f"a register holds 0..65535, got {list(words)}", field="registers")
    ordered = words if word_order == "big" else list(reversed(words))
    return b"".join(word.to_bytes(2, byte_order) for word in ordered)


def value_words(data: bytes, word_order: Order = "big", byte_order: Order = "big") -> tuple[int, ...]:
    """The registers holding the big-endian value ``data`` (the inverse of :func:`value_bytes`)."""
    words = [int.from_bytes(data[i:i + 2], byte_order) for i in range(0, len(data), 2)]
    return tuple(words if word_order == "big" else reversed(words))


def decode_raw(words: Sequence[int], data_type: DataType, word_order: Order = "big",
               byte_order: Order = "big") -> int | float:
    """The integer or float the registers hold, before any scaling."""
    if len(words) != data_type.registers:
        raise RegisterValueError(f"{data_type.name} takes {data_type.registers} registers, got {len(words)}",
                                 field="registers")
    return struct.unpack(">" + data_type.code, value_bytes(words, word_order, byte_order))[0]


def encode_raw(value: int | float, data_type: DataType, word_order: Order = "big",
               byte_order: Order = "big") -> tuple[int, ...]:
    """The registers that hold ``value`` (simulated meters, tests, writes)."""
    try:
        data = struct.pack(">" + data_type.code, value)
    except (struct.error, OverflowError) as exc:
        raise RegisterValueError(f"{value!r} does not fit {data_type.name}: {exc}", field="value") from None
    return value_words(data, word_order, byte_order)


def float32_decimal(value: float) -> Decimal:
    """The shortest decimal that reads back as the float32 ``value`` (finite), e.g.
    ``Decimal("230.1")`` for the float32 nearest to 230.1. Each candidate is the value
    correctly rounded to 1, 2 ... 9 significant digits; the first that rounds back to
    the same float32 is the answer."""
    for digits in range(1, FLOAT32_DIGITS + 1):
        text = f"{value:.{digits}g}"
        if _float32(float(text)) == value:
            number = Decimal(text)
            # As repr prints floats: whole numbers below 1e16 without an exponent (50, not 5E+1).
            return Decimal(int(number)) if number.as_tuple().exponent > 0 and number.adjusted() < 16 else number
    raise AssertionError(f"{value!r} is no float32")  # 9 digits always read back


def float64_decimal(value: float) -> Decimal:
    """The shortest decimal that reads back as the float64 ``value``: Python's repr."""
    return Decimal(repr(value))


def _float32(value: float) -> float | None:
    """``value`` rounded to float32; None beyond its range (a candidate rounded up past
    the largest float32)."""
    try:
        return struct.unpack(">f", struct.pack(">f", value))[0]
    except OverflowError:
        return None


def scale_value(raw: Decimal | int, factor: Decimal | None) -> Decimal:
    """``raw × factor`` exactly (no factor: the raw value as a Decimal)."""
    number = raw if isinstance(raw, Decimal) else Decimal(raw)
    if factor is None:
        return number
    with localcontext() as context:
        context.prec = _SCALE_PRECISION
        context.traps[Inexact] = True
        return number * factor


@dataclass(frozen=True, slots=True)
class Decoded:
    """A register value: ``value`` exact, or None with ``status`` saying why (a NaN,
    an infinity, or the device's "not available" marker)."""

    value: Decimal | None
    status: str | None = None


def decode_value(words: Sequence[int], data_type: DataType, *, word_order: Order = "big", byte_order: Order = "big",
                 factor: Decimal | None = None, not_available: int | None = None) -> Decoded:
    """The exact value of one map entry's registers (see the module docstring).

    ``not_available`` is a register word by which the device marks a value it does not
    measure (ABB fills such registers with 0xFFFF): when every register of an unsigned
    integer holds it, the result has no value and status ``not-available``. Signed and
    float entries are read as they are (all-0xFFFF is -1 in a signed one, a NaN in a float).
    """
    raw = decode_raw(words, data_type, word_order, byte_order)
    if not_available is not None and not data_type.signed and all(word == not_available for word in words):
        return Decoded(None, "not-available")
    if isinstance(raw, float):
        if math.isnan(raw):
            return Decoded(None, "NaN")
        if math.isinf(raw):
            return Decoded(None, "+Infinity" if raw > 0 else "-Infinity")
        exact = float32_decimal(raw) if data_type.registers == 2 else float64_decimal(raw)
        return Decoded(scale_value(exact, factor))
    return Decoded(scale_value(raw, factor))
