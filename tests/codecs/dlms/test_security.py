"""Security suite 0 (Green Book 9.2.7): ciphering round trips with any keys, titles and counters,
tags always checked, replays refused, and the counter store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.security import (
    MemoryInvocationCounters,
    SecurityKeys,
    check_hls_gmac,
    cipher_apdu,
    decipher_apdu,
    decrypt,
    encrypt,
    hls_gmac,
)
from gateway.codecs.dlms.xdlms import CIPHERED_FORMS, CipheredApdu, GeneralDedCiphering, GeneralGloCiphering

from .strategies import service_apdus

keys16 = st.binary(min_size=16, max_size=16)
key_sets = st.builds(SecurityKeys, keys16, keys16, keys16)
titles = st.binary(min_size=8, max_size=8)
counters = st.integers(0, 0xFFFFFFFF)
controls = st.sampled_from([0x10, 0x20, 0x30, 0x50, 0x60, 0x70])
cipherable = service_apdus.map(lambda a: a.to_bytes()).filter(lambda raw: raw[0] in CIPHERED_FORMS)


@given(cipherable, key_sets, titles, counters, controls, st.booleans(), st.none() | keys16)
@settings(max_examples=300, deadline=None)
def test_cipher_then_decipher_gives_the_apdu_back(plain, keys, title, counter, sc, general, dedicated):
    ciphered = cipher_apdu(plain, keys=keys, system_title=title, invocation_counter=counter, security_control=sc,
                           dedicated_key=dedicated, general=general)
    received = decode_apdu(ciphered.to_bytes())
    assert received == ciphered
    expected_type = (GeneralDedCiphering if dedicated else GeneralGloCiphering) if general else CipheredApdu
    assert type(received) is expected_type and received.dedicated == (dedicated is not None)
    result = decipher_apdu(received, keys=keys, system_title=title, dedicated_key=dedicated,
                           last_counter=counter - 1 if counter else None, required=0)
    assert result.apdu == plain
    assert (result.invocation_counter, result.security_control, result.system_title) == (counter, sc, title)
    if sc & 0x20 and len(plain) >= 8:
        assert plain not in received.ciphertext


@given(cipherable, key_sets, titles, counters, st.integers(0, 0xFFFFFFFF))
@settings(max_examples=100, deadline=None)
def test_a_counter_not_above_the_last_accepted_is_refused(plain, keys, title, counter, last):
    ciphered = cipher_apdu(plain, keys=keys, system_title=title, invocation_counter=counter)
    if counter <= last:
        with pytest.raises(DLMSSecurityError, match="replayed"):
            decipher_apdu(ciphered, keys=keys, system_title=title, last_counter=last)
    else:
        assert decipher_apdu(ciphered, keys=keys, system_title=title, last_counter=last).apdu == plain


@given(cipherable, key_sets, titles, counters, st.sampled_from([0x10, 0x30]), st.data())
@settings(max_examples=100, deadline=None)
def test_any_altered_byte_of_authenticated_content_fails_the_tag(plain, keys, title, counter, sc, data):
    ciphered = cipher_apdu(plain, keys=keys, system_title=title, invocation_counter=counter, security_control=sc)
    payload = bytearray(ciphered.ciphertext)
    at = data.draw(st.integers(0, len(payload) - 1))
    payload[at] ^= data.draw(st.integers(1, 255))
    altered = CipheredApdu(ciphered.tag, sc, counter, bytes(payload))
    with pytest.raises(DLMSSecurityError):
        decipher_apdu(altered, keys=keys, system_title=title)


def test_the_required_protection_is_enforced():
    keys = SecurityKeys(bytes(16), bytes(range(16)))
    title = b"ABCDEFGH"
    for sc, required in ((0x20, 0x10), (0x10, 0x30), (0x00, 0x10)):
        ciphered = cipher_apdu(b"\xc4\x01\xc1\x00\x00", keys=keys, system_title=title, invocation_counter=1,
                               security_control=sc)
        with pytest.raises(DLMSSecurityError, match="lacks the required protection"):
            decipher_apdu(ciphered, keys=keys, system_title=title, required=required)


def test_encryption_only_is_gcm_without_the_tag():
    key, ak, title = bytes(range(16)), bytes(16), b"ABCDEFGH"
    full = encrypt(b"hello world", security_control=0x30, system_title=title, invocation_counter=9, key=key,
                   authentication_key=ak)
    bare = encrypt(b"hello world", security_control=0x20, system_title=title, invocation_counter=9, key=key,
                   authentication_key=ak)
    assert bare == full[:11]
    assert decrypt(bare, security_control=0x20, system_title=title, invocation_counter=9, key=key,
                   authentication_key=ak) == b"hello world"


@pytest.mark.parametrize(
    "sc,match",
    [(0x31, "suite 1"), (0xB0, "compressed")],
)
def test_unsupported_security_controls_are_refused(sc, match):
    with pytest.raises(DLMSSecurityError, match=match):
        decrypt(bytes(20), security_control=sc, system_title=bytes(8), invocation_counter=1, key=bytes(16),
                authentication_key=bytes(16))


def test_missing_material_is_a_security_error_not_a_crash():
    keys = SecurityKeys(bytes(16), bytes(16))
    ded = cipher_apdu(b"\xc0\x01\xc1", keys=keys, system_title=bytes(8), invocation_counter=1,
                      dedicated_key=bytes(range(16)))
    with pytest.raises(DLMSSecurityError, match="dedicated key"):
        decipher_apdu(ded, keys=keys, system_title=bytes(8))
    with pytest.raises(DLMSSecurityError, match="system title"):
        decipher_apdu(ded, keys=keys)
    with pytest.raises(DLMSSecurityError, match="broadcast"):
        cipher_apdu(b"\xc0", keys=keys, system_title=bytes(8), invocation_counter=1, security_control=0x70)
    general = cipher_apdu(b"\xc0", keys=keys, system_title=b"AAAAAAAA", invocation_counter=1, general=True)
    with pytest.raises(DLMSSecurityError, match="not the peer"):
        decipher_apdu(general, keys=keys, system_title=b"BBBBBBBB")
    with pytest.raises(DLMSSecurityError, match="8"):
        encrypt(b"", security_control=0x30, system_title=b"short", invocation_counter=1, key=bytes(16),
                authentication_key=bytes(16))


def test_the_wrong_broadcast_or_unicast_key_fails_the_tag():
    keys = SecurityKeys(bytes(16), bytes(16), broadcast_key=b"\x01" * 16)
    broadcast = cipher_apdu(b"\x0f\x00\x00\x00\x01\x00\x00", keys=keys, system_title=bytes(8),
                            invocation_counter=1, security_control=0x70, general=True)
    assert decipher_apdu(broadcast, keys=keys).apdu == b"\x0f\x00\x00\x00\x01\x00\x00"
    other = SecurityKeys(bytes(16), bytes(16), broadcast_key=b"\x02" * 16)
    with pytest.raises(DLMSSecurityError, match="tag"):
        decipher_apdu(broadcast, keys=other)


@given(key_sets, titles, counters, st.binary(min_size=8, max_size=64))
@settings(max_examples=50, deadline=None)
def test_hls_gmac_checks_what_it_computes(keys, title, counter, challenge):
    answer = hls_gmac(challenge, keys=keys, system_title=title, invocation_counter=counter)
    assert check_hls_gmac(answer, challenge, keys=keys, system_title=title) == counter
    with pytest.raises(DLMSSecurityError):
        check_hls_gmac(answer, challenge + b"x", keys=keys, system_title=title)


def test_keys_must_be_aes_128_and_stay_out_of_messages():
    with pytest.raises(ValueError) as info:
        SecurityKeys(b"\x11" * 15, b"\x22" * 16)
    assert "1111" not in str(info.value) and "\\x11" not in str(info.value)
    assert repr(SecurityKeys(b"\x11" * 16, b"\x22" * 16)) == "SecurityKeys()"


def test_memory_counters_hand_out_increasing_counters_and_remember_the_highest_accepted():
    store = MemoryInvocationCounters(outgoing={b"CLIENT01": 41})
    assert [store.next_outgoing(b"CLIENT01") for _ in range(3)] == [41, 42, 43]
    assert store.next_outgoing(b"OTHER001") == 1
    assert store.last_incoming(b"METER001") is None
    store.accept_incoming(b"METER001", 10)
    store.accept_incoming(b"METER001", 5)
    assert store.last_incoming(b"METER001") == 10
    exhausted = MemoryInvocationCounters(outgoing={b"X": 0xFFFFFFFF + 1})
    with pytest.raises(DLMSSecurityError, match="exhausted"):
        exhausted.next_outgoing(b"X")
