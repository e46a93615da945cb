"""IEC 62056-21 mode E: the opening that switches an optical or current-loop port to HDLC.

The exchange (IEC 62056-21:2002 6.3 and annex E), at 300 baud, 7 data bits, even parity::

    client: / ? [device address] ! CR LF          request message (6.3.1)
    meter:  / X X X Z [\\W] identification CR LF   identification message (6.3.2)
    client: ACK 2 Z 2 CR LF                        acknowledgement / option select (6.3.3)

``XXX`` is the manufacturer's FLAG id (a lower-case third letter says the meter answers
within 20 ms), ``Z`` the highest baud rate it offers, ``\\2`` in the identification the mode E
capability (binary HDLC). After the acknowledgement both sides switch to baud rate ``Z``,
8 data bits, no parity, and the link continues with HDLC (SNRM ...).

:class:`ModeEOpening` is sans-IO: it returns the bytes to send and decodes what the meter
says. A port that cannot do 7E1 can run 8N1 and use :func:`with_even_parity` on what it
sends; received bytes have their parity bit stripped before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError
from gateway.codecs.dlms.link_events import NEED_DATA, NeedData

START = b"/"
REQUEST_COMMAND = b"?"
END = b"!"
CRLF = b"\r\n"
ACK = 0x06
ESCAPE = "\\"

# Baud rate identification character Z, 6.3.14 (items 13 and 14): protocol mode C (and
# mode E, which uses mode C's table) and protocol mode B.
BAUD_RATES_MODE_C = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
BAUD_RATES_MODE_B = {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}
OPENING_BAUD_RATE = 300

# Enhanced capability characters after "\" in the identification (6.3.2, annex E).
ENHANCED_CAPABILITIES = {"2": "binary mode (HDLC), protocol mode E"}
MODE_E_CAPABILITY = "2"

# Acknowledgement/option select message, 6.3.3: protocol control character V and mode
# control character Y.
PROTOCOL_CONTROL = {"0": "normal protocol procedure", "1": "secondary protocol procedure", "2": "HDLC protocol procedure"}
MODE_CONTROL = {"0": "data readout", "1": "programming mode", "2": "binary mode (HDLC)"}
PROTOCOL_HDLC = "2"
MODE_BINARY = "2"

MAX_DEVICE_ADDRESS = 32  # 6.3.1
MAX_IDENTIFICATION = 16  # 6.3.2, escape sequences not counted
# Identifications longer than the standard allows exist in the field; beyond this a line is
# taken for noise.
MAX_LINE = 64


@dataclass(frozen=True, slots=True)
class SerialFormat:
    """Character format of the serial line."""

    baud_rate: int
    data_bits: int
    parity: str  # "E" even, "N" none
    stop_bits: int


#: The opening runs at 300 baud 7E1 (6.1); HDLC after the switch runs 8N1 (annex E).
OPENING_FORMAT = SerialFormat(OPENING_BAUD_RATE, 7, "E", 1)
HDLC_DATA_BITS, HDLC_PARITY, HDLC_STOP_BITS = 8, "N", 1


def sign_on_request(device_address: str = "") -> bytes:
    """The request message ``/?[address]!CR LF`` (6.3.1)."""
    if len(device_address) > MAX_DEVICE_ADDRESS or not all(c.isalnum() or c == " " for c in device_address):
        raise ValueError(f"device address {device_address!r}: at most 32 of 0-9, A-Z, a-z and space")
    return START + REQUEST_COMMAND + device_address.encode("ascii") + END + CRLF


def option_select(baud_char: str, protocol: str = PROTOCOL_HDLC, mode: str = MODE_BINARY) -> bytes:
    """The acknowledgement/option select message ``ACK V Z Y CR LF`` (6.3.3); the defaults
    switch to HDLC (mode E)."""
    for name, char in (("baud rate", baud_char), ("protocol", protocol), ("mode", mode)):
        if len(char) != 1 or not char.isascii() or not char.isprintable():
            raise ValueError(f"{name} character must be one printable ASCII character, got {char!r}")
    return bytes([ACK]) + (protocol + baud_char + mode).encode("ascii") + CRLF


def with_even_parity(data: bytes) -> bytes:
    """7-bit characters with the even parity bit in bit 7, for a port running 8N1."""
    return bytes(b | (bin(b & 0x7F).count("1") & 1) << 7 for b in data)


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's identification message (6.3.2). ``identification`` has the escape
    sequences removed; their characters are in ``enhanced``; ``raw`` is the whole line."""

    manufacturer: str
    baud_char: str
    identification: str
    enhanced: tuple[str, ...]
    raw: bytes

    @property
    def mode_e(self) -> bool:
        """The meter offers binary HDLC (``\\2``)."""
        return MODE_E_CAPABILITY in self.enhanced

    @property
    def baud_rate(self) -> int | None:
        """The highest baud rate offered, in mode C/E terms (None if ``Z`` is not in that table)."""
        return BAUD_RATES_MODE_C.get(self.baud_char)

    @property
    def fast_reaction(self) -> bool:
        """A lower-case third manufacturer letter: the meter answers within 20 ms (6.3.14)."""
        return self.manufacturer[2].islower()


def decode_identification(line: bytes) -> Identification:
    """Decode one identification message, ``/`` to CR LF inclusive."""
    try:
        return _identification(bytes(line))
    except (ValueError, IndexError) as exc:
        raise DLMSFrameError(f"malformed identification: {exc}", offset=0, field="identification") from exc


