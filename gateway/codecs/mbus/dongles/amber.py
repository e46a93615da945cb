"""Amber / Würth Elektronik Metis wireless M-Bus modules: AMB8465 (USB), AMB8425/8426, Metis-II.

Two ways out of the module (AMB8426-M manual, chapter 2):

* command mode, ``FF | command | length | payload | checksum`` — the checksum is the XOR of
  all preceding bytes from 0xFF on. A request's confirmation carries the command | 0x80; a
  received telegram is ``CMD_DATA_IND`` (0x03) whose payload is the frame *without* its
  L-field (CRCs removed), followed by the RSSI byte when RSSI output is enabled (parameter
  ``RSSI_Enable``); the length counts that RSSI byte. Output of received telegrams as
  command frames needs ``UART_CMD_Out_Enable`` (parameter 0x05) set.
* transparent mode: the frame from its L-field on (CRCs removed), then the RSSI byte when
  enabled. There is no checksum, so garbage is recognised only by an implausible L or C.

RSSI: two's complement, dBm = value / 2 − 74 (manual 7.9, ``CMD_RSSI_REQ``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.dongles import ReceivedTelegram, StreamAdapter, link_mode_value
from gateway.codecs.mbus.wireless_link import MIN_L, PRIMARY_FUNCTIONS, SECONDARY_FUNCTIONS, LinkMode

SOF = 0xFF
CONFIRM = 0x80

# Commands (manual 2.2.1, "Command overview").
CMD_DATA_REQ = 0x00
CMD_DATA_IND = 0x03
CMD_SET_MODE_REQ = 0x04
CMD_RESET_REQ = 0x05
CMD_SET_REQ = 0x09
CMD_GET_REQ = 0x0A
CMD_SERIALNO_REQ = 0x0B
CMD_FWV_REQ = 0x0C
CMD_RSSI_REQ = 0x0D
COMMANDS = {
    CMD_DATA_REQ: "CMD_DATA_REQ",
    0x02: "CMD_DATARETRY_REQ",
    CMD_DATA_IND: "CMD_DATA_IND",
    CMD_SET_MODE_REQ: "CMD_SET_MODE_REQ",
    CMD_RESET_REQ: "CMD_RESET_REQ",
    0x06: "CMD_SET_CHANNEL_REQ",
    CMD_SET_REQ: "CMD_SET_REQ",
    CMD_GET_REQ: "CMD_GET_REQ",
    CMD_SERIALNO_REQ: "CMD_SERIALNO_REQ",
    CMD_FWV_REQ: "CMD_FWV_REQ",
    CMD_RSSI_REQ: "CMD_RSSI_REQ",
    0x10: "CMD_SETUARTSPEED_REQ",
    0x11: "CMD_FACTORYRESET_REQ",
    0x30: "CMD_DATA_PRELOAD_REQ",
    0x31: "CMD_DATA_CLR_PRELOAD_REQ",
    0x50: "CMD_SET_AES_KEY_REQ",
    0x51: "CMD_CLR_AES_KEY_REQ",
    0x52: "CMD_GET_AES_DEV_REQ",
}

#: Receiving modes of CMD_SET_MODE_REQ (manual, "wM-Bus modes of operation"): a gateway
#: listens in the "other" (collector) variant of each meter mode.
LINK_MODES = {LinkMode.S1: 0x03, LinkMode.T1: 0x08, LinkMode.C1: 0x0E}
LINK_MODE_C1_T1 = 0x09

# Non-volatile parameters (manual, "User settings").
PARAM_UART_CMD_OUT_ENABLE = 0x05
PARAM_RSSI_ENABLE = 0x45

_VALID_C_FIELDS = frozenset(PRIMARY_FUNCTIONS) | frozenset(SECONDARY_FUNCTIONS)


@dataclass(frozen=True, slots=True)
class AmberConfirm:
    """A confirmation (command | 0x80) with its payload."""

    command: int
    payload: bytes

    @property
    def name(self) -> str:
        return COMMANDS.get(self.command & ~CONFIRM, f"0x{self.command:02X}").replace("_REQ", "_CNF")


def checksum(data: bytes) -> int:
    """XOR of all bytes (the command-mode checksum)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def rssi_to_dbm(raw: int) -> int:
    """dBm of an Amber RSSI byte (two's complement / 2 − 74), rounded down."""
    return (raw - 256 if raw >= 128 else raw) // 2 - 74


