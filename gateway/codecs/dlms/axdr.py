"""A-XDR encoding of COSEM ``Data`` (IEC 62056-6-2 4.1.5 / Blue Book; A-XDR is IEC 61334-6).

A :class:`Data` keeps its type tag next to its value, so ``decode_data(b).to_bytes() == b``
for every canonical encoding. Values, by type:

=====================================  ===============================================
null-data, dont-care                   ``None``
array, structure                       ``tuple[Data, ...]``
boolean                                ``bool``
bit-string                             :class:`BitString`
integers (integer .. long64-unsigned,  ``int`` (never float); bcd is the raw byte
enum, bcd, delta-*)
octet-string                           ``bytes``
visible-string                         ``str`` (Latin-1, so every byte survives as a
                                       valid character)
utf8-string                            ``str``; ``bytes`` (kept raw) when the bytes
                                       are not valid UTF-8, so a meter's other values
                                       survive and the element re-encodes unchanged
float32, float64                       ``float``: the exact IEEE value; :func:`to_decimal`
                                       gives the shortest decimal that reads back to the
                                       same float32/float64 (``Decimal(repr(f))`` for
                                       doubles), NaN payloads survive a round trip
date-time, date, time                  :class:`CosemDateTime`, :class:`CosemDate`,
                                       :class:`CosemTime`
compact-array                          :class:`CompactArray`
=====================================  ===============================================

Lengths (of strings, arrays, structures) are BER definite lengths (short form, or 0x81..
0x84 followed by 1..4 bytes). The decoder accepts any valid form, and any non-zero boolean
byte as TRUE, as real meters send them; the encoder writes the canonical (shortest form,
0x01), so only such non-canonical input re-encodes differently.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from gateway.codecs.dlms.dates import CosemDate, CosemDateTime, CosemTime
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError

#: Nesting deeper than this is refused (real data nests 3 or 4 levels).
MAX_DEPTH = 64
#: A compact-array element description that expands to more Data items than this is refused.
MAX_COMPACT_ELEMENT_ITEMS = 65_536


class DataType(enum.IntEnum):
    """The Data CHOICE tags (IEC 62056-6-2 4.1.5, Blue Book)."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DELTA_INTEGER = 28
    DELTA_LONG = 29
    DELTA_DOUBLE_LONG = 30
    DELTA_UNSIGNED = 31
    DELTA_LONG_UNSIGNED = 32
    DELTA_DOUBLE_LONG_UNSIGNED = 33
    DONT_CARE = 255


#: Fixed-size integer types: tag -> struct format (big-endian, as A-XDR sends them).
INTEGER_FORMATS: dict[DataType, str] = {
    DataType.DOUBLE_LONG: ">i",
    DataType.DOUBLE_LONG_UNSIGNED: ">I",
    DataType.BCD: ">B",
    DataType.INTEGER: ">b",
    DataType.LONG: ">h",
    DataType.UNSIGNED: ">B",
    DataType.LONG_UNSIGNED: ">H",
    DataType.LONG64: ">q",
    DataType.LONG64_UNSIGNED: ">Q",
    DataType.ENUM: ">B",
    DataType.DELTA_INTEGER: ">b",
    DataType.DELTA_LONG: ">h",
    DataType.DELTA_DOUBLE_LONG: ">i",
    DataType.DELTA_UNSIGNED: ">B",
    DataType.DELTA_LONG_UNSIGNED: ">H",
    DataType.DELTA_DOUBLE_LONG_UNSIGNED: ">I",
}

#: Types whose value is a plain ``int`` (what :func:`to_decimal` takes as is).
INTEGER_TYPES = frozenset(INTEGER_FORMATS) - {DataType.BCD}

#: Text types -> codec. Latin-1 decodes every byte, so a visible-string (ISO 646 on the
#: wire, but meters send other bytes) is always a str of valid characters. Invalid UTF-8 is
#: not decoded with ``surrogateescape``: lone surrogates cannot be stored or serialised, so
#: the decoder keeps such an element's raw bytes instead (see the module docstring).
_TEXT_ENCODINGS = {DataType.VISIBLE_STRING: "latin-1", DataType.UTF8_STRING: "utf-8"}


