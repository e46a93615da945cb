"""HDLC frames of the DLMS/COSEM three-layer profile, IEC 62056-46 (DLMS UA 1000-2 clause 8.4).

Frame format type 3, between two flags::

    7E | format (2) | destination (1,2,4) | source (1,2,4) | control | [HCS (2) | information] | FCS (2) | 7E

* format: ``1010 S LLL LLLL LLLL``: type 3, the segmentation bit S ("more segments follow")
  and the 11-bit frame length, which counts every byte between the flags;
* addresses: 7 bits per byte, the least significant bit is the extension bit (1 = last byte);
  a server address has 1, 2 or 4 bytes (upper = logical device, lower = physical device), a
  client address 1 byte (6.4.2);
* control: I, RR, RNR, SNRM, DISC, UA, DM, FRMR, UI with N(S), N(R) and the P/F bit (6.4.3);
* HCS over format..control, present only when an information field follows; FCS over
  format..information. Both are CRC-16/X.25 (ISO/IEC 13239), sent least significant byte first.

Frames are delimited by their length field, never by looking for ``7E``: a ciphered APDU
contains ``7E`` bytes and the standard uses no byte stuffing.

:func:`decode_frame` decodes exactly one whole frame; :class:`HdlcParser` finds frames in a
byte stream fed in any chunking (sans-IO: the caller does the reading).
:class:`HdlcParameters` is the SNRM/UA negotiation information field (6.4.4.4.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.stream import StreamBuffer, decode_exactly

FLAG = 0x7E

# Frame format field, 6.4.1 (figure 6): type 3 in the top nibble, segmentation bit, length.
FORMAT_TYPE_MASK = 0xF000
FORMAT_TYPE_3 = 0xA000
SEGMENTATION_BIT = 0x0800
LENGTH_MASK = 0x07FF
#: The largest frame length field (11 bits): bytes between the flags.
MAX_FRAME_LENGTH = LENGTH_MASK
#: Format (2) + shortest addresses (1 + 1) + control (1) + FCS (2).
MIN_FRAME_LENGTH = 7
#: The largest information field the negotiation may agree on (6.4.4.4.3.2).
MAX_INFO_LENGTH = 2030

# CRC-16/X.25 (ISO/IEC 13239, IEC 62056-46 annex A): reflected polynomial 0x8408 (x^16 + x^12
# + x^5 + 1), initial value 0xFFFF, final complement. One entry per value of the low byte.
FCS16_TABLE = (
    0x0000, 0x1189, 0x2312, 0x329B, 0x4624, 0x57AD, 0x6536, 0x74BF,
    0x8C48, 0x9DC1, 0xAF5A, 0xBED3, 0xCA6C, 0xDBE5, 0xE97E, 0xF8F7,
    0x1081, 0x0108, 0x3393, 0x221A, 0x56A5, 0x472C, 0x75B7, 0x643E,
    0x9CC9, 0x8D40, 0xBFDB, 0xAE52, 0xDAED, 0xCB64, 0xF9FF, 0xE876,
    0x2102, 0x308B, 0x0210, 0x1399, 0x6726, 0x76AF, 0x4434, 0x55BD,
    0xAD4A, 0xBCC3, 0x8E58, 0x9FD1, 0xEB6E, 0xFAE7, 0xC87C, 0xD9F5,
    0x3183, 0x200A, 0x1291, 0x0318, 0x77A7, 0x662E, 0x54B5, 0x453C,
    0xBDCB, 0xAC42, 0x9ED9, 0x8F50, 0xFBEF, 0xEA66, 0xD8FD, 0xC974,
    0x4204, 0x538D, 0x6116, 0x709F, 0x0420, 0x15A9, 0x2732, 0x36BB,
    0xCE4C, 0xDFC5, 0xED5E, 0xFCD7, 0x8868, 0x99E1, 0xAB7A, 0xBAF3,
    0x5285, 0x430C, 0x7197, 0x601E, 0x14A1, 0x0528, 0x37B3, 0x263A,
    0xDECD, 0xCF44, 0xFDDF, 0xEC56, 0x98E9, 0x8960, 0xBBFB, 0xAA72,
    0x6306, 0x728F, 0x4014, 0x519D, 0x2522, 0x34AB, 0x0630, 0x17B9,
    0xEF4E, 0xFEC7, 0xCC5C, 0xDDD5, 0xA96A, 0xB8E3, 0x8A78, 0x9BF1,
    0x7387, 0x620E, 0x5095, 0x411C, 0x35A3, 0x242A, 0x16B1, 0x0738,
    0xFFCF, 0xEE46, 0xDCDD, 0xCD54, 0xB9EB, 0xA862, 0x9AF9, 0x8B70,
    0x8408, 0x9581, 0xA71A, 0xB693, 0xC22C, 0xD3A5, 0xE13E, 0xF0B7,
    0x0840, 0x19C9, 0x2B52, 0x3ADB, 0x4E64, 0x5FED, 0x6D76, 0x7CFF,
    0x9489, 0x8500, 0xB79B, 0xA612, 0xD2AD, 0xC324, 0xF1BF, 0xE036,
    0x18C1, 0x0948, 0x3BD3, 0x2A5A, 0x5EE5, 0x4F6C, 0x7DF7, 0x6C7E,
    0xA50A, 0xB483, 0x8618, 0x9791, 0xE32E, 0xF2A7, 0xC03C, 0xD1B5,
    0x2942, 0x38CB, 0x0A50, 0x1BD9, 0x6F66, 0x7EEF, 0x4C74, 0x5DFD,
    0xB58B, 0xA402, 0x9699, 0x8710, 0xF3AF, 0xE226, 0xD0BD, 0xC134,
    0x39C3, 0x284A, 0x1AD1, 0x0B58, 0x7FE7, 0x6E6E, 0x5CF5, 0x4D7C,
    0xC60C, 0xD785, 0xE51E, 0xF497, 0x8028, 0x91A1, 0xA33A, 0xB2B3,
    0x4A44, 0x5BCD, 0x6956, 0x78DF, 0x0C60, 0x1DE9, 0x2F72, 0x3EFB,
    0xD68D, 0xC704, 0xF59F, 0xE416, 0x90A9, 0x8120, 0xB3BB, 0xA232,
    0x5AC5, 0x4B4C, 0x79D7, 0x685E, 0x1CE1, 0x0D68, 0x3FF3, 0x2E7A,
    0xE70E, 0xF687, 0xC41C, 0xD595, 0xA12A, 0xB0A3, 0x8238, 0x93B1,
    0x6B46, 0x7ACF, 0x4854, 0x59DD, 0x2D62, 0x3CEB, 0x0E70, 0x1FF9,
    0xF78F, 0xE606, 0xD49D, 0xC514, 0xB1AB, 0xA022, 0x92B9, 0x8330,
    0x7BC7, 0x6A4E, 0x58D5, 0x495C, 0x3DE3, 0x2C6A, 0x1EF1, 0x0F78,
)


def fcs16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 of ``data`` (the HCS and FCS value); on the wire it is sent low byte first."""
    crc = 0xFFFF
    table = FCS16_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


