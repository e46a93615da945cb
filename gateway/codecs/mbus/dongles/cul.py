"""CUL / nanoCUL sticks with culfw (CC1101 transceiver; 38400 baud, text lines ending CR LF).

Commands (culfw command reference): ``brt`` / ``brc`` / ``brs`` start the wireless M-Bus
receiver in mode T / C / S and are answered ``TMODE`` / ``CMODE`` / ``SMODE``; ``X21`` makes
culfw append the LQI and RSSI bytes to every received telegram (``X01`` does not); ``V``
asks for the version (``V 1.67 nanoCUL868`` ...).

A received telegram is one line: ``b`` and the frame as hex *with* its CRC blocks (format A),
or ``bY`` and a format B frame (C mode), then 4 more hex digits (LQI, RSSI) after ``X21``. The
frame's L-field tells where the frame ends, so the LQI/RSSI suffix is recognised by length.
RSSI: the CC1101's two's complement value, dBm = RSSI / 2 − 74 (CC1101 datasheet 17.3);
LQI: bits 0-6 of its byte (bit 7 is the CC1101's CRC-OK flag).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.dongles import ReceivedTelegram, StreamAdapter
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import FrameFormat, LinkMode, wire_length

#: Longest line accepted: a 255-byte format A frame with CRCs and the suffix, as hex.
MAX_LINE = 2 + 2 * (wire_length(255, FrameFormat.A) + 2) + 2
MODE_COMMANDS = {LinkMode.T1: b"brt", LinkMode.C1: b"brc", LinkMode.S1: b"brs"}
MODE_ANSWERS = {b"TMODE": LinkMode.T1, b"CMODE": LinkMode.C1, b"SMODE": LinkMode.S1}
EOL = b"\r\n"


@dataclass(frozen=True, slots=True)
class CulText:
    """A line that is not a telegram: an answer (``TMODE``, the version) or a message."""

    text: str

    @property
    def mode(self) -> LinkMode | None:
        return MODE_ANSWERS.get(self.text.encode())


def rssi_to_dbm(raw: int) -> int:
    return (raw - 256 if raw >= 128 else raw) // 2 - 74


class CulAdapter(StreamAdapter):
    """culfw wireless M-Bus adapter (sans-IO)."""

    def next_event(self) -> ReceivedTelegram | CulText | None:
        buf = self._buffer
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_LINE:
                    self.skipped_bytes += len(buf)
                    self.errors += 1
                    buf.clear()
                    raise MBusFrameError(f"line longer than {MAX_LINE} bytes without an end", offset=0, field="line")
                return None
            line = bytes(buf[:end]).rstrip(b"\r")
            if not line.strip() or not all(0x20 <= byte < 0x7F for byte in line):
                self._skip(end + 1)  # an empty line or line noise: nothing culfw prints
                continue
            if not line.startswith(b"b"):
                return CulText(self._emit(end + 1).decode("ascii").strip())
            self._emit(end + 1)
            return self._telegram(line)

    def _telegram(self, line: bytes) -> ReceivedTelegram:
        fmt, digits = (FrameFormat.B, line[2:]) if line.startswith(b"bY") else (FrameFormat.A, line[1:])
        try:
            if len(digits) % 2:
                raise ValueError("odd number of hex digits")
            data = bytes.fromhex(digits.decode("ascii"))
        except (ValueError, UnicodeDecodeError) as exc:
            self.errors += 1
            raise MBusFrameError(f"telegram line is not hex ({exc})", offset=0, field="hex") from None
        if not data:
            self.errors += 1
            raise MBusFrameError("empty telegram line", offset=0, field="hex")
        size = wire_length(data[0], fmt)
        if len(data) == size + 2:
            lqi, rssi = data[size] & 0x7F, data[size + 1]
            return ReceivedTelegram(data[:size], fmt, rssi_to_dbm(rssi), rssi, lqi)
        if len(data) == size:
            return ReceivedTelegram(data, fmt)
        self.errors += 1
        raise MBusFrameError(
            f"telegram line has {len(data)} bytes, its L-field says {size} (+2 for LQI/RSSI)", offset=0, field="L"
        )

    @staticmethod
    def command_set_link_mode(mode: LinkMode | str) -> bytes:
        return MODE_COMMANDS[LinkMode(mode)] + EOL

    @staticmethod
    def command_report_rssi(enabled: bool = True) -> bytes:
        """Start reception with (``X21``) or without (``X01``) the LQI/RSSI suffix."""
        return (b"X21" if enabled else b"X01") + EOL

    @staticmethod
    def command_version() -> bytes:
        return b"V" + EOL
