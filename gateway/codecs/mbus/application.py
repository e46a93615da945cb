"""Wired M-Bus application layer (EN 13757-3:2018): CI fields, headers, responses, and the
master's requests.

Slave responses (the user data of an RSP_UD long frame, CI first):

==========  ==========================================================================
CI 0x70     application error: one error code byte (table 9), optional further bytes
CI 0x72     variable data structure, long header (12 bytes), numbers LSB first
CI 0x76     the same, "mode 2": numbers MSB first (EN 1434-3 legacy)
CI 0x7A     variable data structure, short header (access number, status, signature)
CI 0x78     variable data structure without header
CI 0x73     fixed data structure (16 bytes), 0x77 its mode 2
==========  ==========================================================================

The long header is identification number (8 BCD digits), manufacturer (3 letters in 15
bits, EN 13757-3 clause 5.6), version, medium, access number, status and signature
(clause 5.5). :func:`decode_user_data` decodes a response, :func:`decode_response`
a whole frame; :func:`encode` builds RSP_UD frames (simulator and tests) and the request
builders the master's SND_NKE, REQ_UD2, secondary address selection (CI 0x52), primary
address setting (CI 0x51, ``01 7A addr``) and application reset (CI 0x50).

Every decoding error is an :class:`MBusFrameError` with the reason, the byte offset in
the frame (or in the user data when no frame offset was given) and the field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Union

from gateway.codecs.mbus import link, tables
from gateway.codecs.mbus.datatypes import decode_bcd, decode_int
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.records import DataRecord, RecordBlock, decode_records, encode_record
from gateway.model import EXACT, value_text

CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECTION = 0x52
CI_APPLICATION_ERROR = 0x70
CI_VARIABLE = 0x72
CI_FIXED = 0x73
CI_VARIABLE_MSB_FIRST = 0x76
CI_FIXED_MSB_FIRST = 0x77
CI_VARIABLE_NO_HEADER = 0x78
CI_VARIABLE_SHORT_HEADER = 0x7A

LONG_HEADER_LENGTH = 12
SHORT_HEADER_LENGTH = 4
FIXED_DATA_LENGTH = 16

#: CI fields a master sends (EN 13757-3:2018 table 2), named for the error message.
MASTER_CIS = {
    0x50: "application reset",
    0x51: "data send",
    0x52: "selection of slaves",
    0x53: "application reset (with subcode)",
    0x54: "request of selected application",
    0x5C: "synchronize action",
    **{code: "set baud rate" for code in range(0xB8, 0xC0)},
}

# Fixed data structure status bits (EN 13757-3 annex, fixed data structure).
FIXED_STATUS_BINARY = 0x80  # counters are binary (else BCD)
FIXED_STATUS_STORED = 0x40  # counters are stored values (else actual)


def manufacturer_letters(code: int) -> str:
    """Three letters from the 15-bit manufacturer code (FLAG association, clause 5.6)."""
    letters = _LETTERS.get(code)
    if letters is None:
        letters = _LETTERS[code] = "".join(chr(((code >> shift) & 0x1F) + 64) for shift in (10, 5, 0))
    return letters


_LETTERS: dict[int, str] = {}


def manufacturer_code(letters: str) -> int:
    if len(letters) != 3 or not all("@" <= ch <= "_" for ch in letters.upper()):
        raise ValueError(f"manufacturer must be 3 letters, got {letters!r}")
    up = letters.upper()
    return ((ord(up[0]) - 64) << 10) | ((ord(up[1]) - 64) << 5) | (ord(up[2]) - 64)


@dataclass(frozen=True, slots=True)
class Header:
    """The data header of a variable data structure (clause 5.5).

    ``identification`` is the 8-digit identification number as transmitted in BCD (a
    non-decimal nibble shows as its hex digit); the short header (CI 0x7A) and no header
    (0x78) leave identification, manufacturer, version and medium ``None``.
    """

    identification: str | None
    manufacturer: str | None
    version: int | None
    medium: int | None
    access_number: int = 0
    status: int = 0
    signature: int = 0

    @property
    def medium_name(self) -> str | None:
        return None if self.medium is None else tables.medium_name(self.medium)

    def long_bytes(self, *, msb_first: bool = False) -> bytes:
        if None in (self.identification, self.manufacturer, self.version, self.medium):
            raise ValueError("a long header needs identification, manufacturer, version and medium")
        ident = bytes.fromhex(self.identification)[::-1]
        manufacturer = manufacturer_code(self.manufacturer).to_bytes(2, "little")
        signature = self.signature.to_bytes(2, "little")
        if msb_first:
            ident, manufacturer, signature = ident[::-1], manufacturer[::-1], signature[::-1]
        return ident + manufacturer + bytes([self.version, self.medium]) + self.short_bytes(signature)

    def short_bytes(self, signature: bytes | None = None) -> bytes:
        if signature is None:
            signature = self.signature.to_bytes(2, "little")
        return bytes([self.access_number, self.status]) + signature


@dataclass(frozen=True, slots=True)
class VariableDataResponse:
    """A variable data structure (CI 0x72, 0x76, 0x7A, 0x78): header and data records."""

    ci: int
    header: Header
    records: tuple[DataRecord, ...]
    more_records_follow: bool = False
    manufacturer_data: bytes | None = None

    def to_user_data(self) -> bytes:
        """CI, header and records as bytes (idle fillers are not reproduced)."""
        msb_first = self.ci == CI_VARIABLE_MSB_FIRST
        if self.ci in (CI_VARIABLE, CI_VARIABLE_MSB_FIRST):
            head = self.header.long_bytes(msb_first=msb_first)
        elif self.ci == CI_VARIABLE_SHORT_HEADER:
            head = self.header.short_bytes()
        else:
            head = b""
        tail = b""
        if self.manufacturer_data is not None:
            special = tables.DIF_MORE_RECORDS_FOLLOW if self.more_records_follow else tables.DIF_MANUFACTURER_DATA
            tail = bytes([special]) + self.manufacturer_data
        elif self.more_records_follow:
            tail = bytes([tables.DIF_MORE_RECORDS_FOLLOW])
        if msb_first and self.records:
            raise ValueError("encoding mode 2 (MSB first) records is not supported")
        return bytes([self.ci]) + head + b"".join(encode_record(r) for r in self.records) + tail


@dataclass(frozen=True, slots=True)
class FixedRecord:
    """One counter of the fixed data structure, with the same reading fields as a
    :class:`DataRecord`. ``unit_code`` is the 6-bit unit code of the structure."""

    function: str
    quantity: str
    unit: str | None
    value: Decimal | None
    unit_code: int
    raw: bytes
    offset: int
    modifiers: tuple[str, ...] = ()
    value_error: str | None = None
    storage: int = 0
    tariff: int = 0
    subunit: int = 0


@dataclass(frozen=True, slots=True)
class FixedDataResponse:
    """The fixed data structure (CI 0x73/0x77): identification, access number, status,
    medium and two counters."""

    ci: int
    identification: str
    access_number: int
    status: int
    medium: int
    records: tuple[FixedRecord, FixedRecord]

    @property
    def medium_name(self) -> str:
        return tables.FIXED_MEDIA[self.medium]

    @property
    def counters_binary(self) -> bool:
        return bool(self.status & FIXED_STATUS_BINARY)

    def to_user_data(self) -> bytes:
        first, second = self.records
        msb_first = self.ci == CI_FIXED_MSB_FIRST
        ident = bytes.fromhex(self.identification)[::-1]
        units = bytes([
            first.unit_code | (self.medium & 0x03) << 6,
            second.unit_code | (self.medium >> 2) << 6,
        ])
        counters = b"".join(r.raw for r in self.records)
        if msb_first:
            ident = ident[::-1]
        return bytes([self.ci]) + ident + bytes([self.access_number, self.status]) + units + counters


@dataclass(frozen=True, slots=True)
class ApplicationErrorResponse:
    """CI 0x70: the slave reports an application error (clause 6.6, table 9).
    ``code`` is ``None`` when the slave sent no error byte (libmbus reads that as
    "Unspecified error" too); ``details`` holds any bytes after the code."""

    ci: int
    code: int | None
    details: bytes = b""

    @property
    def text(self) -> str:
        return tables.application_error_text(self.code)

    def to_user_data(self) -> bytes:
        return bytes([self.ci]) + (b"" if self.code is None else bytes([self.code])) + self.details


Response = Union[VariableDataResponse, FixedDataResponse, ApplicationErrorResponse]


def decode_user_data(user_data: bytes, *, offset: int = 0) -> Response:
    """Decode a slave's application data: ``user_data`` starts with the CI byte
    (:attr:`LongFrame.user_data`). ``offset`` is where the CI byte sits in the frame
    (6 in a long frame): error and record offsets are counted from there."""
    data = bytes(user_data)
    if not data:
        raise MBusFrameError("no CI field", offset=offset, field="CI")
    ci = data[0]
    try:
        return _decode_ci(ci, data, offset)
    except MBusFrameError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:  # pragma: no cover
        raise MBusFrameError(f"undecodable application data: {exc}", offset=offset, field="CI") from exc


def _decode_ci(ci: int, data: bytes, offset: int) -> Response:
    if ci == CI_APPLICATION_ERROR:
        return ApplicationErrorResponse(ci, data[1] if len(data) > 1 else None, data[2:])
    if ci in (CI_VARIABLE, CI_VARIABLE_MSB_FIRST):
        msb_first = ci == CI_VARIABLE_MSB_FIRST
        _need(data, 1 + LONG_HEADER_LENGTH, offset, "variable data header (long)")
        header = _long_header(data[1:13], msb_first)
        return _variable(ci, header, data, 1 + LONG_HEADER_LENGTH, offset, msb_first)
    if ci == CI_VARIABLE_SHORT_HEADER:
        _need(data, 1 + SHORT_HEADER_LENGTH, offset, "variable data header (short)")
        access, status = data[1], data[2]
        header = Header(None, None, None, None, access, status, int.from_bytes(data[3:5], "little"))
        return _variable(ci, header, data, 1 + SHORT_HEADER_LENGTH, offset, False)
    if ci == CI_VARIABLE_NO_HEADER:
        return _variable(ci, Header(None, None, None, None), data, 1, offset, False)
    if ci in (CI_FIXED, CI_FIXED_MSB_FIRST):
        return _fixed(ci, data, offset)
    if ci in MASTER_CIS:
        raise MBusFrameError(
            f"CI 0x{ci:02X} ({MASTER_CIS[ci]}) is sent by a master, not a slave response", offset=offset, field="CI"
        )
    raise MBusFrameError(f"unsupported CI field 0x{ci:02X}", offset=offset, field="CI")


def _need(data: bytes, length: int, offset: int, what: str) -> None:
    if len(data) < length:
        raise MBusFrameError(
            f"{what} too short: {len(data) - 1} bytes after the CI, need {length - 1}",
            offset=offset + len(data),
            field="header",
        )


def _long_header(raw: bytes, msb_first: bool) -> Header:
    ident, manufacturer, signature = raw[0:4], raw[4:6], raw[10:12]
    if msb_first:
        ident, manufacturer, signature = ident[::-1], manufacturer[::-1], signature[::-1]
    return Header(
        ident[::-1].hex().upper(),
        manufacturer_letters(int.from_bytes(manufacturer, "little")),
        raw[6],  # version
        raw[7],  # medium
        raw[8],  # access number
        raw[9],  # status
        int.from_bytes(signature, "little"),
    )


def _variable(ci: int, header: Header, data: bytes, start: int, offset: int, msb_first: bool) -> VariableDataResponse:
    block: RecordBlock = decode_records(data[start:], offset=offset + start, msb_first=msb_first)
    return VariableDataResponse(ci, header, block.records, block.more_records_follow, block.manufacturer_data)


def _fixed(ci: int, data: bytes, offset: int) -> FixedDataResponse:
    body = data[1:]
    if len(body) != FIXED_DATA_LENGTH:
        raise MBusFrameError(
            f"fixed data structure must be {FIXED_DATA_LENGTH} bytes, got {len(body)}",
            offset=offset + 1 + min(len(body), FIXED_DATA_LENGTH),
            field="fixed data",
        )
    msb_first = ci == CI_FIXED_MSB_FIRST
    ident = body[0:4][::-1] if msb_first else body[0:4]
    access, status, unit1, unit2 = body[4], body[5], body[6], body[7]
    medium = (unit1 >> 6) | ((unit2 >> 6) << 2)
    function = "stored value" if status & FIXED_STATUS_STORED else "actual value"
    first = _counter(function, unit1 & 0x3F, None, body[8:12], status, offset + 9, msb_first)
    second = _counter(function, unit2 & 0x3F, unit1 & 0x3F, body[12:16], status, offset + 13, msb_first)
    return FixedDataResponse(ci, ident[::-1].hex().upper(), access, status, medium, (first, second))


def _counter(function: str, unit_code: int, first_unit: int | None, raw: bytes, status: int, offset: int,
             msb_first: bool) -> FixedRecord:
    modifiers: tuple[str, ...] = ()
    meaning_code = unit_code
    if unit_code == tables.FIXED_UNIT_HISTORIC and first_unit is not None:
        meaning_code, modifiers = first_unit, ("historic value",)
    entry = tables.FIXED_UNITS.get(meaning_code, tables.Vif(f"reserved unit 0x{meaning_code:02X}", None))
    field = raw[::-1] if msb_first else raw
    mantissa = decode_int(field) if status & FIXED_STATUS_BINARY else decode_bcd(field)
    if mantissa is None:
        return FixedRecord(function, entry.quantity, entry.unit, None, unit_code, raw, offset, modifiers,
                           f"BCD digits are not decimal: {field[::-1].hex().upper()}")
    value = Decimal(mantissa).scaleb(entry.scaler, EXACT)
    return FixedRecord(function, entry.quantity, entry.unit, value, unit_code, raw, offset, modifiers)


# --- whole frames ----------------------------------------------------------------------------

#: Where the CI field sits in a long or control frame: 68 L L 68 C A CI.
CI_OFFSET = 6


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """A slave's long (or control) frame and its decoded application data."""

    frame: link.LongFrame | link.ControlFrame
    response: Response