@dataclass(frozen=True, slots=True)
class BitString:
    """A bit-string: ``length`` bits, first bit = most significant bit of ``data[0]``.
    Unused trailing bits of the last byte are kept as received."""

    length: int
    data: bytes

    def __post_init__(self) -> None:
        if self.length < 0 or len(self.data) != (self.length + 7) // 8:
            raise ValueError(f"{self.length} bits need {(self.length + 7) // 8} bytes, got {len(self.data)}")

    @classmethod
    def from_bits(cls, bits: str) -> BitString:
        """From a string of ``0``/``1`` characters, first bit first."""
        if bits.strip("01"):
            raise ValueError(f"not a bit string: {bits!r}")
        padded = bits + "0" * (-len(bits) % 8)
        return cls(len(bits), int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b"")

    def __str__(self) -> str:
        if not self.length:
            return ""
        return format(int.from_bytes(self.data, "big"), f"0{len(self.data) * 8}b")[: self.length]

    def __getitem__(self, index: int) -> bool:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return bool(self.data[index >> 3] & (0x80 >> (index & 7)))


@dataclass(frozen=True, slots=True)
class TypeDescription:
    """A compact-array contents description (Blue Book 4.1.5, TypeDescription).

    ``count`` is the number-of-elements of an array; ``members`` the one element type of
    an array, or the member types of a structure."""

    type: DataType
    count: int = 0
    members: tuple[TypeDescription, ...] = ()

    def to_bytes(self) -> bytes:
        if self.type is DataType.ARRAY:
            return bytes((1,)) + _U16.pack(self.count) + self.members[0].to_bytes()
        if self.type is DataType.STRUCTURE:
            return bytes((2,)) + encode_length(len(self.members)) + b"".join(m.to_bytes() for m in self.members)
        return bytes((self.type,))


@dataclass(frozen=True, slots=True)
class CompactArray:
    """A compact-array: every element has the type ``description``; ``elements`` are
    typed :class:`Data` (their tags are implied on the wire, not sent)."""

    description: TypeDescription
    elements: tuple[Data, ...]


class Data(NamedTuple):
    """One A-XDR ``Data`` value with its type tag (see the module docstring for values).

    An immutable pair, like a frozen dataclass; it is a named tuple because profile buffers
    hold thousands of them and a tuple is four times cheaper to build. (So ``Data`` compares
    equal to the plain tuple ``(type, value)``.)"""

    type: DataType
    value: Any = None

    def to_bytes(self) -> bytes:
        out = bytearray()
        _encode(self, out)
        return bytes(out)

    def to_python(self) -> Any:
        """The value without tags: arrays and structures become lists, compact arrays lists
        of their elements' values; everything else as is."""
        value = self.value
        if self.type is DataType.ARRAY or self.type is DataType.STRUCTURE:
            return [item.to_python() for item in value]
        if self.type is DataType.COMPACT_ARRAY:
            return [item.to_python() for item in value.elements]
        return value


#: Builds a Data without the Python-level constructor (the decoder's hot path).
_new = tuple.__new__


# --- small constructors, for building requests --------------------------------------


def structure(*items: Data) -> Data:
    return Data(DataType.STRUCTURE, tuple(items))


def array(*items: Data) -> Data:
    return Data(DataType.ARRAY, tuple(items))


def octet_string(value: bytes) -> Data:
    return Data(DataType.OCTET_STRING, bytes(value))


# --- lengths ----------------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    """A BER definite length in its shortest form (A-XDR lengths and quantities)."""
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > 4:
        raise ValueError(f"length {length} does not fit 4 bytes")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def decode_length(buf: bytes, pos: int, field: str = "length") -> tuple[int, int]:
    """Read a BER definite length at ``pos``; returns (length, position after it)."""
    if pos >= len(buf):
        raise truncated(buf, pos, 1, field)
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if size == 0 or size > 4:
        raise DLMSFrameError(f"length byte 0x{first:02X} is not a definite length of 1..4 bytes",
                             offset=pos, field=field)
    end = pos + 1 + size
    if end > len(buf):
        raise truncated(buf, pos + 1, size, field)
    return int.from_bytes(buf[pos + 1 : end], "big"), end


