"""Data records of the variable data structure (EN 13757-3:2018 clause 6.3 to 6.5).

A record is ``DIF [DIFE ...] VIF [plain text] [VIFE ...] data``:

- the DIF gives the data field coding and length, the function (instantaneous, maximum,
  minimum, value during error state) and the least significant storage number bit; each
  DIFE adds 4 storage bits, 2 tariff bits and 1 subunit bit (clause 6.3.2);
- the VIF names the quantity, unit and decimal scaler (table 10), or points to the
  extension tables 0xFD and 0xFB, to a plain-text unit (0x7C/0xFC, the text follows the
  VIF, reversed on the wire) or to manufacturer-specific coding (0x7F/0xFF);
- combinable VIFEs (table 15) qualify it: per time unit, correction factors, record
  errors, "at phase" (after 0x7C/0xFC), manufacturer-specific VIFEs (after 0x7F/0xFF);
- special DIFs: 0x0F (manufacturer data to the end), 0x1F (the same, more records follow
  in the next telegram) and 0x2F (idle filler, skipped).

:func:`decode_records` decodes a sequence of records (wireless M-Bus uses it after its own
headers); :func:`make_record` builds a record from a value for the simulator and tests;
:func:`encode_record` turns a record back into bytes.

Plain-text VIF order: the length byte and the text follow the VIF directly and the VIFEs
come after them. That is how the captured meters send it (ELV ``FC 03 "HR%" 74``) and how
libmbus reads it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from gateway.codecs.mbus import datatypes, tables
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.model import EXACT as _EXACT
from gateway.model import Value

_ONE = Decimal(1)
_PLAIN_TEXT = tables.VIF_PLAIN_TEXT
_DATE_KINDS = (tables.DATE, tables.DATETIME)
_IDLE_FILLER = tables.DIF_IDLE_FILLER
_MANUFACTURER_DATA = tables.DIF_MANUFACTURER_DATA
_MORE_RECORDS_FOLLOW = tables.DIF_MORE_RECORDS_FOLLOW


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """What the DIF/DIFE/VIF/VIFE (and LVAR) bytes of a record say, shared by every
    record that starts with the same bytes (meters repeat them in every telegram, so the
    decoder interprets each combination once)."""

    dif: int
    dife: tuple[int, ...]
    vif: int
    vife: tuple[int, ...]
    plain_text_unit: str | None
    lvar: int | None
    function: str
    storage: int
    tariff: int
    subunit: int
    quantity: str
    unit: str | None
    modifiers: tuple[str, ...]
    header_length: int
    data_length: int
    decoder: int
    scale: Decimal
    offset_value: Decimal | None
    time_kind: str | None
    msb_first: bool = False


# How a layout's data field turns into a value (RecordLayout.decoder).
_NO_VALUE, _INT, _BCD, _REAL, _TEXT, _BINARY, _LVAR_BCD, _LVAR_NEGATIVE_BCD, _TIME, _INT_MSB_FIRST = range(10)
_LVAR_DECODERS = {"text": _TEXT, "binary": _BINARY, "bcd": _LVAR_BCD, "negative bcd": _LVAR_NEGATIVE_BCD}
_CODING_DECODERS = {"int": _INT, "bcd": _BCD, "real": _REAL}


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One decoded data record.

    ``value`` is exact: ``Decimal`` for numbers (mantissa × 10^scaler from the VIF, times
    the time unit in seconds where the VIF counts minutes, hours or days), ``datetime``/
    ``date``/``time`` (naive, meter local time) for date/time types, ``str`` for text,
    ``bytes`` for binary data (transmission order), ``None`` for records without data or
    with a BCD field whose digits are not decimal (``value_error`` says why; the bytes are
    in ``data``). ``raw`` is the whole record as transmitted, ``offset`` where it starts in
    the decoded unit. The DIF/VIF fields (``dif``, ``dife``, ``vif``, ``vife``,
    ``function``, ``storage``, ``tariff``, ``subunit``, ``quantity``, ``unit``,
    ``modifiers`` for the combinable VIFEs in order, ``header_bytes``, whose bytes are the
    format signature of wireless M-Bus compact frames) come from ``layout``.
    """

    layout: RecordLayout
    raw: bytes
    offset: int
    value: Value

    dif = property(lambda self: self.layout.dif)
    dife = property(lambda self: self.layout.dife)
    vif = property(lambda self: self.layout.vif)
    vife = property(lambda self: self.layout.vife)
    function = property(lambda self: self.layout.function)
    storage = property(lambda self: self.layout.storage)
    tariff = property(lambda self: self.layout.tariff)
    subunit = property(lambda self: self.layout.subunit)
    quantity = property(lambda self: self.layout.quantity)
    unit = property(lambda self: self.layout.unit)
    modifiers = property(lambda self: self.layout.modifiers)
    plain_text_unit = property(lambda self: self.layout.plain_text_unit)
    lvar = property(lambda self: self.layout.lvar)

    @property
    def time(self) -> datatypes.TimeFields | None:
        """The date/time fields (IV and SU bits, ...) of a date/time record."""
        layout = self.layout
        if layout.time_kind is None:
            return None
        return datatypes.TimeFields(layout.time_kind, self.data[::-1] if layout.msb_first else self.data)

    @property
    def value_error(self) -> str | None:
        """Why a record with a data field has no value (a BCD field with hex digits)."""
        if self.value is None and self.layout.decoder in (_BCD, _LVAR_BCD, _LVAR_NEGATIVE_BCD):
            return f"BCD digits are not decimal: {self.data[::-1].hex().upper()}"
        return None

    @property
    def header_bytes(self) -> bytes:
        """DIF, DIFEs, VIF, plain text and VIFEs as transmitted."""
        return self.raw[: self.layout.header_length]

    @property
    def data(self) -> bytes:
        """The data field as transmitted (after the LVAR byte for variable length data)."""
        return self.raw[len(self.raw) - self.layout.data_length :]

    @property
    def data_field(self) -> int:
        """The DIF's data field code (table 6): 0x4 = 32-bit integer, 0xC = 8-digit BCD ..."""
        return self.layout.dif & tables.DIF_DATA

    @property
    def time_invalid(self) -> bool | None:
        """The IV bit of a type F or I date/time, ``None`` for other values."""
        return self.time.invalid if self.time is not None and self.time.kind in ("F", "I") else None

    @property
    def summer_time(self) -> bool | None:
        """The SU bit of a type F or I date/time, ``None`` for other values."""
        return self.time.summer_time if self.time is not None else None

    @property
    def manufacturer_specific(self) -> bool:
        """The VIF or a VIFE says the rest of the record is manufacturer specific."""
        layout = self.layout
        return (layout.vif & 0x7F) == tables.VIF_MANUFACTURER or "manufacturer specific" in layout.modifiers