def decode_response(data: bytes) -> ResponseFrame:
    """Decode one whole RSP_UD frame (``68 L L 68 C A CI ... CS 16``): link layer, then
    application layer. Offsets in errors are frame offsets."""
    frame = _well_formed_long_frame(data) or link.decode_frame(data)
    if not isinstance(frame, (link.LongFrame, link.ControlFrame)):
        raise MBusFrameError(
            f"a {type(frame).__name__} carries no application data", offset=0, field="start"
        )
    if frame.c & link.C_PRM:
        raise MBusFrameError(
            f"frame from the master ({frame.control.function}), not a slave response", offset=4, field="C"
        )
    data_part = frame.data if isinstance(frame, link.LongFrame) else b""
    return ResponseFrame(frame, decode_user_data(bytes([frame.ci]) + data_part, offset=CI_OFFSET))


def _well_formed_long_frame(data: bytes) -> link.LongFrame | None:
    """The common case, checked in one go: exactly one long frame with good lengths,
    checksum and stop byte. Anything else goes through the link parser, which says what
    is wrong."""
    size = len(data)
    if (
        size > 9
        and data[0] == link.LONG_START == data[3]
        and data[1] == data[2] == size - 6
        and data[-1] == link.STOP
        and sum(data[4:-2]) & 0xFF == data[-2]
    ):
        return link.LongFrame(data[4], data[5], data[6], bytes(data[7:-2]))
    return None