def truncated(buf: bytes, pos: int, need: int, field: str) -> DLMSFrameError:
    have = max(0, len(buf) - pos)
    return DLMSFrameError(f"truncated: {field} needs {need} bytes, {have} left", offset=pos, field=field)


def take(buf: bytes, pos: int, size: int, field: str) -> tuple[bytes, int]:
    """``size`` bytes at ``pos`` and the position after them."""
    end = pos + size
    if end > len(buf):
        raise truncated(buf, pos, size, field)
    return buf[pos:end], end


def take_counted(buf: bytes, pos: int, field: str) -> tuple[bytes, int]:
    """A length-prefixed octet string at ``pos``."""
    size, pos = decode_length(buf, pos, field)
    return take(buf, pos, size, field)


def read_u8(buf: bytes, pos: int, field: str) -> tuple[int, int]:
    if pos >= len(buf):
        raise truncated(buf, pos, 1, field)
    return buf[pos], pos + 1


def read_u16(buf: bytes, pos: int, field: str) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise truncated(buf, pos, 2, field)
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def read_u32(buf: bytes, pos: int, field: str) -> tuple[int, int]:
    if pos + 4 > len(buf):
        raise truncated(buf, pos, 4, field)
    return _U32.unpack_from(buf, pos)[0], pos + 4


def read_boolean(buf: bytes, pos: int, field: str) -> tuple[bool, int]:
    """An A-XDR BOOLEAN (any non-zero byte is TRUE, as BER has it)."""
    if pos >= len(buf):
        raise truncated(buf, pos, 1, field)
    return buf[pos] != 0, pos + 1


def read_present(buf: bytes, pos: int, field: str) -> tuple[bool, int]:
    """An A-XDR OPTIONAL/DEFAULT presence flag: 0x00 absent (or default), 0x01 present."""
    if pos >= len(buf):
        raise truncated(buf, pos, 1, field)
    flag = buf[pos]
    if flag > 1:
        raise DLMSFrameError(f"presence flag of {field} is 0x{flag:02X}, not 0x00 or 0x01", offset=pos, field=field)
    return flag == 1, pos + 1


def counted(data: bytes) -> bytes:
    """``data`` prefixed with its A-XDR length (an OCTET STRING without tag)."""
    return encode_length(len(data)) + data


# --- decoding ---------------------------------------------------------------------------


def decode_data(data: bytes) -> Data:
    """Decode exactly one Data value; anything short, malformed or trailing raises
    :class:`DLMSFrameError` with the offset and field."""
    buf = bytes(data)
    value, pos = decode_data_at(buf, 0)
    if pos != len(buf):
        raise DLMSFrameError(f"{len(buf) - pos} trailing bytes after Data", offset=pos, field="Data")
    return value


def decode_data_at(buf: bytes, pos: int) -> tuple[Data, int]:
    """Decode one Data value starting at ``pos`` of ``buf``; returns it and the position
    after it. Offsets in errors are positions in ``buf``."""
    try:
        return _decode(buf, pos, 0)
    except DLMSError:
        raise
    except RecursionError:
        raise DLMSFrameError("Data nested too deeply", offset=pos, field="Data") from None
    except (ValueError, IndexError, struct.error, OverflowError) as exc:
        raise DLMSFrameError(f"malformed Data: {exc}", offset=pos, field="Data") from None


_U16 = struct.Struct(">H")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

#: tag -> (DataType, size, unpack_from) for fixed-size types decoded straight into ints.
_FIXED: dict[int, tuple[DataType, int, Any]] = {
    int(t): (t, struct.calcsize(f), struct.Struct(f).unpack_from) for t, f in INTEGER_FORMATS.items()
}
_FIXED_SIZE_OTHER = {DataType.BOOLEAN: 1, DataType.FLOAT32: 4, DataType.FLOAT64: 8,
                     DataType.DATE_TIME: 12, DataType.DATE: 5, DataType.TIME: 4}
