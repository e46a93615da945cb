"""Disturbances to business as usual (RSE "disturbances to BaU", SM-CG 2.a.2/2.a.3): the
tamper and error flags a device reports, as named flags, so that a change of them becomes
one ``meter.alarm`` event (on change, not per telegram). Pure: tables and set arithmetic.

Sources:

* the M-Bus status byte (EN 13757-3:2018 table 4; wireless M-Bus TPL status, EN 13757-7
  table 5, the same low five bits) that every M-Bus reading carries in ``status`` as two hex
  digits: bits 0–1 the application status, bit 2 power low, bit 3 permanent error, bit 4
  temporary error, bits 5–7 manufacturer specific;
* an *error flags* data record (VIFE FD 17, binary, device type specific): each bit set is
  a flag ``error_flag_N``.

DLMS/COSEM devices report disturbances in their event logs, which the collector already
turns into ``meter.event`` events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from gateway.model import Reading, Severity

#: EN 13757-3 table 4: the application status (bits 0–1).
APPLICATION_STATUS = {0b00: None, 0b01: "application_busy", 0b10: "application_error",
                      0b11: "abnormal_condition"}
#: EN 13757-3 table 4: the single bits above it.
STATUS_BITS = {0x04: "power_low", 0x08: "permanent_error", 0x10: "temporary_error",
               0x20: "manufacturer_bit_5", 0x40: "manufacturer_bit_6", 0x80: "manufacturer_bit_7"}
#: Flags that make a device faulty (and its recovery when they clear).
FAULT_FLAGS = frozenset({"permanent_error"})
#: The error flags record's quantity name (VIFE FD 17).
ERROR_FLAGS_QUANTITY = "error_flags"
#: A device identity of M-Bus form (``gateway.model.mbus_device_id``): its status is the
#: status byte.
_MBUS_DEVICE = re.compile(r"[A-Z@]{3}-[0-9a-f]{8}-[0-9a-f]{2}-[0-9a-f]{2}")


def status_flags(status: int) -> set[str]:
    """The named flags of one M-Bus status byte."""
    flags = {bit_name for bit, bit_name in STATUS_BITS.items() if status & bit}
    application = APPLICATION_STATUS[status & 0b11]
    return flags | ({application} if application else set())


def error_flags(value: object) -> set[str]:
    """The flags of an error flags record's value (bytes little-endian as M-Bus sends
    binary data, or a number)."""
    if isinstance(value, (bytes, bytearray)):
        number = int.from_bytes(value, "little")
    elif isinstance(value, (int, Decimal)):
        number = int(value)
    else:
        return set()
    return {f"error_flag_{bit}" for bit in range(number.bit_length()) if number >> bit & 1}


def reported_flags(readings: Iterable[Reading]) -> tuple[str | None, set[str]] | None:
    """The flags one device reports in ``readings`` (its status byte, error flags
    records) and the status as sent; None when they carry no status it can read."""
    status: str | None = None
    flags: set[str] = set()
    seen = False
    for reading in readings:
        if reading.quantity.split(";", 1)[0] == ERROR_FLAGS_QUANTITY and ";storage=" not in reading.quantity:
            flags |= error_flags(reading.value)
            seen = True
        if status is None and reading.status and _MBUS_DEVICE.fullmatch(reading.device):
            try:
                flags |= status_flags(int(reading.status, 16))
            except ValueError:
                continue
            status, seen = reading.status, True
    return (status, flags) if seen else None


def severity_of(flags: set[str]) -> Severity:
    """An alarm's severity: error for a permanent error, warning for any flag, info when
    every flag cleared."""
    if flags & FAULT_FLAGS:
        return Severity.ERROR
    return Severity.WARNING if flags else Severity.INFO
