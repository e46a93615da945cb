"""Wireless M-Bus cryptography: keys, AES-128 in the modes EN 13757-4/-7 and OMS Volume 2 use.

* ELL session encryption (EN 13757-4 clause 13, "AES-128 counter mode"):
  :func:`ell_counter_block` and :func:`aes_ctr`.
* TPL security mode 5 (EN 13757-7 clause 9.4.3, OMS Vol. 2 "security profile A"): AES-128-CBC,
  IV = manufacturer ‖ address ‖ 8 × access number: :func:`mode5_iv` and :func:`aes_cbc_decrypt`.
* TPL security mode 7 (EN 13757-7 clause 9.4.5, OMS Vol. 2 "security profile B"): AES-128-CBC
  with IV 0 under an ephemeral key, authenticated by an AES-CMAC in the AFL. The ephemeral
  keys come from the persistent key by the OMS key derivation function (OMS Vol. 2 Annex A,
  EN 13757-7 clause 9.6): ``K = CMAC(key, DC ‖ message counter ‖ meter id ‖ 0x07 × 7)`` with
  DC 0x00 for encryption and 0x01 for the MAC of messages from the meter
  (:func:`derive_keys`).

:class:`AesKey` holds a key; it never shows its value in ``repr``/``str`` or in an error, so
a key cannot leak into a log through an exception or a debug print.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from gateway.codecs.mbus.errors import MBusAuthenticationError

BLOCK = 16

# Derivation constants of the OMS key derivation function (OMS Vol. 2 Annex A, table A.1).
DC_ENCRYPTION_FROM_METER = 0x00
DC_MAC_FROM_METER = 0x01
DC_ENCRYPTION_TO_METER = 0x10
DC_MAC_TO_METER = 0x11
_KDF_PADDING = b"\x07" * 7


@dataclass(frozen=True, slots=True)
class AesKey:
    """An AES-128 key. Its value is in :attr:`secret`; ``repr`` shows only that it is a key."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, (bytes, bytearray)) or len(self.secret) != BLOCK:
            length = len(self.secret) if isinstance(self.secret, (bytes, bytearray)) else "no"
            raise ValueError(f"an AES-128 key has 16 bytes, this one has {length}")
        object.__setattr__(self, "secret", bytes(self.secret))

    @classmethod
    def from_hex(cls, text: str) -> AesKey:
        """A key from 32 hex digits (spaces allowed). The error never repeats the input."""
        try:
            raw = bytes.fromhex(text.replace(" ", ""))
        except ValueError:
            raise ValueError("an AES-128 key is 32 hex digits; this one is not hex") from None
        return cls(raw)

    def __repr__(self) -> str:
        return "AesKey(<secret>)"

    __str__ = __repr__


def aes_cbc_decrypt(key: AesKey, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC decryption of whole blocks (no padding: the caller counts the blocks)."""
    if len(data) % BLOCK:
        raise ValueError(f"CBC needs whole 16-byte blocks, got {len(data)} bytes")
    decryptor = Cipher(algorithms.AES(key.secret), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def aes_cbc_encrypt(key: AesKey, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC encryption of whole blocks (used to build test telegrams and by meters)."""
    if len(data) % BLOCK:
        raise ValueError(f"CBC needs whole 16-byte blocks, got {len(data)} bytes")
    encryptor = Cipher(algorithms.AES(key.secret), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_ctr(key: AesKey, counter_block: bytes, data: bytes) -> bytes:
    """AES-128 counter mode (encryption and decryption are the same operation).

    The counter block is incremented as one 128-bit big-endian number per 16 bytes; for the
    ELL that increments the block counter BC in its last byte (EN 13757-4 clause 13.2).
    """
    cipher = Cipher(algorithms.AES(key.secret), modes.CTR(counter_block)).encryptor()
    return cipher.update(data) + cipher.finalize()


def aes_cmac(key: AesKey | bytes, data: bytes) -> bytes:
    """AES-128-CMAC (NIST SP 800-38B, RFC 4493), the full 16-byte tag."""
    secret = key.secret if isinstance(key, AesKey) else key
    mac = CMAC(algorithms.AES(secret))
    mac.update(data)
    return mac.finalize()


def mode5_iv(manufacturer: bytes, address: bytes, access_number: int) -> bytes:
    """The mode 5 IV: manufacturer (2) ‖ address (6) ‖ access number repeated 8 times.

    The manufacturer and address are those of the long TPL header when there is one (the
    meter behind a radio adapter), else those of the link layer (EN 13757-7 clause 9.4.3).
    """
    return bytes(manufacturer) + bytes(address) + bytes([access_number]) * 8


def ell_counter_block(manufacturer: bytes, address: bytes, cc: int, session_number: bytes) -> bytes:
    """The first AES-CTR counter block of the ELL: M ‖ A ‖ CC ‖ SN ‖ FN ‖ BC.

    FN (frame number, 2 bytes) and BC (block counter) start at 0. The CC field enters with
    its hop count bit H (0x10) and repeated-access bit R (0x02) cleared, as a repeater may
    set them after the meter encrypted (EN 13757-4 clause 13.2).
    """
    return bytes(manufacturer) + bytes(address) + bytes([cc & ~0x12 & 0xFF]) + bytes(session_number) + b"\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class EphemeralKeys:
    """The per-message keys of security mode 7 (never printed, like :class:`AesKey`)."""

    encryption: AesKey
    mac: AesKey

    def __repr__(self) -> str:
        return "EphemeralKeys(<secret>)"


def derive_keys(key: AesKey, message_counter: bytes, meter_id: bytes) -> EphemeralKeys:
    """Kenc and Kmac for a message from the meter (OMS Vol. 2 Annex A, KDF-A).

    ``message_counter`` is AFL.MCR and ``meter_id`` the 4-byte identification number, both as
    transmitted (least significant byte first).
    """
    if len(message_counter) != 4 or len(meter_id) != 4:
        raise ValueError("the key derivation takes a 4-byte message counter and a 4-byte meter id")
    tail = bytes(message_counter) + bytes(meter_id) + _KDF_PADDING
    return EphemeralKeys(
        encryption=AesKey(aes_cmac(key, bytes([DC_ENCRYPTION_FROM_METER]) + tail)),
        mac=AesKey(aes_cmac(key, bytes([DC_MAC_FROM_METER]) + tail)),
    )


def verify_mac(key: AesKey, data: bytes, mac: bytes) -> None:
    """Check a truncated AES-CMAC; a mismatch raises :class:`MBusAuthenticationError`."""
    computed = aes_cmac(key, data)[: len(mac)]
    if not mac or not hmac.compare_digest(computed, bytes(mac)):
        raise MBusAuthenticationError("AFL MAC does not match: wrong key or altered telegram", field="AFL.MAC")
