"""Transport layer (TPL) headers and the CI field, EN 13757-7 clause 7 and EN 13757-4.

The CI field names the layer that follows. For a TPL CI it also fixes the header:

========  =====================================================================
none      nothing (CI 0x78: full frame, 0x79: compact frame, ...)
short     ACC, ST, CF (2) [+ CFE]            (CI 0x7A, 0x7B, 0x5A, ...)
long      ID (4), M (2), version, type, ACC, ST, CF (2) [+ CFE]  (CI 0x72, 0x73, 0x53, 0x5B ...)
========  =====================================================================

The configuration field CF (little-endian) carries the security mode in bits 8-12 (EN
13757-7 table 20). In modes 5 and 7 its bits 4-7 give the number of encrypted 16-byte blocks;
mode 5 also has bits 15 (bidirectional), 14 (accessibility), 13 (synchronous), 3-2 (content)
1 (repeated access) and 0 (hop count). Mode 7 adds a configuration field extension CFE
(bits 4-5 key derivation function, bits 0-3 key id, EN 13757-7 table 21).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.errors import MBusFrameError, need_ci
from gateway.codecs.mbus.application import manufacturer_letters

NONE, SHORT, LONG = "none", "short", "long"

#: CI fields that open a transport layer, with their header kind and what follows
#: (EN 13757-7 table 2; "records" = EN 13757-3 data records, "compact" = compact frame,
#: "format" = format frame, None = content this codec keeps raw).
TPL_CI: dict[int, tuple[str, str | None, str]] = {
    0x53: (LONG, "records", "application reset or select to device"),
    0x5A: (SHORT, "records", "command to device"),
    0x5B: (LONG, "records", "command to device"),
    0x60: (LONG, None, "COSEM data to device"),
    0x61: (SHORT, None, "COSEM data to device"),
    0x64: (LONG, None, "OBIS data to device"),
    0x65: (SHORT, None, "OBIS data to device"),
    0x67: (SHORT, None, "response of selected application"),
    0x68: (LONG, None, "response of selected application"),
    0x69: (NONE, "format", "format frame"),
    0x6A: (SHORT, "format", "format frame"),
    0x6B: (LONG, "format", "format frame"),
    0x6C: (LONG, None, "clock synchronisation (absolute)"),
    0x6D: (LONG, None, "clock synchronisation (relative)"),
    0x6E: (SHORT, None, "application error"),
    0x6F: (LONG, None, "application error"),
    0x72: (LONG, "records", "response (full frame)"),
    0x73: (LONG, "compact", "response (compact frame)"),
    0x74: (SHORT, None, "alarm"),
    0x75: (LONG, None, "alarm"),
    0x78: (NONE, "records", "response (full frame)"),
    0x79: (NONE, "compact", "response (compact frame)"),
    0x7A: (SHORT, "records", "response (full frame)"),
    0x7B: (SHORT, "compact", "response (compact frame)"),
    0x7C: (LONG, None, "COSEM application layer"),
    0x7D: (SHORT, None, "COSEM application layer"),
    0x7E: (LONG, None, "OBIS application layer"),
    0x7F: (SHORT, None, "OBIS application layer"),
    0x80: (LONG, None, "transport layer to meter"),
    0x82: (SHORT, None, "network management to device"),
    0x84: (LONG, "compact", "transport layer to device (compact frame)"),
    0x85: (LONG, "format", "transport layer to device (format frame)"),
    0x87: (LONG, None, "network management from device"),
    0x88: (SHORT, None, "network management from device"),
    0x8A: (SHORT, None, "transport layer from meter (no application data)"),
    0x8B: (LONG, None, "transport layer from meter (no application data)"),
    0xC0: (LONG, None, "image transfer to device"),
    0xC1: (SHORT, None, "image transfer from device"),
    0xC2: (LONG, None, "image transfer from device"),
    0xC3: (LONG, None, "security information transfer to device"),
    0xC4: (SHORT, None, "security information transfer from device"),
    0xC5: (LONG, None, "security information transfer from device"),
}

MANUFACTURER_SPECIFIC_CI = range(0xA0, 0xB8)

#: Security modes (CF bits 8-12), EN 13757-7 table 19.
SECURITY_MODES = {
    0: "none",
    1: "manufacturer specific",
    2: "DES-CBC, IV 0 (deprecated)",
    3: "DES-CBC with IV (deprecated)",
    4: "reserved",
    5: "AES-128-CBC with IV",
    6: "reserved",
    7: "AES-128-CBC, IV 0, ephemeral key",
    8: "AES-128-CTR with CMAC",
    9: "AES-128-GCM",
    10: "AES-128-CCM",
    13: "TLS",
}
MODES_WITH_BLOCK_COUNT = frozenset({5, 7})
MODES_WITH_EXTENSION = frozenset({7})

# CF bits (EN 13757-7 table 20, mode 5 layout).
CF_BIDIRECTIONAL = 0x8000
CF_ACCESSIBILITY = 0x4000
CF_SYNCHRONOUS = 0x2000
CF_MODE_SHIFT, CF_MODE_MASK = 8, 0x1F
CF_BLOCKS_SHIFT, CF_BLOCKS_MASK = 4, 0x0F

# Status byte bits (EN 13757-7 table 8); the top three bits are manufacturer specific.
STATUS_BITS = {0x04: "power_low", 0x08: "permanent_error", 0x10: "temporary_error"}
STATUS_APPLICATION = {0: "no error", 1: "application busy", 2: "any application error", 3: "abnormal condition"}


@dataclass(frozen=True, slots=True)
class TransportHeader:
    """A TPL header. For the long header, ``manufacturer``/``address`` identify the meter
    (which may differ from the link layer's radio adapter); byte fields are as transmitted."""

    ci: int
    kind: str
    access_number: int | None = None
    status: int | None = None
    configuration: int | None = None
    configuration_extension: int | None = None
    manufacturer: int | None = None
    address: bytes | None = None

    @property
    def size(self) -> int:
        """Bytes taken by the header, CI included."""
        body = {NONE: 0, SHORT: 4, LONG: 12}[self.kind]
        return 1 + body + (0 if self.configuration_extension is None else 1)

    @property
    def content(self) -> str | None:
        return TPL_CI[self.ci][1]

    @property
    def security_mode(self) -> int:
        if self.configuration is None:
            return 0
        return (self.configuration >> CF_MODE_SHIFT) & CF_MODE_MASK

    @property
    def encrypted_blocks(self) -> int | None:
        """Encrypted 16-byte blocks (modes 5 and 7); 0 means "all that follows" in mode 7."""
        if self.security_mode not in MODES_WITH_BLOCK_COUNT or self.configuration is None:
            return None
        return (self.configuration >> CF_BLOCKS_SHIFT) & CF_BLOCKS_MASK

    @property
    def identification(self) -> str | None:
        return None if self.address is None else self.address[:4][::-1].hex()

    @property
    def kdf_selection(self) -> int | None:
        ext = self.configuration_extension
        return None if ext is None else (ext >> 4) & 0x03

    @property
    def key_id(self) -> int | None:
        ext = self.configuration_extension
        return None if ext is None else ext & 0x0F

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"ci": f"0x{self.ci:02X}", "header": self.kind}
        if self.address is not None and self.manufacturer is not None:
            out.update(
                manufacturer=manufacturer_letters(self.manufacturer),
                id=self.identification,
                version=self.address[4],
                device_type=f"0x{self.address[5]:02X}",
            )
        if self.access_number is not None and self.status is not None:
            out.update(
                access_number=self.access_number,
                status=f"0x{self.status:02X}",
                status_flags=[name for bit, name in STATUS_BITS.items() if self.status & bit],
                application_status=STATUS_APPLICATION[self.status & 0x03],
            )
        if self.configuration is not None:
            mode = self.security_mode
            out.update(
                configuration=f"0x{self.configuration:04X}",
                security_mode=mode,
                security=SECURITY_MODES.get(mode, f"reserved ({mode})"),
                bidirectional=bool(self.configuration & CF_BIDIRECTIONAL),
                accessibility=bool(self.configuration & CF_ACCESSIBILITY),
                synchronous=bool(self.configuration & CF_SYNCHRONOUS),
            )
            if self.encrypted_blocks is not None:
                out["encrypted_blocks"] = self.encrypted_blocks
        if self.configuration_extension is not None:
            out.update(
                configuration_extension=f"0x{self.configuration_extension:02X}",
                kdf=self.kdf_selection,
                key_id=self.key_id,
            )
        return out


