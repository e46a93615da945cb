"""A whole wireless M-Bus telegram: link layer, ELL, AFL, TPL and security, down to the
application data (EN 13757-4, EN 13757-7, OMS Volume 2).

:func:`decode_telegram` peels the layers in the order they nest on the air::

    DLL (L C M A) ─ [ELL 0x8C-0x8F] ─ [AFL 0x90] ─ [TPL 0x72/0x7A/0x78 ...] ─ application data

and applies the security each layer announces: ELL AES-128-CTR (with its payload CRC),
TPL mode 5 (AES-128-CBC, 2F2F check) and TPL mode 7 (AFL MAC checked before AES-128-CBC with
ephemeral keys, 2F2F check). The result's :attr:`WirelessTelegram.application_data` is the
plaintext for the EN 13757-3 record decoder (or a compact frame for
:class:`gateway.codecs.mbus.compact.FormatCache`).

Refusals (never decoded into readings; the caller counts them by class):

* a wrong key, a failed MAC, payload CRC or 2F2F check: :class:`MBusAuthenticationError`;
* an encrypted telegram and no key: :class:`MBusNoKeyError`;
* an unencrypted telegram although a key is configured: :class:`MBusPlaintextError`;
* a security mode this codec does not implement: :class:`MBusUnsupportedSecurityError`.

``decrypted=True`` accepts a telegram that a receiver already decrypted while leaving the
security header in place: the 2F2F check bytes or the ELL payload CRC must then be there in
plaintext, and no MAC can be checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.codecs.mbus.afl import CI_AFL, CMAC_TYPES, AuthenticationFragmentationLayer, decode_afl
from gateway.codecs.mbus.ell import ELL_VARIANTS, ExtendedLinkLayer, check_payload_crc, decode_ell, decrypt_payload
from gateway.codecs.mbus.errors import (
    MBusAuthenticationError,
    MBusError,
    MBusFrameError,
    MBusNoKeyError,
    MBusPlaintextError,
    MBusUnsupportedSecurityError,
)
from gateway.codecs.mbus.tpl import MANUFACTURER_SPECIFIC_CI, SECURITY_MODES, TPL_CI, TransportHeader, decode_tpl
from gateway.codecs.mbus.wireless_link import FrameFormat, WirelessFrame, decode_frame
from gateway.codecs.mbus.wmbus_security import (
    BLOCK,
    AesKey,
    aes_cbc_decrypt,
    derive_keys,
    mode5_iv,
    verify_mac,
)

#: The two bytes that open every decrypted mode 5 and mode 7 payload (EN 13757-7 9.4.3).
CHECK_BYTES = b"\x2f\x2f"
KDF_A = 1  # CFE key derivation selection for the OMS KDF (EN 13757-7 table 21)
MODE_NONE, MODE_AES_CBC_IV, MODE_AES_CBC_EPHEMERAL = 0, 5, 7
BY_KEY, BY_RECEIVER = "key", "receiver"


@dataclass(frozen=True, slots=True)
class Security:
    """What protected a telegram and what was done about it.

    ``decrypted_by`` is ``"key"`` (this codec decrypted with the configured key),
    ``"receiver"`` (it arrived decrypted, ``decrypted=True``) or ``None`` (not encrypted).
    ``mac_verified`` is ``None`` where the telegram carries no MAC.
    """

    mode: int = MODE_NONE
    ell_encrypted: bool = False
    decrypted_by: str | None = None
    mac_verified: bool | None = None
    encrypted_bytes: int = 0

    @property
    def encrypted(self) -> bool:
        return self.ell_encrypted or self.mode != MODE_NONE

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "name": SECURITY_MODES.get(self.mode, f"reserved ({self.mode})"),
            "ell_encrypted": self.ell_encrypted,
            "encrypted": self.encrypted,
            "decrypted": self.decrypted_by is not None,
            "decrypted_by": self.decrypted_by,
            "mac_verified": self.mac_verified,
            "encrypted_bytes": self.encrypted_bytes,
        }


@dataclass(frozen=True, slots=True)
class WirelessTelegram:
    """A decoded wireless telegram down to its plaintext application data.

    ``ci`` is the CI of the innermost layer and ``content`` what its data are: ``"records"``
    (EN 13757-3 data records), ``"compact"`` (a compact frame: format signature, data CRC,
    packed data), ``"format"`` (a format frame) or ``None`` (kept raw: manufacturer-specific
    CI, COSEM, network management ...). ``application_data`` has the 2F2F check bytes of
    modes 5 and 7 removed; ``application_offset`` is where it starts in the stripped (and
    decrypted) frame, for error offsets.
    """

    frame: WirelessFrame
    ell: ExtendedLinkLayer | None
    afl: AuthenticationFragmentationLayer | None
    tpl: TransportHeader | None
    ci: int | None
    content: str | None
    application_data: bytes
    security: Security
    application_offset: int = 0

    @property
    def meter_manufacturer(self) -> int:
        """The meter's manufacturer: the long TPL header's when there is one (a radio adapter
        or repeater sends for it), else the link layer's."""
        if self.tpl is not None and self.tpl.manufacturer is not None:
            return self.tpl.manufacturer
        return self.frame.manufacturer

    @property
    def meter_address(self) -> bytes:
        """The meter's 6-byte address (identification LSB first, version, device type)."""
        if self.tpl is not None and self.tpl.address is not None:
            return self.tpl.address
        return self.frame.address

    def as_dict(self) -> dict[str, object]:
        """``link`` and the security headers present (``ell``, ``afl``, ``tpl``) plus ``security``."""
        out: dict[str, object] = {"link": self.frame.as_dict()}
        for name, layer in (("ell", self.ell), ("afl", self.afl), ("tpl", self.tpl)):
            if layer is not None:
                out[name] = layer.as_dict()
        out["security"] = self.security.as_dict()
        return out


