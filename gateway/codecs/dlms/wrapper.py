"""The TCP/UDP wrapper of IEC 62056-47 (DLMS UA 1000-2 clause 7.3.3), sans-IO.

Every APDU travels behind an 8-byte header, all fields big-endian::

    version (2) = 0x0001 | source wPort (2) | destination wPort (2) | length (2) | APDU

The wPorts are the client and server SAPs (public client 16, management logical device 1).
``length`` counts the APDU only. Over TCP the header is the only way to find where an APDU
ends; over UDP one datagram holds one message (:func:`decode_wrapper`).

:class:`WrapperParser` finds messages in a TCP stream fed in any chunking;
:class:`WrapperConnection` gives the wrapper the same ``send_apdu`` / ``receive_data`` /
``next_event`` interface as :class:`~gateway.codecs.dlms.hdlc_connection.HdlcConnection`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.link_events import NEED_DATA, ApduReceived, LinkEvent
from gateway.codecs.dlms.stream import StreamBuffer, decode_exactly

WRAPPER_VERSION = 0x0001
HEADER_LENGTH = 8
MAX_LENGTH_FIELD = 0xFFFF
#: Well-known wPorts (7.3.3.2): the same values as the HDLC SAPs.
WPORT_CLIENT_MANAGEMENT = 0x0001
WPORT_CLIENT_PUBLIC = 0x0010
WPORT_SERVER_MANAGEMENT = 0x0001
WPORT_NAMES = {0x0000: "no station", 0x0001: "management", 0x0010: "public client", 0x007F: "all station"}
_VERSION_BYTES = WRAPPER_VERSION.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class WrapperMessage:
    """One wrapper protocol data unit (7.3.3.2)."""

    source: int
    destination: int
    apdu: bytes

    def to_bytes(self) -> bytes:
        for name, port in (("source", self.source), ("destination", self.destination)):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"{name} wPort {port} does not fit two bytes")
        if len(self.apdu) > MAX_LENGTH_FIELD:
            raise ValueError(f"APDU of {len(self.apdu)} bytes does not fit the 16-bit length field")
        header = (WRAPPER_VERSION, self.source, self.destination, len(self.apdu))
        return b"".join(value.to_bytes(2, "big") for value in header) + bytes(self.apdu)


def decode_wrapper(data: bytes, max_apdu_length: int = MAX_LENGTH_FIELD) -> WrapperMessage:
    """Decode exactly one whole message (a UDP datagram); short, broken or trailing bytes are
    an error."""
    parser = WrapperParser(max_apdu_length)
    return decode_exactly(parser, parser.next_message, data, "message")


class WrapperParser(StreamBuffer):
    """Finds wrapper messages in a TCP byte stream (sans-IO).

    A header with another version or a length above ``max_apdu_length`` (the largest APDU
    the station accepts) raises :class:`DLMSFrameError` with offset and field; the parser
    then skips to the next ``00 01`` that could start a header, quietly until a message
    decodes again, and counts what it skipped in :attr:`skipped_bytes`.
    """

    def __init__(self, max_apdu_length: int = MAX_LENGTH_FIELD) -> None:
        super().__init__()
        self.max_apdu_length = max_apdu_length
        self._hunting = False  # framing lost: skipping quietly to the next header
        self.messages = 0

    def bytes_needed(self) -> int:
        buf = self._buffer
        if len(buf) < HEADER_LENGTH:
            return HEADER_LENGTH - len(buf)
        return max(1, HEADER_LENGTH + int.from_bytes(buf[6:8], "big") - len(buf))

    def next_message(self) -> WrapperMessage | None:
        """The next whole message, or None when more bytes are needed."""
        buf = self._buffer
        while True:
            if len(buf) >= 2 and buf[:2] != _VERSION_BYTES:
                self._lost("version", f"version 0x{buf[0]:02X}{buf[1]:02X}, expected 0x0001", 0, 1)
                continue
            if len(buf) < HEADER_LENGTH:
                return None
            length = int.from_bytes(buf[6:8], "big")
            if length > self.max_apdu_length:
                # The header itself was well placed: look for the next one after it.
                reason = f"length {length} exceeds the largest accepted APDU ({self.max_apdu_length})"
                self._lost("length", reason, 6, HEADER_LENGTH)
                continue
            if len(buf) < HEADER_LENGTH + length:
                return None
            message = WrapperMessage(
                source=int.from_bytes(buf[2:4], "big"),
                destination=int.from_bytes(buf[4:6], "big"),
                apdu=bytes(buf[HEADER_LENGTH : HEADER_LENGTH + length]),
            )
            del buf[: HEADER_LENGTH + length]
            self._hunting = False
            self.messages += 1
            return message

    def _lost(self, field: str, reason: str, offset: int, skip: int) -> None:
        """The stream has lost its framing: skip to the next byte pair that could be a version.
        The first loss raises; what is skipped until a message decodes again is only counted."""
        buf = self._buffer
        start = buf.find(_VERSION_BYTES, skip)
        if start < 0:
            # Keep a last 0x00: it may be the first half of the next version field.
            start = len(buf) - 1 if buf[-1:] == b"\x00" else len(buf)
        del buf[:start]
        self.skipped_bytes += start
        if not self._hunting:
            self._hunting = True
            self.errors += 1
            raise DLMSFrameError(reason, offset=offset, field=field)


class WrapperConnection:
    """The wrapper as a link with the interface of :class:`HdlcConnection`: ``send_apdu(apdu)``
    returns the bytes to send, received APDUs come out of ``next_event()`` as
    :class:`ApduReceived`. There is no link set-up: the TCP connection is the link.
    Messages to another wPort are ignored and counted in :attr:`ignored_messages`; a server
    side answers the wPort of the last request."""

    def __init__(
        self,
        client_wport: int = WPORT_CLIENT_PUBLIC,
        server_wport: int = WPORT_SERVER_MANAGEMENT,
        *,
        server_side: bool = False,
        max_apdu_length: int = MAX_LENGTH_FIELD,
    ) -> None:
        self.local, self.remote = (server_wport, client_wport) if server_side else (client_wport, server_wport)
        self.parser = WrapperParser(max_apdu_length)
        self.server_side = server_side
        self.ignored_messages = 0

    def send_apdu(self, apdu: bytes) -> bytes:
        return WrapperMessage(self.local, self.remote, apdu).to_bytes()

    def receive_data(self, data: bytes) -> None:
        self.parser.receive_data(data)

    def clear(self) -> None:
        self.parser.clear()

    def next_event(self) -> LinkEvent:
        """The next event, or :data:`NEED_DATA` when more bytes are needed."""
        while True:
            message = self.parser.next_message()
            if message is None:
                return NEED_DATA
            if message.destination == self.local:
                if self.server_side:
                    self.remote = message.source  # answer whichever client asked
                return ApduReceived(message.apdu)
            self.ignored_messages += 1