def _identification(line: bytes) -> Identification:
    if not line.startswith(START):
        raise DLMSFrameError("identification does not start with '/'", offset=0, field="start")
    if not line.endswith(CRLF):
        raise DLMSFrameError("identification does not end with CR LF", offset=max(0, len(line) - 2), field="end")
    if len(line) > MAX_LINE:
        raise DLMSFrameError(f"identification longer than {MAX_LINE} bytes", offset=MAX_LINE, field="identification")
    if len(line) < 7:
        raise DLMSFrameError(f"identification of {len(line)} bytes is too short", offset=len(line), field="identification")
    text = line[1:-2]
    for offset, byte in enumerate(text, start=1):
        if not 0x20 <= byte <= 0x7E or byte in b"/!":
            reason = f"character 0x{byte:02X} is not allowed in an identification"
            raise DLMSFrameError(reason, offset=offset, field="identification")
    chars = text.decode("ascii")
    manufacturer, baud_char, rest = chars[:3], chars[3], chars[4:]
    if not manufacturer.isalpha():
        raise DLMSFrameError(f"manufacturer {manufacturer!r} is not three letters", offset=1, field="manufacturer")
    enhanced = []
    ident = []
    pos = 0
    while pos < len(rest):
        if rest[pos] == ESCAPE:
            if pos + 1 >= len(rest):
                raise DLMSFrameError("escape '\\' without a capability character", offset=5 + pos, field="enhanced")
            enhanced.append(rest[pos + 1])
            pos += 2
        else:
            ident.append(rest[pos])
            pos += 1
    return Identification(manufacturer, baud_char, "".join(ident), tuple(enhanced), line)


class ModeEOpening:
    """The client side of the IEC 62056-21 mode E opening (sans-IO).

    ``sign_on()`` → request bytes (send at 300 baud 7E1); feed what the meter says to
    ``receive_data``; ``next_event()`` gives the :class:`Identification` (or :data:`NEED_DATA`);
    ``acknowledge()`` → the option select bytes switching to HDLC, after which the port runs
    at :attr:`baud_rate`, 8N1. Bytes before the identification are skipped and counted in
    :attr:`skipped_bytes`, including the echo of our own request on a half-duplex line.
    ``max_baud_rate`` caps the rate proposed by the meter (long or noisy lines)."""

    def __init__(self, device_address: str = "", max_baud_rate: int | None = None) -> None:
        self.device_address = device_address
        self.max_baud_rate = max_baud_rate
        self.identification: Identification | None = None
        #: The baud rate to switch to once :meth:`acknowledge` has been sent.
        self.baud_rate: int | None = None
        self.skipped_bytes = 0
        self._buffer = bytearray()

    def sign_on(self) -> bytes:
        self.identification = None
        self.baud_rate = None
        self._buffer.clear()
        return sign_on_request(self.device_address)

    def receive_data(self, data: bytes) -> None:
        # A port running 8N1 delivers the parity bit as bit 7.
        self._buffer += bytes(b & 0x7F for b in data)

    def next_event(self) -> Identification | NeedData:
        buf = self._buffer
        while True:
            start = buf.find(START)
            if start < 0:
                self.skipped_bytes += len(buf)
                buf.clear()
                return NEED_DATA
            del buf[:start]
            self.skipped_bytes += start
            end = buf.find(CRLF)
            if end < 0:
                if len(buf) > MAX_LINE:
                    self._drop(1)
                    raise DLMSFrameError(f"no CR LF within {MAX_LINE} bytes of '/'", offset=MAX_LINE, field="end")
                return NEED_DATA
            line = bytes(buf[: end + 2])
            if line.startswith(START + REQUEST_COMMAND):
                self._drop(len(line))  # our own request, echoed
                continue
            try:
                ident = decode_identification(line)
            except DLMSFrameError:
                self._drop(1)
                raise
            del buf[: len(line)]
            self.identification = ident
            return ident

    def _drop(self, count: int) -> None:
        del self._buffer[:count]
        self.skipped_bytes += count

    def acknowledge(self, baud_char: str | None = None) -> bytes:
        """``ACK 2 Z 2 CR LF``: switch to HDLC at the meter's rate (or ``baud_char``), capped
        at ``max_baud_rate``."""
        ident = self.identification
        if ident is None:
            raise DLMSError("no identification received yet", field="state")
        if not ident.mode_e:
            reason = f"meter {ident.manufacturer} {ident.identification!r} does not offer mode E (no \\2)"
            raise DLMSError(reason, field="enhanced")
        char = baud_char or ident.baud_char
        if char not in BAUD_RATES_MODE_C:
            raise DLMSError(f"baud rate character {char!r} is not a mode E rate", field="baud rate")
        if self.max_baud_rate is not None:
            allowed = [c for c, rate in BAUD_RATES_MODE_C.items() if rate <= min(self.max_baud_rate, BAUD_RATES_MODE_C[char])]
            char = allowed[-1] if allowed else "0"
        self.baud_rate = BAUD_RATES_MODE_C[char]
        return option_select(char)

    @property
    def hdlc_format(self) -> SerialFormat:
        """The character format after the switch."""
        if self.baud_rate is None:
            raise DLMSError("no acknowledgement sent yet", field="state")
        return SerialFormat(self.baud_rate, HDLC_DATA_BITS, HDLC_PARITY, HDLC_STOP_BITS)
