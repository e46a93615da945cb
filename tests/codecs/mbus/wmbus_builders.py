"""Build encrypted wireless M-Bus telegrams from first principles, for tests.

Written from the formulas of EN 13757-7 / OMS Volume 2 with the `cryptography` primitives
directly (not with the codec's helpers), so that a telegram built here checks the codec
rather than mirroring it:

* mode 5: AES-128-CBC, IV = M ‖ A ‖ ACC×8, plaintext = 2F2F ‖ records ‖ 2F fill;
* mode 7: Kenc/Kmac = CMAC(K, 00/01 ‖ MCR ‖ ID ‖ 07×7), AES-128-CBC with IV 0 under Kenc,
  AFL MAC = CMAC(Kmac, MCL ‖ MCR ‖ TPL CI … end) truncated to 8 bytes;
* ELL AES-CTR: counter block M ‖ A ‖ CC ‖ SN ‖ 00 00 00, payload CRC first.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from gateway.codecs.mbus.crc import crc_en13757

MANUFACTURER_ELS = (0x1593).to_bytes(2, "little")  # "ELS"
ADDRESS = bytes.fromhex("78563412") + bytes([0x33, 0x03])  # id 12345678, version 0x33, gas
RECORDS = bytes.fromhex("0C1427048502046D32371F1502FD170000")  # volume, date-time, error flags


def cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def pad(data: bytes) -> bytes:
    return data + b"\x2f" * (-len(data) % 16)


def with_l(body: bytes) -> bytes:
    return bytes([len(body)]) + body


def mode5_telegram(key: bytes, *, access: int = 0x2A, records: bytes = RECORDS, plaintext: bool = False) -> bytes:
    """A SND_NR with a short TPL header in security mode 5 (``plaintext`` leaves the payload
    unencrypted under the mode 5 header, as a meter with AES removed would)."""
    payload = pad(b"\x2f\x2f" + records)
    blocks = len(payload) // 16
    config = (0x05 << 8) | (blocks << 4)
    iv = MANUFACTURER_ELS + ADDRESS + bytes([access]) * 8
    body = payload if plaintext else cbc_encrypt(key, iv, payload)
    tpl = bytes([0x7A, access, 0x00]) + config.to_bytes(2, "little")
    return with_l(b"\x44" + MANUFACTURER_ELS + ADDRESS + tpl + body)


def mode7_keys(key: bytes, counter: int, meter_id: bytes) -> tuple[bytes, bytes]:
    tail = counter.to_bytes(4, "little") + meter_id + b"\x07" * 7
    return cmac(key, b"\x00" + tail), cmac(key, b"\x01" + tail)


def mode7_telegram(
    key: bytes, *, counter: int = 0x0AB3, access: int = 0x75, records: bytes = RECORDS, mac_key: bytes | None = None
) -> bytes:
    """ELL 0x8C ‖ AFL (MCL, MCR, 8-byte CMAC) ‖ short TPL in mode 7 with KDF-A, like the OMS
    example of a meter with integrated radio. ``mac_key`` overrides Kmac (to forge a MAC)."""
    kenc, kmac = mode7_keys(key, counter, ADDRESS[:4])
    payload = pad(b"\x2f\x2f" + records)
    config = (0x07 << 8) | ((len(payload) // 16) << 4)
    tpl = bytes([0x7A, access, 0x00]) + config.to_bytes(2, "little") + b"\x10"
    tpl_and_data = tpl + cbc_encrypt(kenc, bytes(16), payload)
    mcl = 0x25  # AES-CMAC-128, 8 bytes; message counter in message
    mcr = counter.to_bytes(4, "little")
    mac = cmac(mac_key or kmac, bytes([mcl]) + mcr + tpl_and_data)[:8]
    afl = bytes([0x90, 0x0F]) + (0x2C00).to_bytes(2, "little") + bytes([mcl]) + mcr + mac
    ell = bytes([0x8C, 0x20, access])
    return with_l(b"\x44" + MANUFACTURER_ELS + ADDRESS + ell + afl + tpl_and_data)


def ell_ctr_telegram(key: bytes, *, cc: int = 0x20, access: int = 0x50, inner: bytes = b"\x78" + RECORDS) -> bytes:
    """ELL 0x8D with AES-128-CTR session encryption over payload CRC ‖ ``inner``."""
    session = (1 << 29 | 0x12345 << 4 | 3).to_bytes(4, "little")
    plain = crc_en13757(inner).to_bytes(2, "little") + inner
    counter = MANUFACTURER_ELS + ADDRESS + bytes([cc & ~0x12]) + session + b"\x00\x00\x00"
    enc = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    cipher = enc.update(plain) + enc.finalize()
    return with_l(b"\x44" + MANUFACTURER_ELS + ADDRESS + bytes([0x8D, cc, access]) + session + cipher)