def _record_builder():
    """``DataRecord(layout, raw, offset, value)`` at half the cost of the frozen
    dataclass's ``__init__`` (which goes through ``object.__setattr__`` per field): the
    decoder builds one per record of every telegram. The slots are set once, before
    anyone holds the object, so it is as immutable as one built the usual way."""
    new = object.__new__
    set_layout, set_raw = DataRecord.layout.__set__, DataRecord.raw.__set__
    set_offset, set_value = DataRecord.offset.__set__, DataRecord.value.__set__

    def build(layout: RecordLayout, raw: bytes, offset: int, value: Value) -> DataRecord:
        record = new(DataRecord)
        set_layout(record, layout)
        set_raw(record, raw)
        set_offset(record, offset)
        set_value(record, value)
        return record

    return build


_new_record = _record_builder()


@dataclass(frozen=True, slots=True)
class RecordBlock:
    """A decoded sequence of data records, and what followed DIF 0x0F/0x1F."""

    records: tuple[DataRecord, ...]
    more_records_follow: bool = False
    manufacturer_data: bytes | None = None
    manufacturer_data_offset: int | None = None


def decode_records(data: bytes, *, offset: int = 0, msb_first: bool = False) -> RecordBlock:
    """Decode a sequence of data records.

    ``offset`` is where ``data`` starts in the unit the caller decodes (frame or
    telegram): record offsets and error offsets are given in that unit. ``msb_first``
    reads numbers most significant byte first (CI 0x76/0x77, "mode 2").
    Raises :class:`MBusFrameError` with reason, offset and field on malformed input.
    """
    try:
        return _parse(bytes(data), offset, msb_first)
    except MBusFrameError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:  # pragma: no cover
        raise MBusFrameError(f"undecodable record: {exc}", offset=offset, field="record") from exc