def decode_telegram(
    data: bytes | WirelessFrame,
    *,
    key: AesKey | None = None,
    decrypted: bool = False,
    frame_format: FrameFormat | str = FrameFormat.STRIPPED,
    keep_trailing: bool = False,
) -> WirelessTelegram:
    """Decode a telegram (bytes as :func:`decode_frame` takes them, or a decoded frame).

    ``key`` is the meter's AES-128 key, if one is configured; ``decrypted`` says a receiver
    already decrypted the payload. Errors are :class:`MBusError` subclasses with the offset
    in the stripped frame.
    """
    if key is not None and decrypted:
        raise ValueError("a telegram is either decrypted here with a key or already decrypted, not both")
    try:
        frame = (
            data
            if isinstance(data, WirelessFrame)
            else decode_frame(data, frame_format=frame_format, keep_trailing=keep_trailing)
        )
        return _Peeler(frame, key, decrypted).run()
    except MBusError:
        raise
    except (IndexError, ValueError, struct.error) as exc:
        raise MBusFrameError(f"malformed telegram ({exc})") from None


class _Peeler:
    """One pass over the layers of one frame (kept small: state for one telegram only)."""

    def __init__(self, frame: WirelessFrame, key: AesKey | None, decrypted: bool) -> None:
        self.frame = frame
        self.key = key
        self.decrypted = decrypted
        # The stripped frame from L on: offsets in errors refer to it.
        self.buf = frame.to_bytes()
        self.pos = 10
        self.ell: ExtendedLinkLayer | None = None
        self.afl: AuthenticationFragmentationLayer | None = None
        self.tpl: TransportHeader | None = None
        self.used_key = False
        self.mac_verified: bool | None = None
        self.encrypted_bytes = 0

    def run(self) -> WirelessTelegram:
        if self.pos < len(self.buf) and self.buf[self.pos] in ELL_VARIANTS:
            self._ell()
        if self.pos < len(self.buf) and self.buf[self.pos] == CI_AFL:
            self._afl()
        ci = self.buf[self.pos] if self.pos < len(self.buf) else None
        content = None
        if ci in TPL_CI:
            self._tpl()
            content = TPL_CI[ci][1]
            data = self._application_data()
        else:
            data = self.buf[self.pos + 1 :]
        data_offset = len(self.buf) - len(data)
        if self.key is not None and not self.used_key:
            if ci in MANUFACTURER_SPECIFIC_CI:
                raise MBusUnsupportedSecurityError(
                    f"manufacturer-specific CI 0x{ci:02X} has no standard security to apply the configured key to",
                    offset=self.pos,
                    field="CI",
                )
            raise MBusPlaintextError("telegram is not encrypted but a key is configured for this meter", field="CI")
        security = Security(
            mode=self.tpl.security_mode if self.tpl else MODE_NONE,
            ell_encrypted=bool(self.ell and self.ell.encrypted),
            decrypted_by=(BY_KEY if self.used_key else BY_RECEIVER) if self._any_encryption() else None,
            mac_verified=self.mac_verified,
            encrypted_bytes=self.encrypted_bytes,
        )
        return WirelessTelegram(
            self.frame, self.ell, self.afl, self.tpl, ci, content, bytes(data), security, data_offset
        )

    def _any_encryption(self) -> bool:
        return bool(self.ell and self.ell.encrypted) or bool(self.tpl and self.tpl.security_mode)

    def _ell(self) -> None:
        ell = self.ell = decode_ell(self.buf, self.pos)
        self.pos += ell.size
        if ell.payload_crc is None:
            return
        crc_at = self.pos - 2
        if not ell.encrypted:
            check_payload_crc(ell.payload_crc, self.buf[self.pos :], offset=crc_at)
        elif ell.encryption != 1:
            raise MBusUnsupportedSecurityError(
                f"ELL encryption {ell.encryption} is reserved", offset=crc_at - 1, field="ELL.SN"
            )
        elif self.key is not None:
            plain = decrypt_payload(
                ell, self.key, self.frame.manufacturer_bytes, self.frame.address, self.buf[crc_at:], offset=crc_at
            )
            self.buf = self.buf[: self.pos] + plain
            self.used_key = True
        elif self.decrypted:
            try:
                check_payload_crc(ell.payload_crc, self.buf[self.pos :], offset=crc_at)
            except MBusFrameError as exc:
                raise MBusAuthenticationError(f"payload marked decrypted fails its check: {exc.reason}", offset=crc_at, field="ELL.CRC") from None
        else:
            raise MBusNoKeyError("ELL payload is encrypted (AES-128-CTR) and no key is configured", offset=crc_at)

    def _afl(self) -> None:
        afl = self.afl = decode_afl(self.buf, self.pos)
        if afl.more_fragments or afl.fragment_id:
            raise MBusFrameError(
                f"fragment {afl.fragment_id} of a fragmented message: reassembly is not supported",
                offset=self.pos + 2,
                field="AFL.FCL",
            )
        self.pos += afl.size

    def _tpl(self) -> None:
        self.tpl = decode_tpl(self.buf, self.pos)

    def _application_data(self) -> bytes:
        tpl = self.tpl
        assert tpl is not None
        tpl_at = self.pos
        start = self.pos + tpl.size
        rest = self.buf[start:]
        mode = tpl.security_mode
        if mode == MODE_NONE:
            return rest
        if mode not in (MODE_AES_CBC_IV, MODE_AES_CBC_EPHEMERAL):
            if self.key is None and not self.decrypted:
                raise MBusNoKeyError(f"payload is encrypted (security mode {mode}) and no key is configured", offset=start)
            raise MBusUnsupportedSecurityError(
                f"security mode {mode} ({SECURITY_MODES.get(mode, 'reserved')}) is not supported",
                offset=tpl_at,
                field="TPL.CF",
            )
        blocks = tpl.encrypted_blocks or 0
        size = blocks * BLOCK if blocks else len(rest) - len(rest) % BLOCK
        if size > len(rest) or size == 0:
            raise MBusFrameError(
                f"{blocks} encrypted blocks announced, {len(rest)} bytes follow the header",
                offset=tpl_at,
                field="TPL.CF",
            )
        self.encrypted_bytes = size
        if self.key is not None:
            plain = self._decrypt(mode, tpl_at, rest[:size]) + rest[size:]
            self.used_key = True
            if plain[:2] != CHECK_BYTES:
                raise MBusAuthenticationError(
                    "decrypted payload does not start with 2F2F: wrong key or payload not encrypted",
                    offset=start,
                    field="TPL",
                )
        elif self.decrypted:
            plain = rest
            if plain[:2] != CHECK_BYTES:
                raise MBusAuthenticationError(
                    "payload marked decrypted does not start with 2F2F", offset=start, field="TPL"
                )
        else:
            raise MBusNoKeyError(f"payload is encrypted (security mode {mode}) and no key is configured", offset=start)
        return plain[2:]

    def _decrypt(self, mode: int, tpl_at: int, ciphertext: bytes) -> bytes:
        assert self.key is not None and self.tpl is not None
        tpl = self.tpl
        if mode == MODE_AES_CBC_IV:
            manufacturer = (tpl.manufacturer if tpl.manufacturer is not None else self.frame.manufacturer).to_bytes(2, "little")
            iv = mode5_iv(manufacturer, tpl.address or self.frame.address, tpl.access_number or 0)
            return aes_cbc_decrypt(self.key, iv, ciphertext)
        afl = self.afl
        if afl is None or afl.mac is None or afl.message_counter is None:
            raise MBusAuthenticationError("security mode 7 without an AFL MAC and message counter", offset=tpl_at, field="AFL")
        if afl.authentication_type not in CMAC_TYPES:
            raise MBusUnsupportedSecurityError(
                f"AFL authentication type {afl.authentication_type} is not AES-CMAC", field="AFL.MCL"
            )
        if tpl.kdf_selection != KDF_A:
            raise MBusUnsupportedSecurityError(
                f"key derivation function {tpl.kdf_selection} is not supported", offset=tpl_at, field="TPL.CFE"
            )
        meter_id = (tpl.address or self.frame.address)[:4]
        keys = derive_keys(self.key, afl.message_counter, meter_id)
        # Encrypt-then-MAC: the MAC covers the ciphertext; it is checked before decrypting.
        verify_mac(keys.mac, afl.mac_input(self.buf[tpl_at:]), afl.mac)
        self.mac_verified = True
        return aes_cbc_decrypt(keys.encryption, bytes(BLOCK), ciphertext)
