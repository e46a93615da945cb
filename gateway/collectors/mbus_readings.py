"""EN 13757-3 data records as Readings: the one naming rule of wired and wireless M-Bus.

A meter read on the wire (:mod:`gateway.collectors.mbus`) and the same meter heard on the
air (:mod:`gateway.collectors.wmbus`) give the same quantity names, values and meter time,
so the HES sees one device whichever way it was read. Each telegram contributes a
:class:`RecordSource` (its records, its status byte, its raw bytes) and
:func:`readings_from_sources` turns a readout of one device into Readings:

* ``quantity``: :func:`quantity_name`, numbered ``;index=N`` where two records of the
  readout still share a name (:func:`unique_names`);
* ``value``: exact, as the codec decoded it; a date and time becomes aware in the gateway's
  time zone (:func:`aware`, the SU bit picks the hour at the end of summer time);
* ``meter_time``: the current date and time record (storage 0) of the readout, aware;
* ``status``: the telegram's status byte as two hex digits, untouched;
* ``raw``: the telegram the value came from, and ``protection`` how it was protected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from gateway.codecs.mbus.application import FixedRecord
from gateway.codecs.mbus.records import DataRecord
from gateway.model import Reading, Value

#: Short names of the DIF function field (EN 13757-3 table 5) and of the fixed data
#: structure's counter kinds; the instantaneous (actual) value is the default and unnamed.
FUNCTION_NAMES: dict[str, str | None] = {
    "instantaneous value": None,
    "actual value": None,
    "maximum value": "maximum",
    "minimum value": "minimum",
    "value during error state": "error",
    "stored value": "stored",
}

AnyRecord = DataRecord | FixedRecord
T = TypeVar("T")


def slug(text: str) -> str:
    """``Flow temperature`` → ``flow_temperature``; ``at phase L1`` → ``at_phase_l1``."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "value"


def quantity_name(record: AnyRecord) -> str:
    """The readable quantity of a record, unique within its device (the naming rule).

    ``BASE[;MODIFIER...][;function=F][;storage=N][;tariff=N][;subunit=N]`` where BASE is
    the codec's quantity in lower case with ``_`` between words (``energy``,
    ``flow_temperature``, ``time_point_date_and_time``), each combinable VIFE modifier
    follows the same way (``energy;at_phase_l1``), ``function`` is ``maximum``,
    ``minimum``, ``error`` or ``stored`` (instantaneous values carry none), and storage
    number, tariff and subunit appear when not 0. Examples: ``energy``,
    ``energy;storage=1``, ``volume;tariff=2``, ``flow_temperature;function=maximum``.
    Two records that still share a name get ``;index=2``, ``;index=3`` ... in the order
    of the readout (see :func:`unique_names`).
    """
    parts = [slug(record.quantity), *(slug(modifier) for modifier in record.modifiers)]
    function = FUNCTION_NAMES.get(record.function, slug(record.function))
    if function:
        parts.append(f"function={function}")
    parts += [f"{name}={number}" for name, number in
              (("storage", record.storage), ("tariff", record.tariff), ("subunit", record.subunit)) if number]
    return ";".join(parts)


def unique_names(items: Iterable[tuple[T, AnyRecord]]) -> Iterator[tuple[T, AnyRecord, str]]:
    """Each ``(source, record)`` of a readout with its quantity name, duplicates numbered
    (``;index=2`` ...) in readout order so that names are unique within the device."""
    seen: dict[str, int] = {}
    for source, record in items:
        name = quantity_name(record)
        seen[name] = seen.get(name, 0) + 1
        yield source, record, name if seen[name] == 1 else f"{name};index={seen[name]}"


def aware(value: datetime, tz: ZoneInfo, summer_time: bool | None) -> datetime:
    """A meter's local wall-clock time in the gateway's zone. In the repeated hour at the
    end of summer time the SU bit (summer time) picks the first occurrence, its absence
    the second."""
    return value.replace(tzinfo=tz, fold=0 if summer_time in (None, True) else 1)


def meter_time(records: Iterable[AnyRecord], tz: ZoneInfo) -> datetime | None:
    """The current date and time a meter stamped its readout with (VIF 0x6D, storage 0,
    instantaneous, tariff and subunit 0, valid), aware; None if it sent none."""
    for record in records:
        if (isinstance(record, DataRecord) and isinstance(record.value, datetime) and record.storage == 0
                and record.tariff == 0 and record.subunit == 0 and not record.time_invalid
                and FUNCTION_NAMES.get(record.function, "") is None):
            return aware(record.value, tz, record.summer_time)
    return None


def reading_value(record: AnyRecord, tz: ZoneInfo) -> Value:
    """The record's value as a Reading carries it (a date and time made aware)."""
    value = record.value
    if isinstance(value, datetime) and isinstance(record, DataRecord):
        return aware(value, tz, record.summer_time)
    return value


@dataclass(frozen=True, slots=True)
class RecordSource:
    """One telegram's contribution to a readout: its records, its status byte (two hex
    digits), the raw bytes every Reading from it references and how they were protected
    (``model.PROTECTIONS``; wired M-Bus telegrams travel in clear: ``none``)."""

    records: tuple[AnyRecord, ...]
    status: str
    raw: bytes
    protection: str = "none"


def readings_from_sources(device: str, sources: Sequence[RecordSource], tz: ZoneInfo,
                          captured_at: datetime) -> list[Reading]:
    """Every record of every telegram of one device's readout as a Reading (see the
    module docstring)."""
    stamped = meter_time((record for source in sources for record in source.records), tz)
    return [Reading(device=device, quantity=name, value=reading_value(record, tz), unit=record.unit,
                    captured_at=captured_at, meter_time=stamped, status=source.status, raw=source.raw,
                    protection=source.protection)
            for source, record, name in unique_names((s, r) for s in sources for r in s.records)]