_NULL_TYPES = {0: Data(DataType.NULL_DATA), 255: Data(DataType.DONT_CARE)}
_OCTET_STRING = DataType.OCTET_STRING


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Data, int]:
    if pos >= len(buf):
        raise truncated(buf, pos, 1, "Data tag")
    tag = buf[pos]
    fixed = _FIXED.get(tag)
    if fixed is not None:
        dtype, size, unpack = fixed
        end = pos + 1 + size
        if end > len(buf):
            raise truncated(buf, pos + 1, size, dtype.name.lower())
        return _new(Data, (dtype, unpack(buf, pos + 1)[0])), end
    if tag == 1 or tag == 2:
        count, pos = decode_length(buf, pos + 1, "quantity")
        if count > len(buf) - pos:
            raise truncated(buf, pos, count, "array" if tag == 1 else "structure")
        if depth >= MAX_DEPTH:
            raise DLMSFrameError(f"Data nested deeper than {MAX_DEPTH}", offset=pos, field="Data")
        items = []
        append = items.append
        size = len(buf)
        get_fixed = _FIXED.get
        for _ in range(count):
            # Fast path for the leaves that fill profile buffers (fixed-size integers and
            # short octet strings); anything else, and every error, takes _decode.
            if pos < size:
                item_tag = buf[pos]
                fixed = get_fixed(item_tag)
                if fixed is not None:
                    dtype, width, unpack = fixed
                    end = pos + 1 + width
                    if end <= size:
                        append(_new(Data, (dtype, unpack(buf, pos + 1)[0])))
                        pos = end
                        continue
                elif item_tag == 9 and pos + 1 < size and buf[pos + 1] < 0x80:
                    end = pos + 2 + buf[pos + 1]
                    if end <= size:
                        append(_new(Data, (_OCTET_STRING, buf[pos + 2 : end])))
                        pos = end
                        continue
            item, pos = _decode(buf, pos, depth + 1)
            append(item)
        return _new(Data, (DataType.ARRAY if tag == 1 else DataType.STRUCTURE, tuple(items))), pos
    decoder = _DECODERS.get(tag)
    if decoder is None:
        null = _NULL_TYPES.get(tag)
        if null is None:
            raise DLMSFrameError(f"unknown Data type tag {tag} (0x{tag:02X})", offset=pos, field="Data tag")
        return null, pos + 1
    return decoder(buf, pos + 1, depth)


def _fixed(buf: bytes, pos: int, dtype: DataType) -> tuple[bytes, int]:
    return take(buf, pos, _FIXED_SIZE_OTHER[dtype], dtype.name.lower())


def _dec_boolean(buf, pos, depth):
    raw, pos = _fixed(buf, pos, DataType.BOOLEAN)
    return Data(DataType.BOOLEAN, raw[0] != 0), pos


def _dec_octet_string(buf, pos, depth):
    raw, pos = take_counted(buf, pos, "octet-string")
    return _new(Data, (DataType.OCTET_STRING, raw)), pos


def _dec_text(dtype):
    encoding = _TEXT_ENCODINGS[dtype]
    field = dtype.name.lower()

    def decode(buf, pos, depth):
        raw, pos = take_counted(buf, pos, field)
        try:
            return Data(dtype, raw.decode(encoding)), pos
        except UnicodeDecodeError:
            return Data(dtype, bytes(raw)), pos

    return decode


