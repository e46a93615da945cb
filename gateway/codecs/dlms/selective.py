"""Selective access to a Profile generic buffer (Blue Book 4.3.6, class 7 attribute 2).

Two access selectors are defined for the buffer:

* 1, ``range_descriptor``: rows whose restricting object (normally the Clock column) lies
  between ``from_value`` and ``to_value``, with ``selected_values`` limiting the columns
  (empty = all columns);
* 2, ``entry_descriptor``: rows ``from_entry``..``to_entry`` (1-based, 0 = the last) and
  columns ``from_selected_value``..``to_selected_value`` (0 = the last).

They travel as :class:`~gateway.codecs.dlms.services.SelectiveAccess` whose parameters are
Data; these classes convert both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.dlms.axdr import Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.services import SelectiveAccess

RANGE_SELECTOR = 1
ENTRY_SELECTOR = 2

CLOCK_CLASS_ID = 8
CLOCK_LOGICAL_NAME = Obis(0, 0, 1, 0, 0, 255)


def _fields(data: Data, types: tuple[DataType, ...], name: str) -> tuple[Data, ...]:
    items = data.value
    if data.type is not DataType.STRUCTURE or len(items) != len(types):
        raise DLMSError(f"{name} is not a structure of {len(types)} items", field=name)
    for item, expected in zip(items, types, strict=True):
        if expected is not None and item.type is not expected:
            raise DLMSError(f"{name} has {item.type.name} where {expected.name} is expected", field=name)
    return items


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """capture_object_definition: a column of a profile (class, logical name, attribute,
    data index; data index 0 = the whole attribute)."""

    class_id: int
    logical_name: Obis
    attribute_index: int
    data_index: int = 0

    def to_data(self) -> Data:
        return structure(
            Data(DataType.LONG_UNSIGNED, self.class_id),
            octet_string(self.logical_name.to_bytes()),
            Data(DataType.INTEGER, self.attribute_index),
            Data(DataType.LONG_UNSIGNED, self.data_index),
        )

    @classmethod
    def from_data(cls, data: Data) -> CaptureObject:
        types = (DataType.LONG_UNSIGNED, DataType.OCTET_STRING, DataType.INTEGER, DataType.LONG_UNSIGNED)
        class_id, name, attribute, index = _fields(data, types, "capture_object_definition")
        return cls(class_id.value, Obis.from_bytes(name.value), attribute.value, index.value)


CLOCK_TIME = CaptureObject(CLOCK_CLASS_ID, CLOCK_LOGICAL_NAME, 2, 0)


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """range_descriptor (selector 1)."""

    restricting_object: CaptureObject
    from_value: Data
    to_value: Data
    selected_values: tuple[CaptureObject, ...] = ()

    @classmethod
    def by_time(
        cls, start: CosemDateTime, end: CosemDateTime, columns: tuple[CaptureObject, ...] = ()
    ) -> RangeDescriptor:
        """Rows from ``start`` to ``end`` by the Clock column (date-times as octet strings,
        as the Clock's time attribute is typed)."""
        return cls(CLOCK_TIME, octet_string(start.to_bytes()), octet_string(end.to_bytes()), columns)

    def to_access(self) -> SelectiveAccess:
        return SelectiveAccess(
            RANGE_SELECTOR,
            structure(
                self.restricting_object.to_data(),
                self.from_value,
                self.to_value,
                array(*(c.to_data() for c in self.selected_values)),
            ),
        )

    @classmethod
    def from_access(cls, access: SelectiveAccess) -> RangeDescriptor:
        if access.selector != RANGE_SELECTOR:
            raise DLMSError(f"access selector {access.selector} is not 1 (range)", field="access-selector")
        restricting, start, end, columns = _fields(
            access.parameters, (DataType.STRUCTURE, None, None, DataType.ARRAY), "range_descriptor"
        )
        return cls(
            CaptureObject.from_data(restricting),
            start,
            end,
            tuple(CaptureObject.from_data(c) for c in columns.value),
        )


@dataclass(frozen=True, slots=True)
class EntryDescriptor:
    """entry_descriptor (selector 2): entries and columns by index (0 = up to the last)."""

    from_entry: int = 1
    to_entry: int = 0
    from_selected_value: int = 1
    to_selected_value: int = 0

    def to_access(self) -> SelectiveAccess:
        return SelectiveAccess(
            ENTRY_SELECTOR,
            structure(
                Data(DataType.DOUBLE_LONG_UNSIGNED, self.from_entry),
                Data(DataType.DOUBLE_LONG_UNSIGNED, self.to_entry),
                Data(DataType.LONG_UNSIGNED, self.from_selected_value),
                Data(DataType.LONG_UNSIGNED, self.to_selected_value),
            ),
        )

    @classmethod
    def from_access(cls, access: SelectiveAccess) -> EntryDescriptor:
        if access.selector != ENTRY_SELECTOR:
            raise DLMSError(f"access selector {access.selector} is not 2 (entry)", field="access-selector")
        types = (DataType.DOUBLE_LONG_UNSIGNED, DataType.DOUBLE_LONG_UNSIGNED, DataType.LONG_UNSIGNED,
                 DataType.LONG_UNSIGNED)
        items = _fields(access.parameters, types, "entry_descriptor")
        return cls(*(item.value for item in items))
