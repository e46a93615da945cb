"""From COSEM attributes to readings: object specifications, readable names, exact values.

* :func:`parse_object` reads the configuration's ``OBIS[:CLASS:ATTR]`` (default class 3
  Register, attribute 2 its value);
* :func:`quantity_name` names an OBIS code for people (``active_energy_import;tariff=1``),
  from a small table of common codes (IEC 62056-6-1 / the OBIS code list), else the code
  itself (``1-0:96.5.0*255``);
* :func:`reading_value` turns A-XDR Data into an exact :data:`~gateway.model.Value`:
  integers, BCD and reals become ``Decimal`` (scaled by the register's scaler_unit, exact;
  reals as the shortest decimal that reads back to the same binary value), date-times
  become aware datetimes, booleans stay booleans, text stays text, other octet strings stay
  bytes, structures and arrays become a JSON text of their values. A utf8-string that is
  not valid UTF-8 arrives from the codec as its raw bytes and stays bytes (reported as hex,
  like an octet string): the meter's other values are read as usual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from gateway.codecs.dlms.axdr import INTEGER_TYPES, BitString, Data, DataType, to_decimal
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.units import ScalerUnit
from gateway.model import EXACT, Value

# COSEM interface classes (Blue Book 4.5) the collector treats specially.
DATA_CLASS = 1
REGISTER_CLASS = 3
EXTENDED_REGISTER_CLASS = 4
DEMAND_REGISTER_CLASS = 5
PROFILE_GENERIC_CLASS = 7
CLOCK_CLASS = 8
DISCONNECT_CONTROL_CLASS = 70

#: Which attribute holds scaler_unit, per register-like class (Blue Book 4.3.2, 4.3.3, 4.3.4).
SCALER_UNIT_ATTRIBUTE = {REGISTER_CLASS: 3, EXTENDED_REGISTER_CLASS: 3, DEMAND_REGISTER_CLASS: 4}
#: Attributes whose values the scaler applies to: Register/Extended register value (2);
#: Demand register current and last average value (2, 3).
SCALED_ATTRIBUTES = {REGISTER_CLASS: {2}, EXTENDED_REGISTER_CLASS: {2}, DEMAND_REGISTER_CLASS: {2, 3}}
#: The status attribute (Extended register 4, Demand register 5) and capture time.
STATUS_ATTRIBUTE = {EXTENDED_REGISTER_CLASS: 4, DEMAND_REGISTER_CLASS: 5}
CAPTURE_TIME_ATTRIBUTE = {EXTENDED_REGISTER_CLASS: 5, DEMAND_REGISTER_CLASS: 6}
#: The attribute a reading of each class takes by default (the value; Clock: time).
VALUE_ATTRIBUTE = 2

LOGICAL_DEVICE_NAME = Obis(0, 0, 42, 0, 0, 255)
CLOCK = Obis(0, 0, 1, 0, 0, 255)
DISCONNECT_CONTROL = Obis(0, 0, 96, 3, 10, 255)

#: Abstract and well-known objects, by full code.
NAMES_BY_CODE: dict[Obis, str] = {
    LOGICAL_DEVICE_NAME: "logical_device_name",
    CLOCK: "clock",
    Obis(0, 0, 96, 1, 0, 255): "device_id_1",
    Obis(0, 0, 96, 1, 1, 255): "device_id_2",
    Obis(1, 0, 0, 2, 0, 255): "firmware_version",
    Obis(0, 0, 96, 14, 0, 255): "current_tariff",
    Obis(1, 0, 99, 1, 0, 255): "load_profile_1",
    Obis(1, 0, 99, 2, 0, 255): "load_profile_2",
    Obis(0, 0, 99, 98, 0, 255): "standard_event_log",
}
#: Electricity (A = 1) by quantity C and processing D; E is the tariff, F the billing period.
ELECTRICITY_QUANTITIES = {
    1: "active_import", 2: "active_export", 3: "reactive_import", 4: "reactive_export",
    9: "apparent_import", 10: "apparent_export", 13: "power_factor", 14: "frequency",
    21: "active_import_l1", 41: "active_import_l2", 61: "active_import_l3",
    31: "current_l1", 51: "current_l2", 71: "current_l3", 91: "current_neutral",
    32: "voltage_l1", 52: "voltage_l2", 72: "voltage_l3",
}
ELECTRICITY_PROCESSING = {
    7: "instantaneous", 8: "energy", 6: "maximum_demand", 4: "current_average", 5: "last_average",
    9: "energy_delta", 29: "energy_delta",
}
#: Quantities that already say what they are: no processing suffix for instantaneous values.
_PLAIN_INSTANTANEOUS = {13, 14, 31, 51, 71, 91, 32, 52, 72}
#: Disconnect control (class 70): attribute names (Blue Book 4.5.8).
DISCONNECT_ATTRIBUTES = {2: "output_state", 3: "control_state", 4: "control_mode"}


@dataclass(frozen=True, slots=True, order=True)
class ObjectSpec:
    """One attribute to read: ``OBIS[:CLASS:ATTR]``."""

    class_id: int
    obis: Obis
    attribute: int

    def __str__(self) -> str:
        return f"{self.obis.dotted}:{self.class_id}:{self.attribute}"


def parse_object(text: str, default_class: int = REGISTER_CLASS) -> ObjectSpec:
    """``1.0.1.8.0.255`` → Register value; ``0.0.1.0.0.255:8:2`` → Clock time."""
    obis_text, sep, rest = text.strip().partition(":") if _dotted_first(text) else _split_reduced(text)
    if sep:
        parts = rest.split(":")
        if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
            raise DLMSError(f"{text!r}: expected OBIS[:CLASS:ATTR]", field="object")
        class_id, attribute = int(parts[0]), int(parts[1])
    else:
        class_id, attribute = default_class, VALUE_ATTRIBUTE
    if not 0 <= class_id <= 0xFFFF or not -128 <= attribute <= 127:
        raise DLMSError(f"{text!r}: class 0..65535, attribute -128..127", field="object")
    return ObjectSpec(class_id, Obis.parse(obis_text), attribute)


def _dotted_first(text: str) -> bool:
    return "-" not in text.split(":", 1)[0]


def _split_reduced(text: str) -> tuple[str, str, str]:
    """``1-0:1.8.0*255:3:2`` has a colon inside the OBIS code itself."""
    head, sep, tail = text.strip().partition(":")
    obis_tail, sep2, rest = tail.partition(":")
    return f"{head}:{obis_tail}", sep2, rest


def quantity_name(obis: Obis, class_id: int | None = None, attribute: int = VALUE_ATTRIBUTE) -> str:
    """A readable name for an attribute, unique within the device (see the module docstring)."""
    name = NAMES_BY_CODE.get(obis) or _electricity_name(obis) or str(obis)
    if class_id == DISCONNECT_CONTROL_CLASS:
        return f"disconnect_{DISCONNECT_ATTRIBUTES.get(attribute, f'attribute_{attribute}')}"
    if attribute != VALUE_ATTRIBUTE:
        name += f";attribute={attribute}"
    return name


def _electricity_name(obis: Obis) -> str | None:
    if obis.a != 1 or obis.c not in ELECTRICITY_QUANTITIES or obis.d not in ELECTRICITY_PROCESSING:
        return None
    quantity = ELECTRICITY_QUANTITIES[obis.c]
    processing = ELECTRICITY_PROCESSING[obis.d]
    if processing == "energy" and obis.c not in _PLAIN_INSTANTANEOUS:
        name = quantity.replace("_", "_energy_", 1)  # active_import -> active_energy_import
    elif processing == "instantaneous":
        # active_import -> active_power_import; voltage_l1 stays voltage_l1
        name = quantity if obis.c in _PLAIN_INSTANTANEOUS else quantity.replace("_", "_power_", 1)
    else:
        name = f"{quantity}_{processing}"
    if obis.e:
        name += f";tariff={obis.e}"
    if obis.f != 255:
        name += f";billing_period={obis.f}"
    if obis.b:
        name += f";channel={obis.b}"
    return name


def device_name_text(data: Data) -> str:
    """The logical device name (an octet string of up to 16 printable characters, Blue
    Book 4.1.8.2) as text; bytes that are not printable ASCII as hex."""
    raw = data.value
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (bytes, bytearray)) and raw and all(0x20 < b < 0x7F for b in raw):
        return bytes(raw).decode("ascii")
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).hex()
    raise DLMSError(f"logical device name is {data.type.name}, not an octet string", field="logical_device_name")


def date_time_of(data: Data, tz: tzinfo) -> datetime:
    """A date-time attribute (octet-string of 12 bytes or date-time), aware: the meter's
    deviation when it states one, else the gateway's time zone."""
    value = data.value
    if isinstance(value, (bytes, bytearray)):
        value = CosemDateTime.from_bytes(bytes(value))
    if not isinstance(value, CosemDateTime):
        raise DLMSError(f"{data.type.name} is not a date-time", field="date-time")
    moment = value.to_datetime(tz)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def is_date_time(data: Data) -> bool:
    return data.type is DataType.DATE_TIME or (
        data.type is DataType.OCTET_STRING and len(data.value) == CosemDateTime.SIZE and _plausible_date(data.value))