def _fail(reason: str, offset: int, field: str) -> MBusFrameError:
    return MBusFrameError(reason, offset=offset, field=field)


def _parse(data: bytes, base: int, msb_first: bool) -> RecordBlock:
    end = len(data)
    records = []
    append = records.append
    # Mode 2 layouts decode differently: they do not share the cache.
    layouts = _LAYOUTS if not msb_first else {}
    pos = 0
    while pos < end:
        start = pos
        dif = data[pos]
        if dif & 0x0F == 0x0F:
            if dif == _IDLE_FILLER:
                pos += 1
                continue
            if dif == _MANUFACTURER_DATA or dif == _MORE_RECORDS_FOLLOW:
                return RecordBlock(
                    tuple(records), dif == _MORE_RECORDS_FOLLOW, data[pos + 1 :], base + pos + 1
                )
            if dif == tables.DIF_GLOBAL_READOUT:
                raise _fail("DIF 0x7F (global readout request) is sent by a master, not in a response", base + pos, "DIF")
            raise _fail(f"reserved special function DIF 0x{dif:02X}", base + pos, "DIF")
        pos += 1
        if dif & 0x80:
            pos = _after_extensions(data, pos, base, "DIFE", tables.MAX_DIFE)
        if pos >= end:
            raise _fail("premature end of record: VIF expected", base + pos, "VIF")
        vif = data[pos]
        pos += 1
        if vif & 0x7F == _PLAIN_TEXT:
            if pos >= end:
                raise _fail("premature end of record: plain-text VIF length expected", base + pos, "VIF")
            length = data[pos]
            if pos + 1 + length > end:
                raise _fail(f"plain-text VIF of {length} characters runs past the end of the data", base + pos, "VIF")
            pos += 1 + length
        if vif & 0x80:
            pos = _after_extensions(data, pos, base, "VIFE", tables.MAX_VIFE)
        if dif & 0x0F == 0x0D:  # variable length: the LVAR byte says how long
            if pos >= end:
                raise _fail("premature end of record: LVAR byte expected", base + pos, "LVAR")
            if tables.lvar_layout(data[pos]) is None:
                raise _fail(f"reserved LVAR 0x{data[pos]:02X}: data length unknown", base + pos, "LVAR")
            pos += 1
        key = data[start:pos]
        layout = layouts.get(key)
        if layout is None:
            layout = _new_layout(key, msb_first)
            if len(layouts) >= _LAYOUT_CACHE_SIZE:
                layouts.clear()
            layouts[key] = layout
        data_end = pos + layout.data_length
        if data_end > end:
            raise _fail(
                f"premature end of record: {layout.data_length} data bytes expected, {end - pos} left",
                base + pos,
                "data",
            )
        decoder = layout.decoder
        if decoder == _INT:
            value = _scaled(int.from_bytes(data[pos:data_end], "little", signed=True), layout)
            append(_new_record(layout, data[start:data_end], base + start, value))
        elif decoder == _BCD and (digits := data[pos:data_end][::-1].hex()).isdigit() and not msb_first:
            append(_new_record(layout, data[start:data_end], base + start, _scaled(int(digits), layout)))
        else:
            append(_decoded(layout, data[start:data_end], base + start, data[pos:data_end], msb_first))
        pos = data_end
    return RecordBlock(tuple(records))


