"""Profile generic buffers served from the store, page by page (Blue Book 4.3.6, class 7).

Two buffers: a meter's readings (``0-0:99.1.0*255`` of its logical device; an entry is one
capture: the readings that share a capture time, columns Clock.time and every quantity) and
the gateway's event log (``0-0:99.98.0*255`` of the management logical device; an entry is
one event). Neither is ever loaded whole: the entries are counted in SQL, then read in pages
of :data:`PAGE` rows and encoded only as fast as the client takes blocks (GET with datablock),
so a connection holds one block and one page at most.

Selective access (:func:`selection`): by range (selector 1) on the Clock column, with
optional columns, bounds inclusive, and by entry (selector 2), 1-based, 0 = the last. The
count and the rows use the store's seq at the start of the GET as their upper bound, so
readings stored meanwhile wait for the next GET.

Data-Access-Results: parameters that are not a range or entry descriptor are
``type-unmatched`` (12); a selector other than 1 and 2, a restricting object other than the
Clock column, an invalid date-time, a column that is not captured, entries beyond those in
use are ``scope-of-access-violated`` (13). A range with no entries is an empty array.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from gateway.codecs.dlms.axdr import DataType, encode_length
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.selective import (
    CLOCK_CLASS_ID,
    CLOCK_LOGICAL_NAME,
    ENTRY_SELECTOR,
    RANGE_SELECTOR,
    CaptureObject,
    EntryDescriptor,
    RangeDescriptor,
)
from gateway.codecs.dlms.services import DataAccessResult, SelectiveAccess
from gateway.store import Store, decode_value, time_key
from gateway.uplinks.dlms_server import mapping
from gateway.uplinks.dlms_server.registry import Meter

#: Store rows read per round trip to the store's thread.
PAGE = 2000
TYPE_UNMATCHED = DataAccessResult(12)
SCOPE_VIOLATED = DataAccessResult(13)
LONG_GET_ABORTED = DataAccessResult(15)

CLOCK_COLUMN = CaptureObject(CLOCK_CLASS_ID, CLOCK_LOGICAL_NAME, 2, 0)
METER_PROFILE = Obis(0, 0, 99, 1, 0)
EVENT_LOG = Obis(0, 0, 99, 98, 0)
#: The event log's columns besides the clock: the Blue Book's event code object and the
#: gateway's own (manufacturer-specific) columns.
EVENT_CODE = Obis(0, 0, 96, 11, 0)
EVENT_COLUMNS = (
    CLOCK_COLUMN,
    CaptureObject(1, Obis(0, 0, mapping.GATEWAY_C, 1, 1), 2),  # seq: long64-unsigned
    CaptureObject(1, EVENT_CODE, 2),                             # code
    CaptureObject(1, Obis(0, 0, mapping.GATEWAY_C, 1, 2), 2),  # severity
    CaptureObject(1, Obis(0, 0, mapping.GATEWAY_C, 1, 3), 2),  # device id, null-data for none
    CaptureObject(1, Obis(0, 0, mapping.GATEWAY_C, 1, 4), 2),  # message
)  # text is visible-string, or utf8-string when it is not printable ASCII


@dataclass(frozen=True, slots=True)
class Selection:
    """Which entries and columns of a buffer: a time window (time keys, inclusive; None =
    open), entries ``first``..``last`` (1-based; ``last`` None = up to the end) and the
    column indexes."""

    start: str | None = None
    end: str | None = None
    first: int = 1
    last: int | None = None
    columns: tuple[int, ...] | None = None


class BufferSource(Protocol):
    """What a buffer is read from."""

    columns: tuple[CaptureObject, ...]

    async def count(self, upto: int, start: str | None, end: str | None) -> int: ...

    async def first_seq(self, upto: int, start: str | None, end: str | None, entry: int) -> int | None: ...

    def entries(self, after: int, upto: int, selection: Selection,
                columns: tuple[int, ...]) -> AsyncIterator[bytes]: ...


def selection(access: SelectiveAccess | None, columns: tuple[CaptureObject, ...]) -> Selection | DataAccessResult:
    """The entries and columns a selective access asks for (see the module docstring)."""
    if access is None:
        return Selection()
    if access.selector == RANGE_SELECTOR:
        try:
            described = RangeDescriptor.from_access(access)
        except DLMSError:
            return TYPE_UNMATCHED
        return _by_range(described, columns)
    if access.selector == ENTRY_SELECTOR:
        try:
            described = EntryDescriptor.from_access(access)
        except DLMSError:
            return TYPE_UNMATCHED
        first_column, last_column = max(1, described.from_selected_value), described.to_selected_value or len(columns)
        if not first_column <= last_column <= len(columns):
            return SCOPE_VIOLATED
        if described.to_entry and described.to_entry < described.from_entry:
            return SCOPE_VIOLATED
        return Selection(first=max(1, described.from_entry), last=described.to_entry or None,
                         columns=tuple(range(first_column - 1, last_column)))
    return SCOPE_VIOLATED


def _by_range(described: RangeDescriptor, columns: tuple[CaptureObject, ...]) -> Selection | DataAccessResult:
    restricting = described.restricting_object
    if (restricting.class_id, restricting.logical_name, restricting.attribute_index) != \
            (CLOCK_CLASS_ID, CLOCK_LOGICAL_NAME, 2):
        return SCOPE_VIOLATED
    keys = []
    for bound in (described.from_value, described.to_value):
        raw = bound.value.to_bytes() if bound.type is DataType.DATE_TIME else bound.value
        if bound.type not in (DataType.OCTET_STRING, DataType.DATE_TIME) or len(raw) != CosemDateTime.SIZE:
            return TYPE_UNMATCHED
        try:
            keys.append(time_key(CosemDateTime.from_bytes(raw).to_datetime(timezone.utc)))
        except DLMSError:
            return SCOPE_VIOLATED
    picked = None
    if described.selected_values:
        wanted = [(c.class_id, c.logical_name, c.attribute_index) for c in described.selected_values]
        have = [(c.class_id, c.logical_name, c.attribute_index) for c in columns]
        if any(w not in have for w in wanted):
            return SCOPE_VIOLATED
        picked = tuple(have.index(w) for w in wanted)
    return Selection(start=keys[0], end=keys[1], columns=picked)


class BufferStream:
    """The encoded ``array`` of the selected entries, produced block by block."""

    def __init__(self, entries: AsyncIterator[bytes], count: int) -> None:
        self._entries = entries
        self._left = count
        self._pending = bytearray(b"\x01" + encode_length(count))

    async def chunk(self, room: int) -> tuple[bytes, bool] | DataAccessResult:
        """The next at most ``room`` bytes and whether they are the last; long-get-aborted
        when the store no longer has an entry that was counted (retention removed it)."""
        while len(self._pending) < room and self._left:
            entry = await anext(self._entries, None)
            if entry is None:
                await self.close()
                return LONG_GET_ABORTED
            self._pending += entry
            self._left -= 1
        chunk = bytes(self._pending[:room])
        del self._pending[:room]
        last = not self._left and not self._pending
        if last:
            await self.close()
        return chunk, last

    async def close(self) -> None:
        await self._entries.aclose()


async def open_stream(source: BufferSource, store: Store, chosen: Selection) -> BufferStream | DataAccessResult:
    """Count the selected entries (up to the store's seq now) and start reading them."""
    upto = store.last_seq
    total = await source.count(upto, chosen.start, chosen.end)
    if chosen.first > total and not (total == 0 and chosen.first == 1):
        return SCOPE_VIOLATED  # entries asked by number beyond those in use
    count = max(0, min(chosen.last or total, total) - chosen.first + 1)
    after = 0
    if count:
        start = await source.first_seq(upto, chosen.start, chosen.end, chosen.first)
        after, count = (0, 0) if start is None else (start - 1, count)
    columns = chosen.columns if chosen.columns is not None else tuple(range(len(source.columns)))
    return BufferStream(source.entries(after, upto, chosen, columns), count)


def _structure(items: list[bytes]) -> bytes:
    return b"\x02" + encode_length(len(items)) + b"".join(items)


def _octets(raw: bytes) -> bytes:
    return b"\x09" + encode_length(len(raw)) + raw


def _text(text: str | None) -> bytes:
    """visible-string, or utf8-string for text that is not printable ASCII; null-data for None."""
    return mapping.NULL if text is None else mapping.text_data(text).to_bytes()


class _Stamps:
    """Stored capture times as COSEM date-time octet strings (the same text comes often)."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def __call__(self, text: str) -> bytes:
        encoded = self._cache.get(text)
        if encoded is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            encoded = self._cache[text] = _octets(mapping.date_time_bytes(datetime.fromisoformat(text)))
        return encoded


class MeterProfile:
    """A meter's readings as a profile: one entry per capture."""

    def __init__(self, meter: Meter, store: Store) -> None:
        self.meter = meter
        self.store = store
        quantities = list(meter.quantities.values())
        self.quantities = quantities
        self.columns = (CLOCK_COLUMN, *(CaptureObject(3 if q.numeric else 1, q.obis, 2) for q in quantities))

    async def count(self, upto: int, start: str | None, end: str | None) -> int:
        return await self.store.capture_count(self.meter.device, upto, start, end)

    async def first_seq(self, upto: int, start: str | None, end: str | None, entry: int) -> int | None:
        return await self.store.capture_start(self.meter.device, upto, start, end, entry)

    async def entries(self, after: int, upto: int, selection: Selection,
                      columns: tuple[int, ...]) -> AsyncIterator[bytes]:
        column_of = {q.name: index for index, q in enumerate(self.quantities, 1)}
        # series id -> (column, the series' unit): a quantity's unit may have changed
        known = await self.store.device_series(self.meter.device, exponents=False)
        series = {s.id: (column_of[s.quantity], s.unit) for s in known if s.quantity in column_of}
        stamps = _Stamps()
        capture: str | None = None
        values: dict[int, Any] = {}
        while True:
            rows = await self.store.capture_rows(self.meter.device, after, upto, selection.start, selection.end, PAGE)
            for _seq, captured, series_id, value, vtype in rows:
                if captured != capture:
                    if capture is not None:
                        yield self._row(stamps(capture), values, columns)
                    capture, values = captured, {}
                where = series.get(series_id)
                if where is not None:
                    values[where[0]] = (value, vtype, where[1])
            if len(rows) < PAGE:
                break
            after = rows[-1][0]
        if capture is not None:
            yield self._row(stamps(capture), values, columns)

    def _row(self, stamp: bytes, values: dict[int, Any], columns: tuple[int, ...]) -> bytes:
        items = []
        for column in columns:
            if column == 0:
                items.append(stamp)
                continue
            found = values.get(column)
            if found is None:
                items.append(mapping.NULL)
            else:
                value, vtype, unit = found
                items.append(self.quantities[column - 1].encode(decode_value(value, vtype), unit))
        return _structure(items)


class EventLog:
    """The gateway's events as a profile: one entry per event."""

    columns = EVENT_COLUMNS

    def __init__(self, store: Store) -> None:
        self.store = store

    async def count(self, upto: int, start: str | None, end: str | None) -> int:
        return await self.store.event_count(upto, start, end)

    async def first_seq(self, upto: int, start: str | None, end: str | None, entry: int) -> int | None:
        return await self.store.event_start(upto, start, end, entry)

    async def entries(self, after: int, upto: int, selection: Selection,
                      columns: tuple[int, ...]) -> AsyncIterator[bytes]:
        stamps = _Stamps()
        while True:
            rows = await self.store.event_rows(after, upto, selection.start, selection.end, PAGE)
            for seq, occurred, device, code, severity, message in rows:
                fields = (stamps(occurred), b"\x15" + seq.to_bytes(8, "big"), _text(code), _text(severity),
                          _text(device), _text(message))
                yield _structure([fields[c] for c in columns])
            if len(rows) < PAGE:
                return
            after = rows[-1][0]
