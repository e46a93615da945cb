"""COSEM ``Data`` as JSON with explicit types: how an operation's values travel to and from
the HES (MQTT ``op`` requests, ``op-status``, ``operation.result`` events, the CLI).

One JSON object per Data value, ``{"type": TYPE, "value": VALUE}``, where TYPE is the Data
CHOICE name of the Blue Book (IEC 62056-6-2 4.1.5) in lower case with hyphens, and VALUE:

=====================================  ==============================================================
``null-data``, ``dont-care``           no ``value`` (or ``null``)
``array``, ``structure``               a list of Data objects (each in this same form)
``boolean``                            ``true`` / ``false``
``bit-string``                         a string of ``0`` and ``1``, first bit first: ``"0101"``
``integer`` ``long`` ``double-long``,  a JSON integer; ``long64`` and ``long64-unsigned`` are
their ``-unsigned`` forms, ``enum``,   written as decimal strings (a JavaScript HES loses digits
``delta-*``, ``bcd`` (the raw byte)    beyond 2^53) and any integer is read from either form
``octet-string``                       hex digits: ``"0000600300ff"``
``visible-string``, ``utf8-string``    text
``float32``, ``float64``               the shortest decimal that reads back to the same binary value,
                                       as a string (``"1.1"``), or a JSON number on input
``date-time``, ``date``, ``time``      hex of their 12, 5 or 4 bytes; on input also ISO 8601
                                       (``"2026-04-01T00:00:00+02:00"`` with its deviation, naive
                                       = deviation not specified; ``"2026-04-01"``; ``"06:30:00"``)
=====================================  ==============================================================

Any value may instead be given as ``{"raw": HEX}``, its A-XDR encoding (tag included); the
output uses that form, with its type, for a ``compact-array`` and for a float NaN (whose payload
bits a decimal cannot carry). Examples::

    {"type": "long-unsigned", "value": 5}
    {"type": "structure", "value": [{"type": "octet-string", "value": "0000010000ff"},
                                    {"type": "double-long-unsigned", "value": 1024}]}

:func:`data_from_json` checks the value fits its type (an ``unsigned`` of 300 is refused with
where it is: ``value[1].value``); ``data_from_json(data_to_json(d)) == d`` for every Data.
"""

from __future__ import annotations

import math
import struct
from datetime import date, datetime, time
from typing import Any

from gateway.codecs.dlms.axdr import (
    INTEGER_FORMATS,
    BitString,
    Data,
    DataType,
    decode_data,
    to_decimal,
)
from gateway.codecs.dlms.dates import CosemDate, CosemDateTime, CosemTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.errors import GatewayError

#: JSON type name -> Data type, and back (``long-unsigned`` <-> LONG_UNSIGNED).
TYPE_NAMES: dict[str, DataType] = {t.name.lower().replace("_", "-"): t for t in DataType}
NAME_OF: dict[DataType, str] = {t: name for name, t in TYPE_NAMES.items()}
#: Integer types written as strings (beyond the 2^53 a double holds exactly).
_WIDE = frozenset({DataType.LONG64, DataType.LONG64_UNSIGNED})
_NULLS = frozenset({DataType.NULL_DATA, DataType.DONT_CARE})
_SEQUENCES = frozenset({DataType.ARRAY, DataType.STRUCTURE})
_TEXTS = frozenset({DataType.VISIBLE_STRING, DataType.UTF8_STRING})
_FLOATS = {DataType.FLOAT32: struct.Struct(">f"), DataType.FLOAT64: struct.Struct(">d")}
#: Date and time types: their class, and how an ISO 8601 text becomes one.
_DATES: dict[DataType, tuple[Any, Any]] = {
    DataType.DATE_TIME: (CosemDateTime, lambda text: CosemDateTime.from_datetime(datetime.fromisoformat(text), None)),
    DataType.DATE: (CosemDate, lambda text: CosemDate.from_date(date.fromisoformat(text))),
    DataType.TIME: (CosemTime, lambda text: CosemTime.from_time(time.fromisoformat(text))),
}
MAX_DEPTH = 32


class DataJsonError(GatewayError):
    """A JSON Data value that cannot be used; ``path`` says where (``value[2].type``)."""

    def __init__(self, reason: str, path: str) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


# --- Data -> JSON ------------------------------------------------------------------------