def _after_extensions(data: bytes, pos: int, base: int, name: str, limit: int) -> int:
    """Where a chain of DIFEs or VIFEs (each with the extension bit set but the last)
    starting at ``pos`` ends; at most ``limit`` of them (clause 6.3.2, 6.4.2)."""
    end = len(data)
    for count in range(limit + 1):
        if pos >= end:
            raise _fail(f"premature end of record: {name} expected", base + pos, name)
        if count == limit:
            raise _fail(f"more than {limit} {name}s", base + pos, name)
        pos += 1
        if not data[pos - 1] & 0x80:
            return pos
    raise AssertionError("unreachable: the loop returns or raises")


_LAYOUTS: dict[bytes, RecordLayout] = {}
_LAYOUT_CACHE_SIZE = 4096


def _new_layout(key: bytes, msb_first: bool) -> RecordLayout:
    """Interpret the DIF ... VIFE (and LVAR) bytes of a record, checked by the parser."""
    dif = key[0]
    pos = 1
    difes: tuple[int, ...] = ()
    if dif & 0x80:
        first = pos
        while key[pos] & 0x80:
            pos += 1
        pos += 1
        difes = tuple(key[first:pos])
    vif = key[pos]
    pos += 1
    text = None
    if vif & 0x7F == _PLAIN_TEXT:
        length = key[pos]
        text = key[pos + 1 : pos + 1 + length][::-1].decode("latin-1")
        pos += 1 + length
    vifes: tuple[int, ...] = ()
    if vif & 0x80:
        first = pos
        while key[pos] & 0x80:
            pos += 1
        pos += 1
        vifes = tuple(key[first:pos])
    header_length = pos
    code = dif & 0x0F
    lvar = key[pos] if code == 0x0D else None
    storage = (dif >> 6) & 1
    tariff = subunit = 0
    for index, dife in enumerate(difes):
        storage |= (dife & 0x0F) << (1 + 4 * index)
        tariff |= ((dife >> 4) & 0x03) << (2 * index)
        subunit |= ((dife >> 6) & 0x01) << index
    meaning = _interpret_vib(vif, vifes, text)
    coding = tables.DATA_CODING[code]
    time_kind = None
    if lvar is not None:
        kind, length = tables.lvar_layout(lvar)
        decoder = _LVAR_DECODERS[kind]
    else:
        length = tables.DATA_LENGTHS[code]
        decoder = _CODING_DECODERS.get(coding, _NO_VALUE)
        if coding == "int":
            if meaning.kind in _DATE_KINDS:
                time_kind = datatypes.TIME_TYPE_BY_LENGTH.get(length)
            elif meaning.kind == tables.DAYLIGHT_SAVING and length == 4:
                time_kind = "K"
            if time_kind is not None:
                decoder = _TIME
        if msb_first and decoder == _INT:
            decoder = _INT_MSB_FIRST
    scale = _EXACT.multiply(_ONE.scaleb(meaning.scaler), meaning.factor)
    offset_value = None
    if meaning.add_exponent is not None:
        offset_value = _EXACT.multiply(_ONE.scaleb(meaning.add_exponent), meaning.factor)
    return RecordLayout(
        dif, difes, vif, vifes, text, lvar, tables.FUNCTIONS[(dif >> 4) & 0x03], storage, tariff, subunit,
        meaning.quantity, meaning.unit, meaning.modifiers, header_length, length, decoder, scale, offset_value,
        time_kind, msb_first,
    )


