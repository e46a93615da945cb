"""Reading COSEM objects inside an association: values with their scaler and unit, the
logical device name, profile buffers by time range. Shared by the collector and
``gateway read dlms``.

What does not change between reads (the device name, each register's scaler_unit, each
profile's capture objects) is kept in a :class:`ReaderCache` that outlives the association.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.security import SC_AUTHENTICATION, SC_ENCRYPTION, SC_SUITE_MASK
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.selective import CLOCK_TIME, CaptureObject, RangeDescriptor
from gateway.codecs.dlms.services import AttributeDescriptor
from gateway.codecs.dlms.units import ScalerUnit
from gateway.collectors.dlms_session import DlmsSession
from gateway.collectors.dlms_values import (
    CAPTURE_TIME_ATTRIBUTE,
    DATA_CLASS,
    LOGICAL_DEVICE_NAME,
    PROFILE_GENERIC_CLASS,
    SCALED_ATTRIBUTES,
    SCALER_UNIT_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    ObjectSpec,
    date_time_of,
    device_name_text,
    reading_value,
    status_text,
)
from gateway.model import Value


@dataclass
class ReaderCache:
    """What does not change between reads of one meter."""

    device: str | None = None
    scaler_units: dict[tuple[int, Obis], ScalerUnit | None] = field(default_factory=dict)
    capture_objects: dict[Obis, tuple[CaptureObject, ...]] = field(default_factory=dict)


#: Protection bits of the security control byte → ``Reading.protection`` (Green Book
#: 9.2.7.2.4; ``model.PROTECTIONS``).
_PROTECTION_BITS = {SC_AUTHENTICATION: "authenticated", SC_ENCRYPTION: "encrypted",
                    SC_AUTHENTICATION | SC_ENCRYPTION: "authenticated+encrypted"}


def apdu_protection(apdus: list[bytes]) -> str | None:
    """How an answer was protected as it arrived: from the security control byte of its
    (first) ciphered APDU, ``authenticated+encrypted:dlms-suite0`` …, or ``none``; None
    when there is no answer."""
    if not apdus:
        return None
    try:
        apdu = decode_apdu(apdus[0])
    except DLMSError:
        return None
    control = getattr(apdu, "security_control", None)
    if control is None:
        return "none"
    kind = _PROTECTION_BITS.get(control & (SC_AUTHENTICATION | SC_ENCRYPTION))
    return f"{kind}:dlms-suite{control & SC_SUITE_MASK}" if kind else "none"


@dataclass(frozen=True, slots=True)
class AttributeValue:
    """One attribute's exact value, unit symbol, the register's status and capture time,
    and the answer it came in as received (``raw``, its ``protection``)."""

    value: Value
    unit: str | None
    status: str | None = None
    meter_time: datetime | None = None
    raw: bytes | None = None
    protection: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileRows:
    """Rows of a profile buffer, oldest first: each row's clock and its values as sent
    (``columns`` says what each value is)."""

    obis: Obis
    columns: tuple[CaptureObject, ...]
    rows: list[tuple[datetime, tuple[Data, ...]]]
    raw: bytes | None = None
    protection: str | None = None


class CosemReader:
    """Reads attributes through an established :class:`DlmsSession`."""

    def __init__(self, session: DlmsSession, tz: tzinfo, cache: ReaderCache | None = None) -> None:
        self.session = session
        self.tz = tz
        self.cache = cache if cache is not None else ReaderCache()

    async def device_name(self) -> str:
        """The logical device name (0.0.42.0.0.255) as text."""
        return device_name_text(await self.session.get(AttributeDescriptor(DATA_CLASS, LOGICAL_DEVICE_NAME, 2)))

    async def scaler_unit(self, class_id: int, obis: Obis) -> ScalerUnit | None:
        """The object's scaler_unit (read once, then cached); None for classes without."""
        key = (class_id, obis)
        if key not in self.cache.scaler_units:
            attribute = SCALER_UNIT_ATTRIBUTE.get(class_id)
            self.cache.scaler_units[key] = None if attribute is None else ScalerUnit.from_data(
                await self.session.get(AttributeDescriptor(class_id, obis, attribute)))
        return self.cache.scaler_units[key]

    async def read(self, spec: ObjectSpec) -> AttributeValue:
        """One attribute; register values scaled exactly, with unit, and for extended and
        demand registers their status and capture time."""
        data = await self.session.get(AttributeDescriptor(spec.class_id, spec.obis, spec.attribute))
        received = list(self.session.received)
        scaled = spec.attribute in SCALED_ATTRIBUTES.get(spec.class_id, ())
        scaler = await self.scaler_unit(spec.class_id, spec.obis) if scaled else None
        status = meter_time = None
        if scaled and spec.class_id in STATUS_ATTRIBUTE:
            status = status_text(await self.session.get(
                AttributeDescriptor(spec.class_id, spec.obis, STATUS_ATTRIBUTE[spec.class_id])))
            stamp = await self.session.get(
                AttributeDescriptor(spec.class_id, spec.obis, CAPTURE_TIME_ATTRIBUTE[spec.class_id]))
            meter_time = date_time_of(stamp, self.tz) if _specified(stamp) else None
        return AttributeValue(reading_value(data, self.tz, scaler), scaler.symbol if scaler else None, status, meter_time,
                              b"".join(received), apdu_protection(received))

    async def capture_objects(self, obis: Obis) -> tuple[CaptureObject, ...]:
        """The profile's columns (attribute 3), read once, then cached."""
        if obis not in self.cache.capture_objects:
            data = await self.session.get(AttributeDescriptor(PROFILE_GENERIC_CLASS, obis, 3))
            self.cache.capture_objects[obis] = tuple(CaptureObject.from_data(item) for item in data.value)
        return self.cache.capture_objects[obis]

    async def profile(self, obis: Obis, start: datetime, end: datetime, columns: list[int] | None = None) -> ProfileRows:
        """Rows whose clock lies in ``start``..``end`` (range_descriptor on the Clock column,
        Blue Book 4.3.6); ``columns`` are 1-based and the clock column is always read."""
        capture = await self.capture_objects(obis)
        selected = tuple(capture[i - 1] for i in columns or () if 0 < i <= len(capture))
        if selected and CLOCK_TIME not in selected:
            selected = (CLOCK_TIME, *selected)
        shown = selected or capture
        if CLOCK_TIME not in shown:
            raise DLMSError(f"profile {obis.dotted} has no clock column: it cannot be read by range",
                            field="capture_objects")
        access = RangeDescriptor.by_time(self._cosem(start), self._cosem(end), selected).to_access()
        buffer = await self.session.get(AttributeDescriptor(PROFILE_GENERIC_CLASS, obis, 2), access)
        received = list(self.session.received)
        clock_at = shown.index(CLOCK_TIME)
        rows = []
        for row in buffer.value or ():
            items = row.value
            if row.type is not DataType.STRUCTURE or len(items) != len(shown):
                raise DLMSError(f"profile row of {len(items)} values for {len(shown)} columns", field="buffer")
            rows.append((date_time_of(items[clock_at], self.tz), tuple(items)))
        rows.sort(key=lambda pair: pair[0])
        return ProfileRows(obis, shown, rows, b"".join(received), apdu_protection(received))

    async def column_scalers(self, columns: tuple[CaptureObject, ...]) -> list[ScalerUnit | None]:
        """The scaler_unit of each column that holds a register's value, else None."""
        out = []
        for column in columns:
            scaled = column.attribute_index in SCALED_ATTRIBUTES.get(column.class_id, ()) and column.data_index == 0
            out.append(await self.scaler_unit(column.class_id, column.logical_name) if scaled else None)
        return out

    async def column_values(self, columns: tuple[CaptureObject, ...], row) -> list[tuple[Value, str | None]]:
        """The exact values of one row with their units (register columns scaled)."""
        scalers = await self.column_scalers(columns)
        return [(reading_value(value, self.tz, scaler), scaler.symbol if scaler else None)
                for value, scaler in zip(row, scalers)]

    def _cosem(self, moment: datetime) -> CosemDateTime:
        return CosemDateTime.from_datetime(moment.astimezone(self.tz), None)


def _specified(data: Data) -> bool:
    """A capture time that is a date-time with its date set (0xFF... means none)."""
    try:
        return isinstance(data.value, (bytes, bytearray)) and CosemDateTime.from_bytes(bytes(data.value)).year is not None
    except DLMSError:
        return False