def encode(
    header: Header,
    records: tuple[DataRecord, ...] | list[DataRecord],
    *,
    address: int = 0,
    ci: int = CI_VARIABLE,
    more_records_follow: bool = False,
    manufacturer_data: bytes | None = None,
    access_demand: bool = False,
) -> bytes:
    """A whole RSP_UD long frame from a header and records (for simulators and tests);
    :func:`decode_response` gives them back."""
    response = VariableDataResponse(ci, header, tuple(records), more_records_follow, manufacturer_data)
    user_data = response.to_user_data()
    c = link.RSP_UD | (link.C_ACD if access_demand else 0)
    return link.LongFrame(c, address, user_data[0], user_data[1:]).to_bytes()


# --- the master's requests -------------------------------------------------------------------


def snd_nke(address: int) -> bytes:
    """SND_NKE: link reset of the slave at ``address`` (EN 13757-2 5.5)."""
    return link.ShortFrame(link.SND_NKE, address).to_bytes()


def req_ud2(address: int, *, fcb: bool) -> bytes:
    """REQ_UD2 with the frame count bit valid and set as given (alternate it per exchange)."""
    return link.ShortFrame(link.REQ_UD2 | (link.C_FCB if fcb else 0), address).to_bytes()


def _snd_ud(address: int, ci: int, data: bytes, fcb: bool) -> bytes:
    c = link.SND_UD | (link.C_FCB if fcb else 0)
    if not data:
        return link.ControlFrame(c, address, ci).to_bytes()
    return link.LongFrame(c, address, ci, data).to_bytes()