def _decoded(layout: RecordLayout, raw: bytes, offset: int, field: bytes, msb_first: bool) -> DataRecord:
    """A record whose value is not a little-endian integer (those the parser does inline)."""
    decoder = layout.decoder
    if msb_first and decoder in (_INT_MSB_FIRST, _BCD, _REAL, _TIME):
        field = field[::-1]
    if decoder == _BCD or decoder == _LVAR_BCD or decoder == _LVAR_NEGATIVE_BCD:
        mantissa = datatypes.decode_bcd(field)
        if mantissa is None:
            return _new_record(layout, raw, offset, None)
        if decoder == _LVAR_NEGATIVE_BCD:
            mantissa = -mantissa
        return _new_record(layout, raw, offset, _scaled(mantissa, layout))
    if decoder == _TIME:
        kind = layout.time_kind
        return _new_record(layout, raw, offset, datatypes.time_value(kind, field))
    if decoder == _REAL:
        value = datatypes.decode_real(field)
        return _new_record(layout, raw, offset, _scaled(value, layout) if value.is_finite() else value)
    if decoder == _INT_MSB_FIRST:
        return _new_record(layout, raw, offset, _scaled(datatypes.decode_int(field), layout))
    if decoder == _TEXT:
        return _new_record(layout, raw, offset, field[::-1].decode("latin-1"))
    if decoder == _BINARY:
        return _new_record(layout, raw, offset, field)
    return _new_record(layout, raw, offset, None)  # no data, or selection for readout


def _scaled(mantissa: int | Decimal, layout: RecordLayout) -> Decimal:
    """``mantissa × scale + offset`` in the exact context (never the default 28 digits)."""
    value = _EXACT.multiply(mantissa, layout.scale)
    if layout.offset_value is not None:
        value = _EXACT.add(value, layout.offset_value)
    return value


@dataclass(frozen=True, slots=True)
class _Meaning:
    quantity: str
    unit: str | None
    scaler: int
    factor: int
    kind: str
    add_exponent: int | None
    modifiers: tuple[str, ...]


def _interpret_vib(vif: int, vifes: tuple[int, ...], text: str | None) -> _Meaning:
    key = (vif, vifes, text)
    cached = _MEANINGS.get(key)
    if cached is None:
        if len(_MEANINGS) >= _LAYOUT_CACHE_SIZE:  # plain texts are arbitrary: stay bounded
            _MEANINGS.clear()
        cached = _MEANINGS[key] = _interpret_uncached(vif, vifes, text)
    return cached


_MEANINGS: dict[tuple[int, tuple[int, ...], str | None], _Meaning] = {}


def _interpret_uncached(vif: int, vifes: tuple[int, ...], text: str | None) -> _Meaning:
    code = vif & 0x7F
    combinable = vifes
    if vif in (tables.VIF_EXTENSION_FD, tables.VIF_EXTENSION_FB):
        table = tables.FD_VIFS if vif == tables.VIF_EXTENSION_FD else tables.FB_VIFS
        entry = table[vifes[0] & 0x7F]
        combinable = vifes[1:]
    elif code == _PLAIN_TEXT:
        entry = tables.Vif(text or "", text or None)
    else:
        entry = tables.PRIMARY_VIFS[code]
    scaler, kind, add = entry.scaler, entry.kind, None
    modifiers: list[str] = []
    if code == tables.VIF_MANUFACTURER:
        modifiers.extend(f"manufacturer specific VIFE 0x{byte:02X}" for byte in combinable)
        combinable = ()
    index = 0
    while index < len(combinable):
        vife = tables.COMBINABLE_VIFES[combinable[index] & 0x7F]
        index += 1
        if vife.effect == "extension" and index < len(combinable):
            modifiers.append(tables.COMBINABLE_EXTENSION_VIFES[combinable[index] & 0x7F].description)
            index += 1
            continue
        modifiers.append(vife.description)
        if vife.effect == "multiply":
            scaler += vife.exponent
        elif vife.effect == "add":
            add = vife.exponent
        elif vife.effect == "date":
            kind = tables.DATETIME
        elif vife.effect == "manufacturer":
            modifiers.extend(f"manufacturer specific VIFE 0x{byte:02X}" for byte in combinable[index:])
            break
    return _Meaning(entry.quantity, entry.unit, scaler, entry.factor, kind, add, tuple(modifiers))


# --- encoding --------------------------------------------------------------------------------


def encode_record(record: DataRecord) -> bytes:
    """The bytes of a record: its DIF/DIFE/VIF/VIFE (and plain text) as they are, the data
    field encoded from ``record.value``. Where the value cannot carry every bit of the data
    field (date/time flags, a BCD field with hex digits, no value), the transmitted
    field is used as it is."""
    return _header(record.dif, record.dife, record.vif, record.vife, record.plain_text_unit) + _data_bytes(record)