# --- addresses, 6.4.2 ------------------------------------------------------------------------

ADDRESS_EXTENSION_BIT = 0x01
SERVER_ADDRESS_SIZES = (1, 2, 4)

# Client addresses (one byte), IEC 62056-46 6.4.2.3 table 3 and DLMS UA 1000-2 8.4.2.
CLIENT_NO_STATION = 0x00
CLIENT_MANAGEMENT = 0x01
CLIENT_PUBLIC = 0x10
CLIENT_ALL_STATION = 0x7F
CLIENT_ADDRESS_NAMES = {
    CLIENT_NO_STATION: "no station",
    CLIENT_MANAGEMENT: "client management process",
    CLIENT_PUBLIC: "public client",
    CLIENT_ALL_STATION: "all station (broadcast)",
}

# Server upper (logical device) and lower (physical device) addresses with a meaning, by
# address size: the reserved values move when the parts are 14 bits wide (4-byte addresses).
SERVER_LOGICAL_MANAGEMENT = 0x01
SERVER_SPECIAL_ADDRESSES = {
    7: {0x00: "no station", 0x7E: "calling physical device", 0x7F: "all station (broadcast)"},
    14: {0x0000: "no station", 0x3FFE: "calling physical device", 0x3FFF: "all station (broadcast)"},
}

