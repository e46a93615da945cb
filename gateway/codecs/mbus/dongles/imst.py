"""IMST wireless M-Bus dongles: iM871A / iM170A (WM-Bus HCI) and iU891A (SLIP HCI).

iM871A, "WM-Bus HCI" (IMST WMBus_HCI_Spec 1.6; 57600 baud 8N1)::

    A5 | control<<4 | endpoint | message id | length | payload | [timestamp 4] [RSSI 1] [CRC 2]

The control nibble says which trailer fields follow: 0x2 a receive timestamp (32-bit, LE),
0x4 an RSSI byte, 0x8 a CRC-16 (:func:`crc_x25` over control..RSSI, little-endian); 0x1 is
reserved. A received telegram is a RADIOLINK ``WMBUSMSG_IND`` whose payload is the frame
*without* its L-field, CRCs removed: the length byte serves as L.

iU891A, "SLIP HCI" (RFC 1055 framing, 0xC0 ends a frame, 0xDB escapes)::

    C0 | endpoint | message id | [status] | payload | CRC 2 | C0

with the CRC over endpoint..payload. Responses carry a status byte, indications do not; a
received telegram is a WMBUSGW ``RX_MESSAGE_IND`` (0x20) whose payload is a 4-byte timestamp,
three bytes of receive information, the RSSI in dBm (signed) and the frame from its L-field.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.crc import crc_x25
from gateway.codecs.mbus.dongles import ReceivedTelegram, StreamAdapter, link_mode_value
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import MIN_L, LinkMode

SOF = 0xA5
CTRL_RESERVED = 0x10
CTRL_TIMESTAMP = 0x20
CTRL_RSSI = 0x40
CTRL_CRC = 0x80

DEVMGMT, RADIOLINK, RADIOLINKTEST, HWTEST = 0x01, 0x02, 0x03, 0x04
#: Highest message id of each endpoint (HCI spec, message id tables); others are not HCI.
MAX_MESSAGE_ID = {DEVMGMT: 0x27, RADIOLINK: 0x05, RADIOLINKTEST: 0x07, HWTEST: 0x02}

# DEVMGMT message ids (HCI spec table "Device Management Messages").
PING_REQ, PING_RSP = 0x01, 0x02
SET_CONFIG_REQ, SET_CONFIG_RSP = 0x03, 0x04
GET_CONFIG_REQ, GET_CONFIG_RSP = 0x05, 0x06
RESET_REQ = 0x07
GET_DEVICEINFO_REQ, GET_DEVICEINFO_RSP = 0x0F, 0x10
# RADIOLINK message ids.
WMBUSMSG_IND = 0x03

#: Radio link mode values of SET_CONFIG (HCI spec table "Link Modes"). For C1 the receiver
#: runs in "C1 TF-B" (7), the mode in which the iM871A hears C1 meters; 10 listens to C1 and
#: T1 together (firmware 1.4 and later).
LINK_MODES = {LinkMode.S1: 0x00, LinkMode.T1: 0x03, LinkMode.C1: 0x07}
LINK_MODE_C1_T1 = 0x0A

# SET_CONFIG information-indicator flags (HCI spec "Set Configuration").
IIF1_LINK_MODE = 0x02
IIF2_AUTO_RSSI = 0x10
IIF2_AUTO_TIMESTAMP = 0x20
NVM_TEMPORARY = 0x00

#: Module types in GET_DEVICEINFO_RSP.
MODULE_TYPES = {0x33: "iM871A", 0x36: "iM170A"}


@dataclass(frozen=True, slots=True)
class HciMessage:
    """An HCI message other than a received telegram (a response or an indication)."""

    endpoint: int
    message_id: int
    payload: bytes
    status: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class ImstDeviceInfo:
    """GET_DEVICEINFO_RSP of the iM871A: module type, device mode, firmware, HCI version, UID."""

    module_type: int
    device_mode: int
    firmware_version: int
    hci_version: int
    uid: int

    @property
    def module(self) -> str:
        return MODULE_TYPES.get(self.module_type, f"0x{self.module_type:02X}")


def rssi_to_dbm(raw: int) -> int:
    """Approximate dBm of an iM871A RSSI byte: linear from −100 dBm at 45 to −20 dBm at 205,
    0 dBm from 230 on (its transceiver's RSSI curve, Si1002 datasheet figure 7-3)."""
    if raw >= 230:
        return 0
    return -100 + (raw - 45) // 2


class ImstHci(StreamAdapter):
    """iM871A / iM170A WM-Bus HCI adapter (sans-IO)."""

    def next_event(self) -> ReceivedTelegram | ImstDeviceInfo | HciMessage | None:
        buf = self._buffer
        while buf:
            if buf[0] != SOF:
                self._skip()
                continue
            if len(buf) < 4:
                return None
            control, endpoint, message_id = buf[1] & 0xF0, buf[1] & 0x0F, buf[2]
            if control & CTRL_RESERVED or not 1 <= message_id <= MAX_MESSAGE_ID.get(endpoint, 0):
                self._skip()  # an 0xA5 that is not the start of a message
                continue
            payload_end = 4 + buf[3]
            size = payload_end + (4 if control & CTRL_TIMESTAMP else 0) + (1 if control & CTRL_RSSI else 0)
            size += 2 if control & CTRL_CRC else 0
            if len(buf) < size:
                return None
            if control & CTRL_CRC:
                got = int.from_bytes(buf[size - 2 : size], "little")
                computed = crc_x25(buf[1 : size - 2])
                if got != computed:
                    raise self._fail(f"HCI CRC is 0x{got:04X}, computed 0x{computed:04X}", offset=size - 2, field="CRC")
            return self._event(self._emit(size), control, endpoint, message_id, payload_end)
        return None

    def _event(self, raw: bytes, control: int, endpoint: int, message_id: int, payload_end: int):
        payload = raw[4:payload_end]
        pos = payload_end
        timestamp = rssi = None
        if control & CTRL_TIMESTAMP:
            timestamp = int.from_bytes(raw[pos : pos + 4], "little")
            pos += 4
        if control & CTRL_RSSI:
            rssi = raw[pos]
        if endpoint == RADIOLINK and message_id == WMBUSMSG_IND:
            return self._telegram_without_l(payload, rssi, rssi_to_dbm, offset=3)
        if endpoint == DEVMGMT and message_id == GET_DEVICEINFO_RSP and len(payload) >= 8:
            return ImstDeviceInfo(payload[0], payload[1], payload[2], payload[3], int.from_bytes(payload[4:8], "little"))
        return HciMessage(endpoint, message_id, payload, timestamp=timestamp)

    @staticmethod
    def message(endpoint: int, message_id: int, payload: bytes = b"", *, with_crc: bool = False) -> bytes:
        """One HCI message as the host sends it (or, in tests, as the dongle does)."""
        control = CTRL_CRC if with_crc else 0
        body = bytes([control | endpoint, message_id, len(payload)]) + payload
        if with_crc:
            body += crc_x25(body).to_bytes(2, "little")
        return bytes([SOF]) + body

    @classmethod
    def command_ping(cls) -> bytes:
        return cls.message(DEVMGMT, PING_REQ)

    @classmethod
    def command_get_device_info(cls) -> bytes:
        return cls.message(DEVMGMT, GET_DEVICEINFO_REQ)

    @classmethod
    def command_get_config(cls) -> bytes:
        return cls.message(DEVMGMT, GET_CONFIG_REQ)

    @classmethod
    def command_set_link_mode(cls, *modes: LinkMode | str, rssi: bool = True) -> bytes:
        """SET_CONFIG (in RAM only) to receive in the given mode(s), with the RSSI attached
        to each received telegram and no timestamp."""
        value = link_mode_value(modes, LINK_MODES, LINK_MODE_C1_T1, "iM871A")
        payload = bytes(
            [NVM_TEMPORARY, IIF1_LINK_MODE, value, IIF2_AUTO_RSSI | IIF2_AUTO_TIMESTAMP, int(rssi), 0]
        )
        return cls.message(DEVMGMT, SET_CONFIG_REQ, payload)


# --- iU891A ----------------------------------------------------------------------------------

SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
SAP_DEVMGMT, SAP_WMBUSGW = 0x01, 0x09
IU_GET_DEVICE_INFO_REQ = 0x03
IU_SET_ACTIVE_CONFIGURATION_REQ = 0x03
IU_RX_MESSAGE_IND = 0x20
IU_RX_HEADER = 8  # timestamp (4), receive information (3), RSSI (1)
#: iU891A link modes of SET_ACTIVE_CONFIGURATION.
IU_LINK_MODES = {LinkMode.S1: 0x01, LinkMode.T1: 0x02, LinkMode.C1: 0x05}
IU_LINK_MODE_C1_T1 = 0x03
IU_OPTION_RECEIVE_INDICATION = 0x0002
#: Indications have no status byte (everything else from the dongle does).
IU_INDICATIONS = {(SAP_WMBUSGW, IU_RX_MESSAGE_IND), (SAP_WMBUSGW, 0x24), (SAP_WMBUSGW, 0x34), (SAP_WMBUSGW, 0x38)}


def slip_encode(message: bytes) -> bytes:
    escaped = message.replace(bytes([SLIP_ESC]), bytes([SLIP_ESC, SLIP_ESC_ESC])).replace(
        bytes([SLIP_END]), bytes([SLIP_ESC, SLIP_ESC_END])
    )
    return bytes([SLIP_END]) + escaped + bytes([SLIP_END])


class ImstSlipHci(StreamAdapter):
    """iU891A SLIP-framed HCI adapter (sans-IO)."""

    def next_event(self) -> ReceivedTelegram | HciMessage | None:
        buf = self._buffer
        while buf:
            if buf[0] == SLIP_END:
                self._skip()
                continue
            end = buf.find(SLIP_END)
            if end < 0:
                return None
            message = self._unescape(bytes(buf[:end]))
            if message is None or len(message) < 4:
                self._skip(end)
                self.errors += 1
                raise MBusFrameError("SLIP frame too short or badly escaped", offset=0, field="SLIP")
            got = int.from_bytes(message[-2:], "little")
            if got != crc_x25(message[:-2]):
                self._skip(end)
                self.errors += 1
                raise MBusFrameError(
                    f"HCI CRC is 0x{got:04X}, computed 0x{crc_x25(message[:-2]):04X}", offset=len(message) - 2, field="CRC"
                )
            self._emit(end)
            return self._event(message[:-2])
        return None

    @staticmethod
    def _unescape(frame: bytes) -> bytes | None:
        out = bytearray()
        escaped = False
        for byte in frame:
            if escaped:
                if byte not in (SLIP_ESC_END, SLIP_ESC_ESC):
                    return None
                out.append(SLIP_END if byte == SLIP_ESC_END else SLIP_ESC)
                escaped = False
            elif byte == SLIP_ESC:
                escaped = True
            else:
                out.append(byte)
        return None if escaped else bytes(out)

    def _event(self, message: bytes) -> ReceivedTelegram | HciMessage:
        endpoint, message_id = message[0], message[1]
        if (endpoint, message_id) in IU_INDICATIONS:
            payload = message[2:]
            if message_id == IU_RX_MESSAGE_IND:
                frame = payload[IU_RX_HEADER:]
                if len(frame) < MIN_L + 1 or frame[0] + 1 != len(frame):
                    self.errors += 1
                    raise MBusFrameError("received telegram's L-field does not match its length", offset=10, field="L")
                rssi = payload[IU_RX_HEADER - 1]
                return ReceivedTelegram(frame=frame, rssi_dbm=rssi - 256 if rssi > 127 else rssi, rssi_raw=rssi)
            return HciMessage(endpoint, message_id, payload)
        return HciMessage(endpoint, message_id, message[3:], status=message[2])

    @staticmethod
    def message(endpoint: int, message_id: int, payload: bytes = b"") -> bytes:
        body = bytes([endpoint, message_id]) + payload
        return slip_encode(body + crc_x25(body).to_bytes(2, "little"))

    @classmethod
    def command_get_device_info(cls) -> bytes:
        return cls.message(SAP_DEVMGMT, IU_GET_DEVICE_INFO_REQ)

    @classmethod
    def command_set_link_mode(cls, *modes: LinkMode | str) -> bytes:
        """SET_ACTIVE_CONFIGURATION: receive in the mode(s), indicate every received telegram."""
        value = link_mode_value(modes, IU_LINK_MODES, IU_LINK_MODE_C1_T1, "iU891A")
        body = bytes([value]) + IU_OPTION_RECEIVE_INDICATION.to_bytes(2, "little") + bytes(8)
        return cls.message(SAP_WMBUSGW, IU_SET_ACTIVE_CONFIGURATION_REQ, body)