def _header(dif: int, difes, vif: int, vifes, text: str | None) -> bytes:
    out = bytearray([dif, *difes, vif])
    if text is not None:
        encoded = text.encode("latin-1")[::-1]
        out += bytes([len(encoded)]) + encoded
    out += bytes(vifes)
    return bytes(out)


def _data_bytes(record: DataRecord) -> bytes:
    code = record.dif & 0x0F
    coding = tables.DATA_CODING[code]
    value = record.value
    if coding in ("none", "readout"):
        return b""
    if record.time is not None:
        if value is None or record.time.value == value:
            return record.time.raw
        return datatypes.encode_time_value(
            value, len(record.data), invalid=bool(record.time.invalid), summer_time=bool(record.time.summer_time)
        )
    if value is None:
        return (bytes([record.lvar]) if record.lvar is not None else b"") + record.data
    meaning = _interpret_vib(record.vif, record.vife, record.plain_text_unit)
    length = len(record.data)
    if coding == "lvar":
        return _lvar_bytes(value, meaning, record.lvar, length)
    return _fixed_bytes(coding, value, meaning, length)


def _fixed_bytes(coding: str, value: Value, meaning: _Meaning, length: int) -> bytes:
    if isinstance(value, (datetime, date, time)):
        return datatypes.encode_time_value(value, length)
    if coding == "real":
        return datatypes.encode_real(_unscale(value, meaning, integral=False))
    mantissa = int(_unscale(value, meaning))
    if coding == "int":
        return datatypes.encode_int(mantissa, length)
    return datatypes.encode_bcd(mantissa, length)