#: Blue Book/Green Book default to derive a physical address from a serial number.
SERIAL_NUMBER_MODULUS = 10000
SERIAL_NUMBER_OFFSET = 1000


def physical_address_from_serial(serial_number: int) -> int:
    """The lower HDLC address a meter derives from its serial number with the DLMS UA default
    formula ``SN mod 10000 + 1000`` (DLMS UA 1000-2, HDLC addressing). The result (1000..10999)
    needs 4-byte server addressing."""
    if serial_number < 0:
        raise ValueError(f"serial number must not be negative, got {serial_number}")
    return serial_number % SERIAL_NUMBER_MODULUS + SERIAL_NUMBER_OFFSET


@dataclass(frozen=True, slots=True)
class HdlcAddress:
    """An HDLC address (IEC 62056-46 6.4.2).

    ``size`` is the number of bytes on the wire (1, 2 or 4). A one-byte address has only the
    ``upper`` part (a client SAP, or a server's logical device when no physical address is
    used); two- and four-byte server addresses carry ``upper`` (logical device) and ``lower``
    (physical device), 7 or 14 bits each.
    """

    upper: int
    lower: int | None = None
    size: int = 1

    def __post_init__(self) -> None:
        if self.size not in SERVER_ADDRESS_SIZES:
            raise ValueError(f"an HDLC address has 1, 2 or 4 bytes, not {self.size}")
        if (self.size == 1) != (self.lower is None):
            raise ValueError("a one-byte address has no lower part; 2- and 4-byte addresses need one")
        limit = 1 << self.part_bits
        for name, part in (("upper", self.upper), ("lower", self.lower)):
            if part is not None and not 0 <= part < limit:
                raise ValueError(f"{name} address {part} does not fit {self.part_bits} bits")

    @classmethod
    def client(cls, sap: int) -> HdlcAddress:
        """A client address: one byte, the client SAP."""
        return cls(sap)

    @classmethod
    def server(cls, logical: int, physical: int | None = None, size: int | None = None) -> HdlcAddress:
        """A server address; without ``size`` the shortest that holds both parts."""
        if size is None:
            if physical is None:
                size = 1
            else:
                size = 2 if logical < 0x80 and physical < 0x80 else 4
        return cls(logical, physical, size)

    @property
    def part_bits(self) -> int:
        return 14 if self.size == 4 else 7

    @property
    def meaning(self) -> str | None:
        """The reserved meaning of the upper part (broadcast, no station, ...), if any."""
        return SERVER_SPECIAL_ADDRESSES[self.part_bits].get(self.upper)

    def to_bytes(self) -> bytes:
        if self.size == 1:
            parts = [self.upper]
        elif self.size == 2:
            parts = [self.upper, self.lower]
        else:
            parts = [self.upper >> 7, self.upper & 0x7F, self.lower >> 7, self.lower & 0x7F]
        out = bytearray(part << 1 for part in parts)
        out[-1] |= ADDRESS_EXTENSION_BIT
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> HdlcAddress:
        """Decode a whole address field (1, 2 or 4 bytes, extension bit on the last only)."""
        parts = [byte >> 1 for byte in data]
        if len(data) == 1:
            return cls(parts[0])
        if len(data) == 2:
            return cls(parts[0], parts[1], 2)
        return cls((parts[0] << 7) | parts[1], (parts[2] << 7) | parts[3], 4)

    def __str__(self) -> str:
        return str(self.upper) if self.lower is None else f"{self.upper}/{self.lower}"


# --- control field, 6.4.3 ------------------------------------------------------------------