def data_to_json(data: Data) -> dict[str, Any]:
    """The JSON form of ``data`` (see the module docstring)."""
    dtype = data.type
    name = NAME_OF[dtype]
    value = data.value
    if dtype in _NULLS:
        return {"type": name}
    if dtype in _SEQUENCES:
        return {"type": name, "value": [data_to_json(item) for item in value]}
    if dtype in INTEGER_FORMATS:
        return {"type": name, "value": str(value) if dtype in _WIDE else value}
    if dtype is DataType.BOOLEAN:
        return {"type": name, "value": bool(value)}
    if dtype is DataType.BIT_STRING:
        return {"type": name, "value": str(value)}
    if dtype is DataType.OCTET_STRING:
        return {"type": name, "value": bytes(value).hex()}
    if dtype in _TEXTS:
        return {"type": name, "value": value}
    if dtype in _FLOATS and not math.isnan(value):
        return {"type": name, "value": str(to_decimal(data))}
    if dtype in _DATES:
        return {"type": name, "value": value.to_bytes().hex()}
    return {"type": name, "raw": data.to_bytes().hex()}  # compact-array, NaN


# --- JSON -> Data ------------------------------------------------------------------------


def data_from_json(document: Any, path: str = "") -> Data:
    """The Data a JSON value stands for; :class:`DataJsonError` when it cannot be one."""
    return _parse(document, path, 0)


def _parse(document: Any, path: str, depth: int) -> Data:
    if depth > MAX_DEPTH:
        raise DataJsonError(f"nested deeper than {MAX_DEPTH}", path)
    if not isinstance(document, dict):
        raise DataJsonError(f"a Data value is an object {{\"type\", \"value\"}}, not {_kind(document)}", path)
    unknown = set(document) - {"type", "value", "raw"}
    if unknown:
        raise DataJsonError(f"unknown member {sorted(unknown)[0]!r} (a Data value has type, value or raw)", path)
    if "raw" in document:
        return _raw(document, path)
    name = document.get("type")
    dtype = TYPE_NAMES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise DataJsonError(f"unknown type {name!r} (one of {', '.join(TYPE_NAMES)})", _at(path, "type"))
    where = _at(path, "value")
    value = document.get("value")
    try:
        data = _build(dtype, value, where, depth)
        data.to_bytes()  # the value fits its type (integer ranges, string lengths)
    except (ValueError, TypeError, OverflowError, struct.error, DLMSError) as exc:
        raise DataJsonError(f"not a valid {name}: {exc}", where) from None
    return data


def _build(dtype: DataType, value: Any, path: str, depth: int) -> Data:
    if dtype in _NULLS:
        if value is not None:
            raise ValueError("it carries no value")
        return Data(dtype)
    if dtype in _SEQUENCES:
        if not isinstance(value, list):
            raise ValueError(f"the value is a list of Data, not {_kind(value)}")
        return Data(dtype, tuple(_parse(item, f"{path}[{n}]", depth + 1) for n, item in enumerate(value)))
    if dtype in INTEGER_FORMATS:
        return Data(dtype, _integer(value))
    if dtype is DataType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"true or false, not {_kind(value)}")
        return Data(dtype, value)
    if dtype is DataType.BIT_STRING:
        return Data(dtype, BitString.from_bits(_text(value)))
    if dtype is DataType.OCTET_STRING:
        return Data(dtype, bytes.fromhex(_text(value)))
    if dtype in _TEXTS:
        return Data(dtype, _text(value))
    if dtype in _FLOATS:
        return Data(dtype, _float(dtype, value))
    if dtype in _DATES:
        return Data(dtype, _date(dtype, _text(value)))
    raise ValueError(f"give a {NAME_OF[dtype]} in the raw form {{\"raw\": HEX}}")


def _raw(document: dict[str, Any], path: str) -> Data:
    where = _at(path, "raw")
    try:
        data = decode_data(bytes.fromhex(_text(document["raw"])))
    except (ValueError, TypeError, DLMSError) as exc:
        raise DataJsonError(f"not the A-XDR encoding of one Data value: {exc}", where) from None
    name = document.get("type")
    if name is not None and TYPE_NAMES.get(name) is not data.type:
        raise DataJsonError(f"the raw value is a {NAME_OF[data.type]}, not a {name}", _at(path, "type"))
    if "value" in document:
        raise DataJsonError("give value or raw, not both", path)
    return data


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise ValueError(f"an integer (or its decimal string), not {_kind(value)}")


def _float(dtype: DataType, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"a decimal number or its string, not {_kind(value)}")
    number = float(value)
    if dtype is DataType.FLOAT32 and math.isfinite(number):
        packed = _FLOATS[dtype]
        number = packed.unpack(packed.pack(number))[0]  # the float32 nearest to the decimal
    return number


def _date(dtype: DataType, text: str) -> Any:
    kind, from_iso = _DATES[dtype]
    if len(text) == 2 * kind.SIZE and all(c in "0123456789abcdefABCDEF" for c in text):
        return kind.from_bytes(bytes.fromhex(text))
    return from_iso(text)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a string, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _at(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member