def _lvar_bytes(value: Value, meaning: _Meaning, lvar: int | None, length: int) -> bytes:
    if isinstance(value, str):
        encoded = value.encode("latin-1")
        if len(encoded) > tables.LVAR_TEXT_MAX:
            raise ValueError(f"text of {len(encoded)} characters is longer than {tables.LVAR_TEXT_MAX}")
        return bytes([len(encoded)]) + encoded[::-1]
    if isinstance(value, (bytes, bytearray)):
        return bytes([binary_lvar(len(value))]) + bytes(value)
    mantissa = int(_unscale(value, meaning))
    digits_bytes = length if lvar is not None else max(1, (len(str(abs(mantissa))) + 1) // 2)
    first = tables.LVAR_BCD_NEGATIVE[0] if mantissa < 0 else tables.LVAR_BCD_POSITIVE[0]
    return bytes([first + digits_bytes]) + datatypes.encode_bcd(abs(mantissa), digits_bytes)


def binary_lvar(size: int) -> int:
    """The LVAR byte announcing ``size`` bytes of binary data."""
    if size <= 0x0F:
        return tables.LVAR_BINARY[0] + size
    for lvar in range(256):
        layout = tables.lvar_layout(lvar)
        if layout is not None and layout[0] == "binary" and layout[1] == size:
            return lvar
    raise ValueError(f"no LVAR announces {size} bytes of binary data (0..15, 16, 20, 24, 28, 32, 48, 64)")


def _unscale(value: Value, meaning: _Meaning, *, integral: bool = True) -> Decimal:
    """The mantissa that :func:`_scaled` turns into ``value``; integral where the data
    field holds an integer or BCD."""
    if not isinstance(value, (Decimal, int)):
        raise ValueError(f"a number is needed for {meaning.quantity!r}, got {value!r}")
    number = Decimal(value)
    if meaning.factor != 1:
        number = _EXACT.divide(number, meaning.factor)
    if meaning.add_exponent is not None:
        number = _EXACT.subtract(number, _ONE.scaleb(meaning.add_exponent))
    number = number.scaleb(-meaning.scaler, _EXACT)
    if integral and number != number.to_integral_value():
        raise ValueError(f"{value} is not a whole multiple of the VIF's unit step")
    return number


#: Data-field codes chosen by :func:`make_record` for integers, by size in bytes.
_INT_CODES = ((1, 0x1), (2, 0x2), (3, 0x3), (4, 0x4), (6, 0x6), (8, 0x7))


def make_record(
    vif: int,
    value: Value,
    *,
    vife: tuple[int, ...] = (),
    data_field: int | None = None,
    function: str = "instantaneous value",
    storage: int = 0,
    tariff: int = 0,
    subunit: int = 0,
    plain_text_unit: str | None = None,
    summer_time: bool = False,
    time_invalid: bool = False,
) -> DataRecord:
    """Build a record from its meaning (for simulators and tests) and return it decoded.

    ``vif``/``vife`` are the wire bytes (extension bits included: ``vif=0xFD,
    vife=(0x17,)``). ``data_field`` is the DIF's coding (0x4 = 32-bit integer, 0xC =
    8-digit BCD, 0x5 = real, 0xD = variable length ...); left ``None`` it is chosen from
    the value: the smallest integer that holds the mantissa, type G/J/F/I for
    date/time/datetime (I when seconds are set), text or binary LVAR for ``str``/``bytes``,
    no data for ``None``. ``value`` is in the record's unit (``Decimal("1.234")`` m^3 for
    VIF 0x13): it must be a whole multiple of the VIF's step.
    """
    meaning = _interpret_vib(vif, tuple(vife), plain_text_unit)
    if data_field is None:
        data_field = _choose_data_field(value, meaning)
    dif, difes = _dib(data_field, function, storage, tariff, subunit)
    header = _header(dif, difes, vif, vife, plain_text_unit)
    coding = tables.DATA_CODING[data_field]
    if coding == "lvar":
        body = _lvar_bytes(value, meaning, None, 0)
    elif coding in ("none", "readout"):
        body = b""
    elif isinstance(value, (datetime, date, time)):
        body = datatypes.encode_time_value(
            value, tables.DATA_LENGTHS[data_field], invalid=time_invalid, summer_time=summer_time
        )
    else:
        body = _fixed_bytes(coding, value, meaning, tables.DATA_LENGTHS[data_field])
    block = decode_records(header + body)
    if len(block.records) != 1:
        raise ValueError("the record does not decode back to one record")
    return block.records[0]


def _choose_data_field(value: Value, meaning: _Meaning) -> int:
    if value is None:
        return 0x0
    if isinstance(value, (str, bytes, bytearray)):
        return 0xD
    if isinstance(value, datetime):
        return 0x6 if value.second else 0x4
    if isinstance(value, date):
        return 0x2
    if isinstance(value, time):
        return 0x3
    mantissa = int(_unscale(value, meaning))
    for size, code in _INT_CODES:
        if -(1 << (8 * size - 1)) <= mantissa < (1 << (8 * size - 1)):
            return code
    raise ValueError(f"{value} does not fit a 64-bit integer")


def _dib(data_field: int, function: str, storage: int, tariff: int, subunit: int) -> tuple[int, tuple[int, ...]]:
    """DIF and DIFEs for a data field code and the record's qualifiers (clause 6.3)."""
    if function not in tables.FUNCTIONS:
        raise ValueError(f"function must be one of {tables.FUNCTIONS}")
    if min(storage, tariff, subunit) < 0:
        raise ValueError("storage, tariff and subunit are not negative")
    dif = data_field | tables.FUNCTIONS.index(function) << 4 | (storage & 1) << 6
    storage >>= 1
    difes = []
    while storage or tariff or subunit:
        difes.append((storage & 0x0F) | (tariff & 0x03) << 4 | (subunit & 0x01) << 6)
        storage, tariff, subunit = storage >> 4, tariff >> 2, subunit >> 1
    if len(difes) > tables.MAX_DIFE:
        raise ValueError("storage, tariff or subunit too large for 10 DIFEs")
    for index in range(len(difes) - 1):
        difes[index] |= 0x80
    if difes:
        dif |= 0x80
    return dif, tuple(difes)