POLL_FINAL_BIT = 0x10
SEQUENCE_MODULUS = 8  # N(S) and N(R) are three bits

# Supervisory frames: ``RRR P/F xx01``; the low nibble names the function (6.4.3.3 table 4).
SUPERVISORY_MASK = 0x0F
SUPERVISORY_CODES = {0x01: "RR", 0x05: "RNR"}
# Unnumbered frames: ``xxx P/F xx11``; the control without the P/F bit names the command or
# response (6.4.3.4 table 5).
UNNUMBERED_MASK = 0xEF
UNNUMBERED_CODES = {0x83: "SNRM", 0x43: "DISC", 0x63: "UA", 0x0F: "DM", 0x87: "FRMR", 0x03: "UI"}
CONTROL_CODES = {name: code for table in (SUPERVISORY_CODES, UNNUMBERED_CODES) for code, name in table.items()}
#: Frames that may carry an information field (6.4.3: I, UI, and FRMR, SNRM, UA for their
#: parameters).
INFO_FRAMES = frozenset({"I", "UI", "FRMR", "SNRM", "UA"})


@dataclass(frozen=True, slots=True)
class Control:
    """The control field (IEC 62056-46 6.4.3), kept as the byte received.

    ``kind`` is ``I``, ``RR``, ``RNR``, ``SNRM``, ``DISC``, ``UA``, ``DM``, ``FRMR``, ``UI``, or
    ``unknown`` for a well-formed byte of a function the standard does not use."""

    value: int

    @classmethod
    def information(cls, ns: int, nr: int, poll_final: bool = True) -> Control:
        """An I-frame control: ``RRR P SSS 0``."""
        return cls(((nr % SEQUENCE_MODULUS) << 5) | (POLL_FINAL_BIT if poll_final else 0) | ((ns % SEQUENCE_MODULUS) << 1))

    @classmethod
    def supervisory(cls, kind: str, nr: int, poll_final: bool = True) -> Control:
        """An RR or RNR control: ``RRR P/F xx01``."""
        return cls(((nr % SEQUENCE_MODULUS) << 5) | (POLL_FINAL_BIT if poll_final else 0) | CONTROL_CODES[kind])

    @classmethod
    def unnumbered(cls, kind: str, poll_final: bool = True) -> Control:
        """A SNRM, DISC, UA, DM, FRMR or UI control."""
        return cls(CONTROL_CODES[kind] | (POLL_FINAL_BIT if poll_final else 0))

    @property
    def kind(self) -> str:
        if not self.value & 0x01:
            return "I"
        if not self.value & 0x02:
            return SUPERVISORY_CODES.get(self.value & SUPERVISORY_MASK, "unknown")
        return UNNUMBERED_CODES.get(self.value & UNNUMBERED_MASK, "unknown")

    @property
    def poll_final(self) -> bool:
        return bool(self.value & POLL_FINAL_BIT)

    @property
    def ns(self) -> int | None:
        """N(S), the send sequence number of an I-frame."""
        return (self.value >> 1) & 0x07 if self.kind == "I" else None

    @property
    def nr(self) -> int | None:
        """N(R), the next sequence number expected by the sender (I, RR, RNR)."""
        return self.value >> 5 if self.kind in ("I", "RR", "RNR") else None

    def __str__(self) -> str:
        out = self.kind if self.kind != "unknown" else f"unknown 0x{self.value:02X}"
        if self.ns is not None:
            out += f" N(S)={self.ns}"
        if self.nr is not None:
            out += f" N(R)={self.nr}"
        return out + (" P/F" if self.poll_final else "")


# --- LLC, IEC 62056-46 annex / DLMS UA 1000-2 8.4.4 ------------------------------------------

#: LLC header in front of an APDU in I and UI frames: destination LSAP E6, source LSAP E6
#: (command, client to server) or E7 (response, server to client), LLC quality 00.
LLC_COMMAND = b"\xE6\xE6\x00"
LLC_RESPONSE = b"\xE6\xE7\x00"
LLC_LENGTH = 3


