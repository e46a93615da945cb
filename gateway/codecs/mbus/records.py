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

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Context, Decimal

from gateway.codecs.mbus import datatypes, tables
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.model import Value

_EXACT = Context(prec=80)
_ONE = Decimal(1)
_PLAIN_TEXT = tables.VIF_PLAIN_TEXT
_DATE_KINDS = (tables.DATE, tables.DATETIME)


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One decoded data record.

    ``value`` is exact: ``Decimal`` for numbers (mantissa × 10^scaler from the VIF, times
    the time unit in seconds where the VIF counts minutes, hours or days), ``datetime``/
    ``date``/``time`` (naive, meter local time) for date/time types, ``str`` for text,
    ``bytes`` for binary data (transmission order), ``None`` for records without data or
    with a BCD field whose digits are not decimal (``value_error`` says why; the bytes are
    in ``data``). ``modifiers`` describes the combinable VIFEs in order. ``raw`` is the
    whole record as transmitted, ``offset`` where it starts in the decoded unit,
    ``header_bytes`` its DIF/DIFE/VIF/VIFE part (the format signature of wireless M-Bus
    compact frames is computed over it).
    """

    dif: int
    dife: tuple[int, ...]
    vif: int
    vife: tuple[int, ...]
    function: str
    storage: int
    tariff: int
    subunit: int
    quantity: str
    unit: str | None
    value: Value
    raw: bytes
    offset: int
    header_length: int
    data: bytes
    lvar: int | None = None
    plain_text_unit: str | None = None
    modifiers: tuple[str, ...] = ()
    time: datatypes.TimeFields | None = None
    value_error: str | None = None

    @property
    def header_bytes(self) -> bytes:
        return self.raw[: self.header_length]

    @property
    def data_field(self) -> int:
        """The DIF's data field code (table 6): 0x4 = 32-bit integer, 0xC = 8-digit BCD ..."""
        return self.dif & tables.DIF_DATA

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
        return (self.vif & 0x7F) == tables.VIF_MANUFACTURER or "manufacturer specific" in self.modifiers


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
        return _RecordParser(bytes(data), offset, msb_first).parse()
    except MBusFrameError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:  # pragma: no cover - defensive
        raise MBusFrameError(f"undecodable record: {exc}", offset=offset, field="record") from exc


class _RecordParser:
    __slots__ = ("data", "base", "msb_first", "pos")

    def __init__(self, data: bytes, base: int, msb_first: bool) -> None:
        self.data = data
        self.base = base
        self.msb_first = msb_first
        self.pos = 0

    def fail(self, reason: str, pos: int, field: str) -> MBusFrameError:
        return MBusFrameError(reason, offset=self.base + pos, field=field)

    def parse(self) -> RecordBlock:
        data = self.data
        end = len(data)
        records = []
        pos = 0
        while pos < end:
            dif = data[pos]
            if dif & 0x0F == 0x0F:
                if dif == tables.DIF_IDLE_FILLER:
                    pos += 1
                    continue
                if dif in (tables.DIF_MANUFACTURER_DATA, tables.DIF_MORE_RECORDS_FOLLOW):
                    return RecordBlock(
                        tuple(records), dif == tables.DIF_MORE_RECORDS_FOLLOW, data[pos + 1 :], self.base + pos + 1
                    )
                raise self.fail(f"reserved special function DIF 0x{dif:02X}", pos, "DIF")
            record, pos = self.record(pos)
            records.append(record)
        return RecordBlock(tuple(records))

    def record(self, start: int) -> tuple[DataRecord, int]:
        data = self.data
        end = len(data)
        dif = data[start]
        pos = start + 1
        difes: tuple[int, ...] = ()
        if dif & 0x80:
            collected = []
            byte = dif
            while byte & 0x80:
                if pos >= end:
                    raise self.fail("premature end of record: DIFE expected", pos, "DIFE")
                if len(collected) == tables.MAX_DIFE:
                    raise self.fail(f"more than {tables.MAX_DIFE} DIFEs", pos, "DIFE")
                byte = data[pos]
                collected.append(byte)
                pos += 1
            difes = tuple(collected)
        if pos >= end:
            raise self.fail("premature end of record: VIF expected", pos, "VIF")
        vif = data[pos]
        pos += 1
        text = None
        if vif & 0x7F == _PLAIN_TEXT:
            if pos >= end:
                raise self.fail("premature end of record: plain-text VIF length expected", pos, "VIF")
            length = data[pos]
            if pos + 1 + length > end:
                raise self.fail(
                    f"plain-text VIF of {length} characters runs past the end of the data", pos, "VIF"
                )
            text = data[pos + 1 : pos + 1 + length][::-1].decode("latin-1")
            pos += 1 + length
        vifes: tuple[int, ...] = ()
        if vif & 0x80:
            collected = []
            byte = vif
            while byte & 0x80:
                if pos >= end:
                    raise self.fail("premature end of record: VIFE expected", pos, "VIFE")
                if len(collected) == tables.MAX_VIFE:
                    raise self.fail(f"more than {tables.MAX_VIFE} VIFEs", pos, "VIFE")
                byte = data[pos]
                collected.append(byte)
                pos += 1
            vifes = tuple(collected)
        header_length = pos - start
        code = dif & 0x0F
        length = tables.DATA_LENGTHS[code]
        lvar = None
        if length is None:  # 0xD: variable length, the LVAR byte says how long
            if pos >= end:
                raise self.fail("premature end of record: LVAR byte expected", pos, "LVAR")
            lvar = data[pos]
            layout = tables.lvar_layout(lvar)
            if layout is None:
                raise self.fail(f"reserved LVAR 0x{lvar:02X}: data length unknown", pos, "LVAR")
            length = layout[1]
            pos += 1
        if pos + length > end:
            raise self.fail(
                f"premature end of record: {length} data bytes expected, {end - pos} left", pos, "data"
            )
        field = data[pos : pos + length]
        pos += length
        record = build_record(
            dif, difes, vif, vifes, text, lvar, field, data[start:pos], self.base + start, header_length,
            self.msb_first,
        )
        return record, pos