def _plausible_date(raw: bytes) -> bool:
    """An octet string of 12 bytes that decodes as a date-time with a real date (profiles
    keep date-times in octet strings, as the Clock's time attribute is typed)."""
    try:
        moment = CosemDateTime.from_bytes(bytes(raw))
    except DLMSError:
        return False
    return moment.year is not None and moment.month is not None and 1 <= moment.month <= 12 \
        and moment.day is not None and 1 <= moment.day <= 31


def reading_value(data: Data, tz: tzinfo, scaler_unit: ScalerUnit | None = None) -> Value:
    """The exact value of one attribute (see the module docstring)."""
    dtype = data.type
    if dtype in INTEGER_TYPES or dtype in (DataType.BCD, DataType.FLOAT32, DataType.FLOAT64):
        number = to_decimal(data)
        return number.scaleb(scaler_unit.scaler, EXACT) if scaler_unit is not None else number
    if dtype is DataType.BOOLEAN:
        return bool(data.value)
    if dtype is DataType.NULL_DATA:
        return None
    if dtype in (DataType.VISIBLE_STRING, DataType.UTF8_STRING):
        return data.value
    if is_date_time(data):
        return date_time_of(data, tz)
    if dtype is DataType.OCTET_STRING:
        return bytes(data.value)
    if dtype is DataType.BIT_STRING:
        return str(data.value)
    return json.dumps(_plain(data), separators=(",", ":"))


def _plain(data: Data):
    value = data.to_python() if data.type not in (DataType.ARRAY, DataType.STRUCTURE) else None
    if data.type in (DataType.ARRAY, DataType.STRUCTURE):
        return [_plain(item) for item in data.value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (BitString, CosemDateTime)) or not isinstance(value, (int, str, bool, type(None))):
        number = _number_text(data)
        return number if number is not None else str(value)
    return value


def _number_text(data: Data) -> str | None:
    try:
        return format(to_decimal(data), "f")
    except DLMSError:
        return None


def status_text(data: Data) -> str:
    """A register's status as the meter sent it: integers as hex, bit strings as bits."""
    value = data.value
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:X}"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)


def decimal_seconds(seconds: float) -> Decimal:
    """A clock deviation to the hundredth (what a COSEM clock resolves)."""
    return Decimal(round(seconds * 100)).scaleb(-2, EXACT)