# --- frames --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One HDLC frame (IEC 62056-46 6.4). ``info`` is the information field as sent (with its
    LLC header on the first segment of an APDU); ``segmented`` is the S bit: more segments of
    the same information follow."""

    destination: HdlcAddress
    source: HdlcAddress
    control: Control
    info: bytes = b""
    segmented: bool = False

    @property
    def kind(self) -> str:
        return self.control.kind

    def to_bytes(self) -> bytes:
        header = self.destination.to_bytes() + self.source.to_bytes() + bytes([self.control.value])
        info = bytes(self.info)
        length = 2 + len(header) + 2 + (len(info) + 2 if info else 0)
        if length > MAX_FRAME_LENGTH:
            raise ValueError(f"frame of {length} bytes exceeds the 11-bit length field ({MAX_FRAME_LENGTH})")
        fmt = FORMAT_TYPE_3 | (SEGMENTATION_BIT if self.segmented else 0) | length
        head = fmt.to_bytes(2, "big") + header
        if info:
            head += fcs16(head).to_bytes(2, "little")
        body = head + info
        return bytes([FLAG]) + body + fcs16(body).to_bytes(2, "little") + bytes([FLAG])

    def __str__(self) -> str:
        seg = " S" if self.segmented else ""
        return f"{self.control} {self.source}->{self.destination}{seg} info={self.info.hex()}"


def decode_frame(data: bytes) -> HdlcFrame:
    """Decode exactly one whole frame, flags included; anything short, broken or trailing is an
    error (:class:`DLMSFrameError` with offset and field)."""
    parser = HdlcParser()
    return decode_exactly(parser, parser.next_frame, data, "frame")


class HdlcParser(StreamBuffer):
    """Finds HDLC frames in a byte stream by their length field (sans-IO).

    Feed bytes with :meth:`receive_data`; call :meth:`next_frame` until it returns ``None``
    (need more data). Bytes outside frames are skipped and counted in :attr:`skipped_bytes`
    (extra flags between frames are allowed and not counted). A closing flag may also open the
    next frame (6.3.2). A frame that starts well but is broken (bad length, HCS, FCS, address
    or closing flag) raises :class:`DLMSFrameError` with the reason and the offset within that
    frame (the opening flag is offset 0); the parser has then dropped that opening flag only,
    so calling :meth:`next_frame` again resynchronises on the next flag. A damaged header is
    reported as soon as its HCS has arrived, without waiting for the length it claims.
    """

    def __init__(self) -> None:
        super().__init__()
        # The closing flag of the last frame stays buffered: it may open the next frame.
        self._flag_kept = False
        self.frames = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a frame (a kept closing flag does not count)."""
        return len(self._buffer) - self._flag_kept

    def clear(self) -> None:
        super().clear()
        self._flag_kept = False

    def bytes_needed(self) -> int:
        """How many more bytes the frame being received needs at least."""
        buf = self._buffer
        if len(buf) >= 3 and buf[0] == FLAG and buf[1] & 0xF0 == FORMAT_TYPE_3 >> 8:
            return max(1, ((buf[1] << 8 | buf[2]) & LENGTH_MASK) + 2 - len(buf))
        return max(1, 3 - len(buf)) if buf[:1] == bytes([FLAG]) else 1

    def next_frame(self) -> HdlcFrame | None:
        """The next whole frame, or None when more bytes are needed."""
        try:
            return self._next_frame()
        except (ValueError, IndexError) as exc:
            # A defect in the checks must neither loop forever nor escape as a stray error.
            raise self._fail(f"malformed frame: {exc}", 0, "frame") from exc

    def _next_frame(self) -> HdlcFrame | None:
        buf = self._buffer
        while buf:
            if buf[0] != FLAG:
                end = buf.find(FLAG)
                end = len(buf) if end < 0 else end
                del buf[:end]
                self.skipped_bytes += end
                continue
            if len(buf) < 2:
                return None
            if buf[1] == FLAG or buf[1] & 0xF0 != FORMAT_TYPE_3 >> 8:
                # Inter-frame fill, or a closing flag that opens nothing: not junk.
                del buf[0]
                self._flag_kept = False
                continue
            return self._frame()
        return None

    def _fail(self, reason: str, offset: int, field: str) -> DLMSFrameError:
        # Drop the opening flag only: the real frame may begin inside what we rejected.
        if self._buffer:
            del self._buffer[0]
        self._flag_kept = False
        self.errors += 1
        return DLMSFrameError(reason, offset=offset, field=field)

    def _address_end(self, start: int, name: str) -> int | None:
        """Index after the address field starting at ``start``; None when more bytes are needed."""
        buf = self._buffer
        for size in range(1, 5):
            if start + size > len(buf):
                return None
            if buf[start + size - 1] & ADDRESS_EXTENSION_BIT:
                if size == 3:
                    raise self._fail(f"{name} address has 3 bytes (1, 2 or 4 allowed)", start, name)
                return start + size
        raise self._fail(f"{name} address is longer than 4 bytes", start, name)

    def _frame(self) -> HdlcFrame | None:
        buf = self._buffer
        if len(buf) < 3:
            return None
        fmt = (buf[1] << 8) | buf[2]
        length = fmt & LENGTH_MASK
        if length < MIN_FRAME_LENGTH:
            raise self._fail(f"frame length {length} is below the minimum of {MIN_FRAME_LENGTH}", 1, "format")
        dest_end = self._address_end(3, "destination")
        if dest_end is None:
            return None
        src_end = self._address_end(dest_end, "source")
        if src_end is None:
            return None
        header_end = src_end + 1  # after the control field
        # Without information the FCS follows the control field; with it, HCS and at least
        # one byte of information come first.
        has_info = length > header_end + 1
        if has_info and length < header_end + 4:
            raise self._fail(f"frame length {length} leaves no room for an information field", 1, "format")
        if length < header_end + 1:
            raise self._fail(f"frame length {length} is shorter than its header", 1, "format")
        if has_info:
            if len(buf) < header_end + 2:
                return None
            got = buf[header_end] | buf[header_end + 1] << 8
            want = fcs16(memoryview(buf)[1:header_end])
            if got != want:
                raise self._fail(f"HCS 0x{got:04X} does not match computed 0x{want:04X}", header_end, "HCS")
        if len(buf) < length + 2:
            return None
        got = buf[length - 1] | buf[length] << 8
        want = fcs16(memoryview(buf)[1 : length - 1])
        if got != want:
            raise self._fail(f"FCS 0x{got:04X} does not match computed 0x{want:04X}", length - 1, "FCS")
        if buf[length + 1] != FLAG:
            raise self._fail(f"closing flag is 0x{buf[length + 1]:02X}, expected 0x7E", length + 1, "flag")
        frame = HdlcFrame(
            destination=HdlcAddress.from_bytes(bytes(buf[3:dest_end])),
            source=HdlcAddress.from_bytes(bytes(buf[dest_end:src_end])),
            control=Control(buf[src_end]),
            info=bytes(buf[header_end + 2 : length - 1]) if has_info else b"",
            segmented=bool(fmt & SEGMENTATION_BIT),
        )
        del buf[: length + 1]
        self._flag_kept = True
        self.frames += 1
        return frame