def build_record(
    dif: int,
    difes: tuple[int, ...],
    vif: int,
    vifes: tuple[int, ...],
    text: str | None,
    lvar: int | None,
    field: bytes,
    raw: bytes,
    offset: int,
    header_length: int,
    msb_first: bool = False,
) -> DataRecord:
    """Interpret the parts of one record (already split and length-checked)."""
    storage = (dif >> 6) & 1
    tariff = subunit = 0
    for index, dife in enumerate(difes):
        storage |= (dife & 0x0F) << (1 + 4 * index)
        tariff |= ((dife >> 4) & 0x03) << (2 * index)
        subunit |= ((dife >> 6) & 0x01) << index
    meaning = _interpret_vib(vif, vifes, text)
    value, time_fields, error = _decode_value(dif & 0x0F, lvar, field, meaning, msb_first)
    return DataRecord(
        dif, difes, vif, vifes, tables.FUNCTIONS[(dif >> 4) & 0x03], storage, tariff, subunit,
        meaning.quantity, meaning.unit, value, raw, offset, header_length, field, lvar, text,
        meaning.modifiers, time_fields, error,
    )


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


def _scaled(mantissa: int, meaning: _Meaning) -> Decimal:
    value = Decimal(mantissa).scaleb(meaning.scaler, _EXACT)
    if meaning.add_exponent is not None:
        value = _EXACT.add(value, _ONE.scaleb(meaning.add_exponent))
    if meaning.factor != 1:
        value = _EXACT.multiply(value, meaning.factor)
    return value


def _decode_value(
    code: int, lvar: int | None, field: bytes, meaning: _Meaning, msb_first: bool
) -> tuple[Value, datatypes.TimeFields | None, str | None]:
    coding = tables.DATA_CODING[code]
    if msb_first and coding in ("int", "bcd", "real"):
        field = field[::-1]
    if coding == "int":
        time_kind = None
        if meaning.kind in _DATE_KINDS:
            time_kind = datatypes.TIME_TYPE_BY_LENGTH.get(len(field))
        elif meaning.kind == tables.DAYLIGHT_SAVING and len(field) == 4:
            time_kind = "K"
        if time_kind is not None:
            fields = datatypes.TIME_DECODERS[time_kind](field)
            return fields.value, fields, None
        return _scaled(datatypes.decode_int(field), meaning), None, None
    if coding == "bcd":
        return _bcd_value(datatypes.decode_bcd(field), field, meaning)
    if coding == "real":
        return _real_scaled(field, meaning), None, None
    if coding == "lvar":
        kind = tables.lvar_layout(lvar)[0]
        if kind == "text":
            return field[::-1].decode("latin-1"), None, None
        if kind == "binary":
            return field, None, None
        mantissa = datatypes.decode_bcd(field)
        if mantissa is not None and kind == "negative bcd":
            mantissa = -mantissa
        return _bcd_value(mantissa, field, meaning)
    return None, None, None  # no data, or selection for readout


def _real_scaled(field: bytes, meaning: _Meaning) -> Decimal:
    value = datatypes.decode_real(field)
    if not value.is_finite():
        return value
    value = value.scaleb(meaning.scaler, _EXACT)
    if meaning.add_exponent is not None:
        value = _EXACT.add(value, _ONE.scaleb(meaning.add_exponent))
    return _EXACT.multiply(value, meaning.factor) if meaning.factor != 1 else value


def _bcd_value(mantissa: int | None, field: bytes, meaning: _Meaning) -> tuple[Value, None, str | None]:
    if mantissa is None:
        return None, None, f"BCD digits are not decimal: {field[::-1].hex().upper()}"
    return _scaled(mantissa, meaning), None, None


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
