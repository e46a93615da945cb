"""Building blocks of wireless M-Bus security: AES-CMAC (RFC 4493), the OMS key derivation,
IVs and counter blocks, and keys that never show their value."""

from __future__ import annotations

import pytest

from gateway.codecs.mbus.errors import MBusAuthenticationError
from gateway.codecs.mbus.wmbus_security import (
    AesKey,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    aes_cmac,
    aes_ctr,
    derive_keys,
    ell_counter_block,
    mode5_iv,
    verify_mac,
)

from .wmbus_builders import cmac, mode7_keys

RFC4493_KEY = AesKey.from_hex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)


@pytest.mark.parametrize(
    "length, tag",
    [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_aes_cmac_gives_the_rfc_4493_example_tags(length, tag):
    assert aes_cmac(RFC4493_KEY, RFC4493_MESSAGE[:length]).hex() == tag


def test_the_oms_kdf_is_cmac_over_constant_counter_id_and_padding():
    key = AesKey.from_hex("000102030405060708090A0B0C0D0E0F")
    keys = derive_keys(key, (0x0AB3).to_bytes(4, "little"), bytes.fromhex("78563412"))
    kenc, kmac = mode7_keys(key.secret, 0x0AB3, bytes.fromhex("78563412"))
    assert keys.encryption.secret == kenc == cmac(key.secret, bytes.fromhex("00B30A000078563412 07070707070707"))
    assert keys.mac.secret == kmac != kenc


def test_the_oms_kdf_rejects_fields_of_the_wrong_size():
    with pytest.raises(ValueError):
        derive_keys(AesKey(bytes(16)), b"\x01\x02", bytes(4))


def test_a_truncated_mac_is_checked_in_constant_time_and_a_wrong_one_refused():
    key = AesKey(bytes(range(16)))
    tag = aes_cmac(key, b"message")[:8]
    verify_mac(key, b"message", tag)
    with pytest.raises(MBusAuthenticationError, match="MAC does not match"):
        verify_mac(key, b"messagf", tag)
    with pytest.raises(MBusAuthenticationError):
        verify_mac(key, b"message", b"")


def test_mode5_iv_is_manufacturer_address_and_eight_access_numbers():
    iv = mode5_iv(b"\x93\x15", bytes.fromhex("785634123303"), 0x2A)
    assert iv == bytes.fromhex("9315785634123303") + b"\x2a" * 8


def test_ell_counter_block_clears_hop_count_and_repeated_access_bits():
    block = ell_counter_block(b"\x2d\x2c", bytes.fromhex("998734761b16"), 0xFF, bytes.fromhex("91d37cac"))
    assert block == bytes.fromhex("2d2c998734761b16") + bytes([0xED]) + bytes.fromhex("91d37cac") + bytes(3)


def test_cbc_round_trip_and_whole_blocks_only():
    key = AesKey(bytes(16))
    data = bytes(range(32))
    assert aes_cbc_decrypt(key, bytes(16), aes_cbc_encrypt(key, bytes(16), data)) == data
    with pytest.raises(ValueError, match="whole 16-byte blocks"):
        aes_cbc_decrypt(key, bytes(16), data[:20])


def test_ctr_is_its_own_inverse_over_partial_blocks():
    key = AesKey(bytes(range(16)))
    data = bytes(range(37))
    assert aes_ctr(key, bytes(16), aes_ctr(key, bytes(16), data)) == data


def test_a_key_never_shows_its_value():
    secret = "2B7E151628AED2A6ABF7158809CF4F3C"
    key = AesKey.from_hex(secret)
    for text in (repr(key), str(key), f"{key}", repr([key]), repr(derive_keys(key, bytes(4), bytes(4)))):
        assert secret.lower() not in text.lower()
        assert "secret" in text
    with pytest.raises(ValueError) as info:
        AesKey.from_hex(secret[:-1] + "Z")
    assert secret[:10].lower() not in str(info.value).lower()
    with pytest.raises(ValueError, match="16 bytes, this one has 8"):
        AesKey(bytes(8))