@dataclass(frozen=True, slots=True)
class SecondaryAddressMask:
    """A secondary address selection (CI 0x52, clause 11.4): identification with ``F``
    wildcard nibbles, manufacturer, version and medium, each ``None`` for "any"
    (transmitted as FFh bytes)."""

    identification: str = "FFFFFFFF"
    manufacturer: str | None = None
    version: int | None = None
    medium: int | None = None

    def to_bytes(self) -> bytes:
        ident = self.identification.upper()
        if len(ident) != 8 or any(ch not in "0123456789F" for ch in ident):
            raise ValueError(f"identification mask must be 8 digits or F, got {self.identification!r}")
        manufacturer = b"\xff\xff" if self.manufacturer is None else manufacturer_code(self.manufacturer).to_bytes(2, "little")
        return (
            bytes.fromhex(ident)[::-1]
            + manufacturer
            + bytes([0xFF if self.version is None else self.version, 0xFF if self.medium is None else self.medium])
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SecondaryAddressMask:
        if len(data) != 8:
            raise MBusFrameError(f"selection needs 8 bytes, got {len(data)}", offset=CI_OFFSET + 1, field="selection")
        man = int.from_bytes(data[4:6], "little")
        return cls(
            data[0:4][::-1].hex().upper(),
            None if man == 0xFFFF else manufacturer_letters(man),
            None if data[6] == 0xFF else data[6],
            None if data[7] == 0xFF else data[7],
        )

    def matches(self, header: Header) -> bool:
        """Whether a slave with this header is selected."""
        ident = header.identification or ""
        if len(ident) != 8 or any(m != "F" and m != d for m, d in zip(self.identification.upper(), ident)):
            return False
        return (
            (self.manufacturer is None or self.manufacturer == header.manufacturer)
            and (self.version is None or self.version == header.version)
            and (self.medium is None or self.medium == header.medium)
        )


def select_secondary(mask: SecondaryAddressMask, *, fcb: bool = False) -> bytes:
    """SND_UD to address 253 with CI 0x52: select the slave(s) matching ``mask``."""
    return _snd_ud(link.ADDRESS_NETWORK_LAYER, CI_SELECTION, mask.to_bytes(), fcb)


def set_primary_address(address: int, new_address: int, *, fcb: bool = False) -> bytes:
    """SND_UD with CI 0x51 and the record ``01 7A new`` (bus address, 8-bit integer)."""
    if not link.ADDRESS_UNCONFIGURED <= new_address <= link.ADDRESS_LAST:
        raise ValueError(f"primary address must be 0..250, got {new_address}")
    return _snd_ud(address, CI_DATA_SEND, bytes([0x01, tables.VIF_BUS_ADDRESS, new_address]), fcb)


def application_reset(address: int, subcode: int | None = None, *, fcb: bool = False) -> bytes:
    """SND_UD with CI 0x50, optionally with a subcode byte (clause 6.2)."""
    return _snd_ud(address, CI_APPLICATION_RESET, b"" if subcode is None else bytes([subcode]), fcb)


def data_send(address: int, records: tuple[DataRecord, ...] | list[DataRecord], *, fcb: bool = False) -> bytes:
    """SND_UD with CI 0x51 carrying data records (e.g. to set the clock)."""
    return _snd_ud(address, CI_DATA_SEND, b"".join(encode_record(r) for r in records), fcb)


# --- JSON ------------------------------------------------------------------------------------


def link_to_json(frame: link.LongFrame | link.ControlFrame) -> dict[str, object]:
    out = frame.control.as_dict()
    out["a"] = frame.a
    return out


def header_to_json(header: Header, ci: int) -> dict[str, object]:
    return {
        "id": header.identification,
        "manufacturer": header.manufacturer,
        "version": header.version,
        "medium": header.medium,
        "medium_name": header.medium_name,
        "access_number": header.access_number,
        "status": header.status,
        "signature": header.signature,
        "ci": f"0x{ci:02X}",
    }


def record_to_json(record: DataRecord | FixedRecord) -> dict[str, object]:
    """One record as the CLI prints it; ``value`` is a string (exact decimal, ISO date,
    text, or hex of binary data in transmission order) or null."""
    out: dict[str, object] = {
        "function": record.function,
        "storage": record.storage,
        "tariff": record.tariff,
        "subunit": record.subunit,
        "quantity": record.quantity,
        "value": value_text(record.value),
        "unit": record.unit,
    }
    if isinstance(record, DataRecord):
        out["dif"] = f"0x{record.dif:02X}"
        out["vif"] = f"0x{record.vif:02X}"
        if record.dife:
            out["dife"] = [f"0x{b:02X}" for b in record.dife]
        if record.vife:
            out["vife"] = [f"0x{b:02X}" for b in record.vife]
        if record.time is not None:
            out["time"] = record.time.as_dict()
    else:
        out["unit_code"] = f"0x{record.unit_code:02X}"
    if record.modifiers:
        out["modifiers"] = list(record.modifiers)
    if record.value_error:
        out["value_error"] = record.value_error
    out["offset"] = record.offset
    out["raw"] = record.raw.hex()
    return out


def response_to_json(response: Response, frame: link.LongFrame | link.ControlFrame | None = None) -> dict[str, object]:
    """The JSON object of ``gateway decode mbus`` for a decoded response."""
    out: dict[str, object] = {}
    if frame is not None:
        out["link"] = link_to_json(frame)
    if isinstance(response, ApplicationErrorResponse):
        out["error"] = {
            "ci": f"0x{response.ci:02X}",
            "code": response.code,
            "text": response.text,
            **({"details": response.details.hex()} if response.details else {}),
        }
        return out
    if isinstance(response, FixedDataResponse):
        out["header"] = {
            "id": response.identification,
            "access_number": response.access_number,
            "status": response.status,
            "medium": response.medium,
            "medium_name": response.medium_name,
            "ci": f"0x{response.ci:02X}",
        }
        out["records"] = [record_to_json(r) for r in response.records]
        return out
    out["header"] = header_to_json(response.header, response.ci)
    out["records"] = [record_to_json(r) for r in response.records]
    out["more_records_follow"] = response.more_records_follow
    out["manufacturer_data"] = None if response.manufacturer_data is None else response.manufacturer_data.hex()
    return out
