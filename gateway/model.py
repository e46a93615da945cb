"""The shared vocabulary: what flows from the codecs' collectors to the store and uplinks.

A :class:`Reading` is one measured value of one device at one time; an :class:`Event` is
something that happened (alarm, communication loss, dropped data, restart ...). Both are
*records*: stored and sent the same way, each with a gateway-wide sequence number given by
the store. Nothing here has behaviour beyond formatting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Context, Decimal
from typing import Union

#: An exact value. Numbers are ``Decimal`` (never float: billing data); text is ``str``;
#: dates and times are ``datetime``/``date``/``time``; opaque data is ``bytes``.
Value = Union[Decimal, str, bytes, datetime, date, time, bool, None]

#: The context for arithmetic on values from the wire (scaling, corrections): the default
#: context keeps 28 digits and would round silently. 80 holds the longest M-Bus mantissa (30
#: BCD digits) shifted by any VIF/VIFE scaling and additive correction, and every DLMS number.
EXACT = Context(prec=80)


def value_text(value: Value) -> str | None:
    """Print a value the way it travels in JSON: exact decimal strings, ISO 8601, hex."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"not a reading value: {type(value).__name__}")


def decimal_text(number: Decimal) -> str:
    """A Decimal as a plain decimal string, never in exponent form.

    ``Decimal("1.2E+3")`` prints ``1200``; ``Decimal("-0.0010")`` keeps its digits.
    """
    return format(number, "f")


def scaled(mantissa: int, scaler: int) -> Decimal:
    """The exact value ``mantissa × 10**scaler`` (as DLMS and M-Bus both express it)."""
    return Decimal(mantissa).scaleb(scaler, EXACT)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def mbus_device_id(manufacturer: str, serial: str, version: int, medium: int) -> str:
    """The stable identity of an M-Bus (wired or wireless) device: its secondary address
    fields, e.g. ``KAM-12345678-1b-04`` (manufacturer, identification number, version hex,
    medium/device type hex). The same meter heard wired or on the air has one identity."""
    return f"{manufacturer}-{serial}-{version:02x}-{medium:02x}"


def dlms_device_id(logical_device_name: str) -> str:
    """The stable identity of a DLMS/COSEM device: ``dlms-`` and its logical device name."""
    return f"dlms-{logical_device_name}"


#: ``Reading.protection``: what protected the frame a value came from, as received —
#: ``PROTECTION:MECHANISM`` (``none`` alone when nothing did).
PROTECTIONS = {
    "none": "no cryptographic protection",
    "encrypted:wmbus-mode5": "wireless M-Bus TPL security mode 5 (AES-128-CBC; no MAC)",
    "encrypted:wmbus-ell": "wireless M-Bus ELL encryption (AES-128-CTR; no MAC)",
    "authenticated+encrypted:wmbus-mode7": "wireless M-Bus mode 7 (AES-128-CBC, AFL CMAC verified)",
    "authenticated:dlms-suite0": "DLMS/COSEM suite 0, GMAC tag checked (Green Book 9.2.7)",
    "encrypted:dlms-suite0": "DLMS/COSEM suite 0, AES-GCM encryption without tag",
    "authenticated+encrypted:dlms-suite0": "DLMS/COSEM suite 0, AES-GCM with tag checked",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value of one device at one time.

    ``quantity`` is readable and unique within the device (it carries the qualifiers that
    make it so: storage number, tariff, subunit, function); ``obis`` is set where an OBIS
    code applies. ``status`` holds the device's own status/error flags untouched (hex or the
    device's text); ``raw`` is the frame the value came from, kept for audit.

    The device lifecycle (:mod:`gateway.lifecycle`) adds: ``point``, the metering point the
    device serves; ``metrological``, whether the value is legally relevant (billing) by the
    device's declaration (None: undeclared); ``protection``, how the frame was protected as
    received (:data:`PROTECTIONS`, set by the collector); ``flags`` such as ``calibration``.
    """

    device: str
    quantity: str
    value: Value
    unit: str | None
    captured_at: datetime
    meter_time: datetime | None = None
    obis: str | None = None
    status: str | None = None
    raw: bytes | None = None
    point: str | None = None
    metrological: bool | None = None
    protection: str | None = None
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware")
        if self.meter_time is not None and self.meter_time.tzinfo is None:
            raise ValueError("meter_time must be timezone-aware")
        if isinstance(self.value, float):
            raise TypeError("a reading value is never a float; use Decimal")
        # Text that UTF-8 cannot carry (lone surrogates, e.g. bytes decoded with
        # ``surrogateescape``) is refused here, so it never reaches the store or the HES.
        for text in (self.device, self.quantity, self.value, self.unit, self.obis, self.status):
            if isinstance(text, str) and not text.isascii():
                _check_utf8(self, text)


def _check_utf8(reading: Reading, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        name = next(name for name in ("device", "quantity", "value", "unit", "obis", "status")
                    if getattr(reading, name) is text)
        raise ValueError(f"Reading.{name} is not valid UTF-8 text (character {exc.start}: "
                         f"{text[exc.start:exc.end]!r})") from None


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: an alarm, a communication loss, dropped data, a restart.

    ``code`` is a dotted name from a fixed vocabulary (``comm.timeout``, ``store.dropped``,
    ``gateway.start`` ...); ``details`` holds the facts an HES needs (counts, reasons).
    """

    code: str
    severity: Severity
    message: str
    occurred_at: datetime
    device: str | None = None
    source: str | None = None
    details: dict[str, str | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")


Record = Union[Reading, Event]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as the store keeps it: its gateway-wide sequence number (never reused) and
    the gateway time at which it was committed."""

    seq: int
    record: Record
    stored_at: datetime
