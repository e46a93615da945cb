"""Extended link layer (ELL), EN 13757-4 clause 13 (CI 0x8C, 0x8D, 0x8E, 0x8F).

=====  ====  ==================================================================
CI     size  fields after CI
=====  ====  ==================================================================
0x8C   2     CC, ACC
0x8D   8     CC, ACC, SN (4), payload CRC (2)
0x8E   10    CC, ACC, M (2), A (6)
0x8F   16    CC, ACC, M (2), A (6), SN (4), payload CRC (2)
=====  ====  ==================================================================

CC is the communication control field, ACC the access number, M/A an address (the
destination of a message to a meter, or the meter behind a repeater), SN the session number
(bits 0-3 session, 4-28 time in minutes, 29-31 encryption: 0 none, 1 AES-128-CTR) and the
payload CRC (EN 13757-4 CRC, little-endian) covers everything after it. With encryption 1
the payload CRC and all that follows are encrypted (:func:`decrypt_payload`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.crc import crc_en13757
from gateway.codecs.mbus.errors import MBusAuthenticationError, MBusFrameError, need_ci
from gateway.codecs.mbus.application import manufacturer_letters
from gateway.codecs.mbus.wmbus_security import AesKey, aes_ctr, ell_counter_block

#: CI of each ELL variant: (has address, has session number and payload CRC).
ELL_VARIANTS: dict[int, tuple[bool, bool]] = {
    0x8C: (False, False),
    0x8D: (False, True),
    0x8E: (True, False),
    0x8F: (True, True),
}

# CC field bits, EN 13757-4 clause 13.2 (table "Communication control field").
CC_BITS = {
    0x80: "bidirectional",
    0x40: "response_delay",
    0x20: "synchronous",
    0x10: "hop_count",
    0x08: "priority",
    0x04: "accessibility",
    0x02: "repeated_access",
}

#: SN encryption field values (EN 13757-4 clause 13.2.8).
ELL_ENCRYPTION = {0: "none", 1: "AES-128-CTR"}
ENCRYPTION_AES_CTR = 1


@dataclass(frozen=True, slots=True)
class ExtendedLinkLayer:
    """One ELL header (EN 13757-4 clause 13). ``session_number`` and ``payload_crc`` are the
    raw little-endian fields; the properties split them."""

    ci: int
    cc: int
    access_number: int
    manufacturer: int | None = None
    address: bytes | None = None
    session_number: bytes | None = None
    payload_crc: int | None = None

    @property
    def size(self) -> int:
        """Bytes taken by the ELL, CI included."""
        has_address, has_session = ELL_VARIANTS[self.ci]
        return 3 + (8 if has_address else 0) + (6 if has_session else 0)

    @property
    def encryption(self) -> int:
        return 0 if self.session_number is None else self.session_number[3] >> 5

    @property
    def encrypted(self) -> bool:
        return self.encryption != 0

    @property
    def session(self) -> int | None:
        return None if self.session_number is None else self.session_number[0] & 0x0F

    @property
    def session_time(self) -> int | None:
        if self.session_number is None:
            return None
        return (int.from_bytes(self.session_number, "little") >> 4) & 0x1FFFFFF

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ci": f"0x{self.ci:02X}",
            "cc": f"0x{self.cc:02X}",
            "cc_flags": [name for bit, name in CC_BITS.items() if self.cc & bit],
            "access_number": self.access_number,
        }
        if self.manufacturer is not None and self.address is not None:
            out.update(
                manufacturer=manufacturer_letters(self.manufacturer),
                id=self.address[:4][::-1].hex(),
                version=self.address[4],
                device_type=f"0x{self.address[5]:02X}",
            )
        if self.session_number is not None:
            out.update(
                session_number=self.session_number.hex(),
                session=self.session,
                session_time=self.session_time,
                encryption=ELL_ENCRYPTION.get(self.encryption, f"reserved ({self.encryption})"),
                payload_crc=f"0x{self.payload_crc:04X}",
            )
        return out


def decode_ell(data: bytes, offset: int = 0) -> ExtendedLinkLayer:
    """Decode the ELL that starts (with its CI) at ``data[offset]``.

    The payload CRC field is read as it stands; when the ELL is encrypted it is still
    ciphertext here (see :func:`decrypt_payload`).
    """
    need_ci(data, offset)
    ci = data[offset]
    if ci not in ELL_VARIANTS:
        raise MBusFrameError(f"CI 0x{ci:02X} is not an extended link layer", offset=offset, field="CI")
    has_address, has_session = ELL_VARIANTS[ci]
    need = 3 + (8 if has_address else 0) + (6 if has_session else 0)
    if len(data) - offset < need:
        raise MBusFrameError(
            f"ELL 0x{ci:02X} needs {need} bytes, {len(data) - offset} left", offset=len(data), field="ELL"
        )
    pos = offset + 3
    manufacturer = address = session_number = payload_crc = None
    if has_address:
        manufacturer = int.from_bytes(data[pos : pos + 2], "little")
        address = bytes(data[pos + 2 : pos + 8])
        pos += 8
    if has_session:
        session_number = bytes(data[pos : pos + 4])
        payload_crc = int.from_bytes(data[pos + 4 : pos + 6], "little")
    return ExtendedLinkLayer(ci, data[offset + 1], data[offset + 2], manufacturer, address, session_number, payload_crc)


def check_payload_crc(payload_crc: int, payload: bytes, *, offset: int) -> None:
    """Compare the ELL payload CRC with the CRC of the payload after it."""
    computed = crc_en13757(payload)
    if computed != payload_crc:
        raise MBusFrameError(
            f"ELL payload CRC is 0x{payload_crc:04X}, computed 0x{computed:04X}", offset=offset, field="ELL.CRC"
        )


def decrypt_payload(
    ell: ExtendedLinkLayer, key: AesKey, manufacturer: bytes, address: bytes, ciphertext: bytes, *, offset: int
) -> bytes:
    """Decrypt what follows the session number (payload CRC first) and verify the CRC.

    ``manufacturer``/``address`` are the link layer's (the meter that encrypted). Returns the
    plaintext after the payload CRC. A CRC that does not match after decryption means a wrong
    key or a payload that was not encrypted: :class:`MBusAuthenticationError`.
    """
    if ell.session_number is None:
        raise MBusFrameError(f"ELL 0x{ell.ci:02X} has no session number to decrypt with", offset=offset, field="CI")
    if len(ciphertext) < 2:
        raise MBusFrameError("ELL payload CRC is missing", offset=offset, field="ELL.CRC")
    plain = aes_ctr(key, ell_counter_block(manufacturer, address, ell.cc, ell.session_number), ciphertext)
    crc = int.from_bytes(plain[:2], "little")
    if crc != crc_en13757(plain[2:]):
        raise MBusAuthenticationError(
            "ELL payload CRC does not match after AES-CTR decryption: wrong key or payload not encrypted",
            offset=offset,
            field="ELL.CRC",
        )
    return plain[2:]