# --- SNRM/UA negotiation, 6.4.4.4.3.2 ------------------------------------------------------

PARAMETERS_FORMAT_ID = 0x81
PARAMETERS_GROUP_ID = 0x80
# Parameter identifiers and how many bytes this codec writes for each (the value is a
# big-endian unsigned integer; a reader accepts 1 to 4 bytes).
PARAMETER_IDS = {0x05: "max_info_tx", 0x06: "max_info_rx", 0x07: "window_tx", 0x08: "window_rx"}
PARAMETER_FIELDS = {name: pid for pid, name in PARAMETER_IDS.items()}
WINDOW_SIZE_BYTES = 4
DEFAULT_MAX_INFO = 128
DEFAULT_WINDOW = 1
#: N(S) and N(R) are modulo 8, so at most 7 frames may be outstanding.
MAX_WINDOW = SEQUENCE_MODULUS - 1


@dataclass(frozen=True, slots=True)
class HdlcParameters:
    """The HDLC negotiation parameters (IEC 62056-46 6.4.4.4.3.2), from the point of view of the
    station that states them: in a SNRM the client's, in a UA the server's. Absent parameters
    take the defaults (128 bytes, window 1). ``other`` keeps parameters this codec does not
    know, as ``(identifier, raw value)`` pairs, so nothing is dropped."""

    max_info_tx: int = DEFAULT_MAX_INFO
    max_info_rx: int = DEFAULT_MAX_INFO
    window_tx: int = DEFAULT_WINDOW
    window_rx: int = DEFAULT_WINDOW
    other: tuple[tuple[int, bytes], ...] = ()

    @property
    def is_default(self) -> bool:
        return self == HdlcParameters()

    def negotiate(self, peer: HdlcParameters) -> HdlcParameters:
        """What this station may use given the peer's statement: what it sends is bounded by
        what the peer receives, and the other way round."""
        return HdlcParameters(
            max_info_tx=min(self.max_info_tx, peer.max_info_rx, MAX_INFO_LENGTH),
            max_info_rx=min(self.max_info_rx, peer.max_info_tx, MAX_INFO_LENGTH),
            window_tx=min(self.window_tx, peer.window_rx, MAX_WINDOW),
            window_rx=min(self.window_rx, peer.window_tx, MAX_WINDOW),
        )

    def to_info(self) -> bytes:
        """The information field of a SNRM or UA frame."""
        group = bytearray()
        for name, pid in PARAMETER_FIELDS.items():
            value = getattr(self, name)
            if name.startswith("window"):
                size = WINDOW_SIZE_BYTES
            else:
                size = 1 if value <= 0xFF else 2
            group += bytes([pid, size]) + value.to_bytes(size, "big")
        for pid, raw in self.other:
            group += bytes([pid, len(raw)]) + raw
        if len(group) > 0xFF:
            raise ValueError("negotiation parameters do not fit one group")
        return bytes([PARAMETERS_FORMAT_ID, PARAMETERS_GROUP_ID, len(group)]) + bytes(group)

    @classmethod
    def from_info(cls, info: bytes) -> HdlcParameters:
        """Decode a SNRM/UA information field; an empty one means all defaults."""
        if not info:
            return cls()
        if len(info) < 3:
            raise DLMSFrameError("negotiation parameters are truncated", offset=len(info), field="group length")
        if info[0] != PARAMETERS_FORMAT_ID:
            raise DLMSFrameError(f"format identifier 0x{info[0]:02X}, expected 0x81", offset=0, field="format identifier")
        if info[1] != PARAMETERS_GROUP_ID:
            raise DLMSFrameError(f"group identifier 0x{info[1]:02X}, expected 0x80", offset=1, field="group identifier")
        end = 3 + info[2]
        if end != len(info):
            raise DLMSFrameError(
                f"group length {info[2]} does not match the {len(info) - 3} bytes that follow", offset=2, field="group length"
            )
        values: dict[str, int] = {}
        other: list[tuple[int, bytes]] = []
        pos = 3
        while pos < end:
            if pos + 2 > end:
                raise DLMSFrameError("parameter header is truncated", offset=pos, field="parameter")
            pid, size = info[pos], info[pos + 1]
            raw = info[pos + 2 : pos + 2 + size]
            if len(raw) != size:
                raise DLMSFrameError(f"parameter 0x{pid:02X} value is truncated", offset=pos + 1, field="parameter length")
            name = PARAMETER_IDS.get(pid)
            if name is None:
                other.append((pid, bytes(raw)))
            elif not 1 <= size <= 4:
                raise DLMSFrameError(f"{name} has {size} value bytes (1 to 4 allowed)", offset=pos + 1, field=name)
            else:
                values[name] = int.from_bytes(raw, "big")
            pos += 2 + size
        return cls(**values, other=tuple(other))