def _plausible_c(c: int) -> bool:
    masked = c & ~0x20 & 0xFF if c & 0x40 else c & ~0x30 & 0xFF
    return masked in _VALID_C_FIELDS


class AmberAdapter(StreamAdapter):
    """AMB8465-family adapter (sans-IO).

    ``rssi`` says whether the module appends an RSSI byte to received telegrams (its
    ``RSSI_Enable`` parameter); ``transparent`` whether telegrams may also arrive without the
    0xFF command framing (``UART_CMD_Out_Enable`` off). Without transparent mode every byte
    outside a command frame is garbage.
    """

    def __init__(self, *, rssi: bool = True, transparent: bool = False) -> None:
        super().__init__()
        self.rssi = rssi
        self.transparent = transparent

    def next_event(self) -> ReceivedTelegram | AmberConfirm | None:
        buf = self._buffer
        while buf:
            if buf[0] == SOF:
                if len(buf) < 3:
                    return None
                if buf[1] != CMD_DATA_IND and buf[1] & ~CONFIRM not in COMMANDS:
                    self._skip()
                    continue
                size = 4 + buf[2]
                if len(buf) < size:
                    return None
                expected = checksum(buf[: size - 1])
                if buf[size - 1] != expected:
                    raise self._fail(
                        f"checksum 0x{buf[size - 1]:02X}, computed 0x{expected:02X}", offset=size - 1, field="CS"
                    )
                raw = self._emit(size)
                if raw[1] == CMD_DATA_IND:
                    return self._telegram(raw[3:-1])
                return AmberConfirm(raw[1], raw[3:-1])
            if self.transparent and buf[0] >= MIN_L + 1 and (len(buf) < 2 or _plausible_c(buf[1])):
                size = 1 + buf[0] + (1 if self.rssi else 0)
                if len(buf) < size:
                    return None
                raw = self._emit(size)
                return self._telegram(raw[1:])
            self._skip()
        return None

    def _telegram(self, body: bytes) -> ReceivedTelegram:
        """``body`` is C..end of the frame plus the RSSI byte when enabled."""
        if self.rssi and body:
            return self._telegram_without_l(body[:-1], body[-1], rssi_to_dbm, offset=2)
        return self._telegram_without_l(body, None, rssi_to_dbm, offset=2)

    @staticmethod
    def command(command: int, payload: bytes = b"") -> bytes:
        """One command-mode frame with its checksum."""
        frame = bytes([SOF, command, len(payload)]) + payload
        return frame + bytes([checksum(frame)])

    @classmethod
    def command_set_link_mode(cls, *modes: LinkMode | str) -> bytes:
        """CMD_SET_MODE_REQ (volatile) for receiving the mode(s) as a collector."""
        return cls.command(CMD_SET_MODE_REQ, bytes([link_mode_value(modes, LINK_MODES, LINK_MODE_C1_T1, "AMB8465")]))

    @classmethod
    def command_get_serial_number(cls) -> bytes:
        return cls.command(CMD_SERIALNO_REQ)

    @classmethod
    def command_get_firmware_version(cls) -> bytes:
        return cls.command(CMD_FWV_REQ)

    @classmethod
    def command_get_parameter(cls, address: int, count: int = 1) -> bytes:
        return cls.command(CMD_GET_REQ, bytes([address, count]))

    @classmethod
    def command_set_parameter(cls, address: int, values: bytes) -> bytes:
        """CMD_SET_REQ writes non-volatile parameters; they take effect after a reset."""
        return cls.command(CMD_SET_REQ, bytes([address, len(values)]) + values)

    @classmethod
    def command_reset(cls) -> bytes:
        return cls.command(CMD_RESET_REQ)