def decode_tpl(data: bytes, offset: int = 0) -> TransportHeader:
    """Decode the TPL header whose CI is at ``data[offset]`` (see :data:`TPL_CI`)."""
    need_ci(data, offset)
    ci = data[offset]
    if ci not in TPL_CI:
        raise MBusFrameError(f"CI 0x{ci:02X} does not open a transport layer", offset=offset, field="CI")
    kind = TPL_CI[ci][0]
    pos = offset + 1
    if kind == NONE:
        return TransportHeader(ci, kind)
    need = 4 if kind == SHORT else 12
    if len(data) - pos < need:
        raise MBusFrameError(
            f"{kind} TPL header needs {need} bytes, {len(data) - pos} left", offset=len(data), field="TPL"
        )
    manufacturer = address = None
    if kind == LONG:
        address = bytes(data[pos : pos + 4]) + bytes(data[pos + 6 : pos + 8])
        manufacturer = int.from_bytes(data[pos + 4 : pos + 6], "little")
        pos += 8
    configuration = int.from_bytes(data[pos + 2 : pos + 4], "little")
    extension = None
    if (configuration >> CF_MODE_SHIFT) & CF_MODE_MASK in MODES_WITH_EXTENSION:
        if len(data) <= pos + 4:
            raise MBusFrameError("configuration field extension missing", offset=len(data), field="TPL.CFE")
        extension = data[pos + 4]
    return TransportHeader(ci, kind, data[pos], data[pos + 1], configuration, extension, manufacturer, address)