def _dec_bit_string(buf, pos, depth):
    bits, pos = decode_length(buf, pos, "bit-string")
    raw, pos = take(buf, pos, (bits + 7) // 8, "bit-string")
    return Data(DataType.BIT_STRING, BitString(bits, raw)), pos


def _float32_from(raw: bytes) -> float:
    bits = _U32.unpack(raw)[0]
    if bits & 0x7F800000 == 0x7F800000 and bits & 0x7FFFFF:
        # A float32 NaN widened by the C cast loses its signalling bit; build the double
        # NaN by hand so that the payload (and the bytes) survive a round trip.
        double = ((bits >> 31) << 63) | (0x7FF << 52) | ((bits & 0x7FFFFF) << 29)
        return _F64.unpack(_U64.pack(double))[0]
    return _F32.unpack(raw)[0]


def _float32_to(value: float) -> bytes:
    if value != value:
        bits = _U64.unpack(_F64.pack(value))[0]
        mantissa = (bits >> 29) & 0x7FFFFF or 0x400000
        return _U32.pack(((bits >> 63) << 31) | 0x7F800000 | mantissa)
    return _F32.pack(value)


def _dec_float32(buf, pos, depth):
    raw, pos = _fixed(buf, pos, DataType.FLOAT32)
    return Data(DataType.FLOAT32, _float32_from(raw)), pos


def _dec_float64(buf, pos, depth):
    raw, pos = _fixed(buf, pos, DataType.FLOAT64)
    return Data(DataType.FLOAT64, _F64.unpack(raw)[0]), pos


def _dec_date_time(buf, pos, depth):
    raw, pos = _fixed(buf, pos, DataType.DATE_TIME)
    return Data(DataType.DATE_TIME, CosemDateTime.from_bytes(raw)), pos


def _dec_date(buf, pos, depth):
    raw, pos = _fixed(buf, pos, DataType.DATE)
    return Data(DataType.DATE, CosemDate.from_bytes(raw)), pos


def _dec_time(buf, pos, depth):
    raw, pos = _fixed(buf, pos, DataType.TIME)
    return Data(DataType.TIME, CosemTime.from_bytes(raw)), pos


def _dec_compact_array(buf, pos, depth):
    description, pos = _decode_description(buf, pos, depth)
    items, size = _expansion(description)
    if size == 0 or items > MAX_COMPACT_ELEMENT_ITEMS:
        raise DLMSFrameError(
            "compact-array element type is empty or too large to decode", offset=pos, field="contents-description"
        )
    contents, end = take_counted(buf, pos, "array-contents")
    pos = end - len(contents)
    bounded = buf[:end]  # elements must not read past the contents
    elements = []
    while pos < end:
        element, pos = _decode_untagged(bounded, pos, description)
        elements.append(element)
    return Data(DataType.COMPACT_ARRAY, CompactArray(description, tuple(elements))), end


def _decode_description(buf: bytes, pos: int, depth: int) -> tuple[TypeDescription, int]:
    if depth >= MAX_DEPTH:
        raise DLMSFrameError(f"type description nested deeper than {MAX_DEPTH}", offset=pos,
                             field="contents-description")
    if pos >= len(buf):
        raise truncated(buf, pos, 1, "contents-description")
    tag = buf[pos]
    if tag == 1:
        raw, pos = take(buf, pos + 1, 2, "number-of-elements")
        member, pos = _decode_description(buf, pos, depth + 1)
        return TypeDescription(DataType.ARRAY, _U16.unpack(raw)[0], (member,)), pos
    if tag == 2:
        count, pos = decode_length(buf, pos + 1, "structure description")
        if count > len(buf) - pos:
            raise truncated(buf, pos, count, "structure description")
        members = []
        for _ in range(count):
            member, pos = _decode_description(buf, pos, depth + 1)
            members.append(member)
        return TypeDescription(DataType.STRUCTURE, 0, tuple(members)), pos
    if tag == DataType.COMPACT_ARRAY or tag not in _SIMPLE_TAGS:
        raise DLMSFrameError(f"type {tag} cannot describe compact-array contents", offset=pos,
                             field="contents-description")
    return _SIMPLE_DESCRIPTIONS[tag], pos + 1


def _expansion(description: TypeDescription) -> tuple[int, int]:
    """(Data items, minimum bytes) one element of this description decodes to."""
    dtype = description.type
    if dtype is DataType.ARRAY:
        items, size = _expansion(description.members[0])
        return 1 + description.count * items, description.count * size
    if dtype is DataType.STRUCTURE:
        parts = [_expansion(m) for m in description.members]
        return 1 + sum(p[0] for p in parts), sum(p[1] for p in parts)
    fixed = _FIXED.get(dtype)
    if fixed is not None:
        return 1, fixed[1]
    return 1, _FIXED_SIZE_OTHER.get(dtype, 1 if dtype not in _NULL_TYPES else 0)


def _decode_untagged(buf: bytes, pos: int, description: TypeDescription) -> tuple[Data, int]:
    dtype = description.type
    if dtype is DataType.ARRAY:
        member = description.members[0]
        items = []
        for _ in range(description.count):
            item, pos = _decode_untagged(buf, pos, member)
            items.append(item)
        return Data(DataType.ARRAY, tuple(items)), pos
    if dtype is DataType.STRUCTURE:
        items = []
        for member in description.members:
            item, pos = _decode_untagged(buf, pos, member)
            items.append(item)
        return Data(DataType.STRUCTURE, tuple(items)), pos
    if dtype in _NULL_TYPES:
        return _NULL_TYPES[dtype], pos
    fixed = _FIXED.get(dtype)
    if fixed is not None:
        _, size, unpack = fixed
        if pos + size > len(buf):
            raise truncated(buf, pos, size, "array-contents")
        return Data(dtype, unpack(buf, pos)[0]), pos + size
    return _DECODERS[dtype](buf, pos, 0)


_DECODERS = {
    DataType.BOOLEAN: _dec_boolean,
    DataType.BIT_STRING: _dec_bit_string,
    DataType.OCTET_STRING: _dec_octet_string,
    DataType.VISIBLE_STRING: _dec_text(DataType.VISIBLE_STRING),
    DataType.UTF8_STRING: _dec_text(DataType.UTF8_STRING),
    DataType.COMPACT_ARRAY: _dec_compact_array,
    DataType.FLOAT32: _dec_float32,
    DataType.FLOAT64: _dec_float64,
    DataType.DATE_TIME: _dec_date_time,
    DataType.DATE: _dec_date,
    DataType.TIME: _dec_time,
}
_SIMPLE_TAGS = frozenset(int(t) for t in DataType) - {1, 2}
_SIMPLE_DESCRIPTIONS = {int(t): TypeDescription(t) for t in DataType}


# --- encoding ---------------------------------------------------------------------------

_PACKERS = {t: struct.Struct(f).pack for t, f in INTEGER_FORMATS.items()}


def encode_data(value: Data) -> bytes:
    """The A-XDR bytes of ``value``. Values that do not fit their type raise ValueError."""
    return value.to_bytes()


def _encode(data: Data, out: bytearray) -> None:
    dtype = data.type
    out.append(dtype)
    _encode_value(data, out)


def _encode_value(data: Data, out: bytearray) -> None:
    dtype = data.type
    value = data.value
    pack = _PACKERS.get(dtype)
    if pack is not None:
        if type(value) is not int:
            _check_int(dtype, value)
        try:
            out += pack(value)
        except struct.error:
            raise ValueError(f"{value} does not fit {dtype.name.lower()}") from None
        return
    encoder = _ENCODERS.get(dtype)
    if encoder is None:
        raise ValueError(f"cannot encode Data type {dtype!r}")
    encoder(value, out)


def _check_int(dtype: DataType, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{dtype.name.lower()} needs an int, got {type(value).__name__}")


def _enc_sequence(value, out):
    out += encode_length(len(value))
    for item in value:
        _encode(item, out)


def _enc_nothing(value, out):
    if value is not None:
        raise ValueError("null-data and dont-care carry no value")


def _enc_boolean(value, out):
    out.append(1 if value else 0)


def _enc_bit_string(value: BitString, out):
    out += encode_length(value.length)
    out += value.data


def _enc_octet_string(value, out):
    out += encode_length(len(value))
    out += value


def _enc_text(dtype):
    encoding = _TEXT_ENCODINGS[dtype]

    def encode(value, out):
        raw = bytes(value) if isinstance(value, (bytes, bytearray)) else value.encode(encoding)
        out += encode_length(len(raw))
        out += raw

    return encode


def _enc_float32(value, out):
    out += _float32_to(value)


def _enc_float64(value, out):
    out += _F64.pack(value)


def _enc_cosem_time(size):
    def encode(value, out):
        raw = value.to_bytes()
        if len(raw) != size:  # pragma: no cover - the classes pack fixed sizes
            raise ValueError("date/time of the wrong size")
        out += raw

    return encode


def _enc_compact_array(value: CompactArray, out):
    out += value.description.to_bytes()
    contents = bytearray()
    for element in value.elements:
        _encode_untagged(element, value.description, contents)
    out += encode_length(len(contents))
    out += contents


def _encode_untagged(data: Data, description: TypeDescription, out: bytearray) -> None:
    if data.type is not description.type:
        raise ValueError(f"compact-array element of type {data.type.name} where {description.type.name} is described")
    if description.type is DataType.ARRAY:
        if len(data.value) != description.count:
            raise ValueError(f"compact-array element array has {len(data.value)} items, described {description.count}")
        for item in data.value:
            _encode_untagged(item, description.members[0], out)
    elif description.type is DataType.STRUCTURE:
        if len(data.value) != len(description.members):
            raise ValueError("compact-array element structure does not match its description")
        for item, member in zip(data.value, description.members, strict=True):
            _encode_untagged(item, member, out)
    else:
        _encode_value(data, out)


_ENCODERS = {
    DataType.NULL_DATA: _enc_nothing,
    DataType.DONT_CARE: _enc_nothing,
    DataType.ARRAY: _enc_sequence,
    DataType.STRUCTURE: _enc_sequence,
    DataType.BOOLEAN: _enc_boolean,
    DataType.BIT_STRING: _enc_bit_string,
    DataType.OCTET_STRING: _enc_octet_string,
    DataType.VISIBLE_STRING: _enc_text(DataType.VISIBLE_STRING),
    DataType.UTF8_STRING: _enc_text(DataType.UTF8_STRING),
    DataType.COMPACT_ARRAY: _enc_compact_array,
    DataType.FLOAT32: _enc_float32,
    DataType.FLOAT64: _enc_float64,
    DataType.DATE_TIME: _enc_cosem_time(CosemDateTime.SIZE),
    DataType.DATE: _enc_cosem_time(CosemDate.SIZE),
    DataType.TIME: _enc_cosem_time(CosemTime.SIZE),
}


# --- exact numbers ----------------------------------------------------------------------


def to_decimal(data: Data) -> Decimal:
    """The exact number a numeric Data stands for.

    Integers become ``Decimal(int)``; bcd its two decimal digits; float32/float64 the
    shortest decimal that reads back to the same binary value (``1.1`` for the float32
    nearest to 1.1, not ``1.10000002384185791015625``); NaN and infinities become
    ``Decimal('NaN')`` / ``Decimal('±Infinity')``."""
    dtype = data.type
    value = data.value
    if dtype in INTEGER_TYPES:
        return Decimal(value)
    if dtype is DataType.BCD:
        high, low = value >> 4, value & 0x0F
        if high > 9 or low > 9:
            raise DLMSError(f"bcd byte 0x{value:02X} is not two decimal digits", field="bcd")
        return Decimal(high * 10 + low)
    if dtype is DataType.FLOAT64:
        return _special_float(value) or Decimal(repr(value))
    if dtype is DataType.FLOAT32:
        return _special_float(value) or _shortest_float32(value)
    raise DLMSError(f"{dtype.name.lower()} is not a number", field="value")


def _special_float(value: float) -> Decimal | None:
    if math.isnan(value):
        return Decimal("NaN")
    if math.isinf(value):
        return Decimal("Infinity") if value > 0 else Decimal("-Infinity")
    return None


def _shortest_float32(value: float) -> Decimal:
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if _F32.unpack(_F32.pack(float(text)))[0] == value:
                return Decimal(text)
        except OverflowError:  # rounded up beyond the largest float32
            continue
    return Decimal(repr(value))  # pragma: no cover - 9 significant digits always suffice
