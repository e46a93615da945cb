"""Whole telegrams: ELL, AFL, TPL and their security over the corpus, the OMS Annex N
examples and telegrams built from first principles; every refusal by its reason."""

from __future__ import annotations

import pytest

from gateway.codecs.mbus.application import manufacturer_letters
from gateway.codecs.mbus.errors import (
    MBusAuthenticationError,
    MBusError,
    MBusFrameError,
    MBusNoKeyError,
    MBusPlaintextError,
    MBusSecurityError,
    MBusUnsupportedSecurityError,
)
from gateway.codecs.mbus.telegram import decode_telegram
from gateway.codecs.mbus.wireless_link import FrameFormat, decode_frame
from gateway.codecs.mbus.wmbus_security import AesKey

from . import wmbus_builders as build
from .wmbus_corpus import (
    ELL_CIPHERTEXT,
    MODE5_CIPHERTEXT,
    STORED_DECRYPTED,
    aes_removed,
    by_crypto,
    oms_examples,
    wireless,
)

OMS = oms_examples()["examples"]
KEY = bytes(range(16))
CORPUS_MODE5 = by_crypto(MODE5_CIPHERTEXT)
CORPUS_ELL = by_crypto(ELL_CIPHERTEXT)
STORED = tuple(t for note in STORED_DECRYPTED for t in by_crypto(note))


def key_of(telegram) -> AesKey:
    return AesKey.from_hex(telegram.key_hex)


def decode_corpus(telegram, **kwargs):
    return decode_telegram(telegram.data, frame_format="auto", keep_trailing=True, **kwargs)


# --- the corpus --------------------------------------------------------------------------


def test_the_corpus_has_23_mode5_and_one_ell_ciphertext_with_keys():
    assert len(CORPUS_MODE5) == 23
    assert len(CORPUS_ELL) == 1
    assert len(aes_removed()) == 4


@pytest.mark.parametrize("telegram", CORPUS_MODE5, ids=lambda t: t.id)
def test_every_mode5_ciphertext_of_the_corpus_decrypts_to_2f2f(telegram):
    decoded = decode_corpus(telegram, key=key_of(telegram))
    assert decoded.security.mode == 5
    assert decoded.security.decrypted_by == "key"
    assert decoded.security.encrypted_bytes == 16 * decoded.tpl.encrypted_blocks > 0
    assert decoded.content == "records"


def test_the_mode5_compact_frame_with_long_header_decrypts_too():
    telegram = next(t for t in wireless() if t.record["id"] == "driver-xmq:drivers/src/engelmann_faw.xmq:129")
    decoded = decode_corpus(telegram, key=key_of(telegram))
    assert (decoded.tpl.ci, decoded.tpl.kind, decoded.content) == (0x73, "long", "compact")
    assert decoded.security.encrypted_bytes == 96


def test_the_ell_aes_ctr_ciphertext_decrypts_and_its_payload_crc_checks():
    (telegram,) = CORPUS_ELL
    decoded = decode_corpus(telegram, key=key_of(telegram))
    assert decoded.ell.ci == 0x8D and decoded.ell.encryption == 1
    assert decoded.security.ell_encrypted and decoded.security.decrypted_by == "key"
    assert decoded.ci == 0x78 and decoded.application_data[:3] == bytes.fromhex("02FF20")


@pytest.mark.parametrize("telegram", aes_removed(), ids=lambda t: t.id)
def test_simulation_aes_removed_telegrams_are_refused_when_a_key_is_configured(telegram):
    with pytest.raises(MBusSecurityError) as info:
        decode_corpus(telegram, key=key_of(telegram))
    assert isinstance(info.value, (MBusAuthenticationError, MBusPlaintextError))
    assert telegram.key_hex.lower() not in str(info.value).lower()


@pytest.mark.parametrize("telegram", STORED, ids=lambda t: t.id)
def test_telegrams_stored_decrypted_decode_with_decrypted_and_are_refused_without(telegram):
    decoded = decode_corpus(telegram, decrypted=True)
    assert decoded.security.decrypted_by == "receiver"
    assert decoded.security.mac_verified is None
    with pytest.raises(MBusNoKeyError):
        decode_corpus(telegram)


def test_ell_telegrams_stored_decrypted_pass_their_payload_crc_and_fail_it_when_altered():
    for telegram in by_crypto(STORED_DECRYPTED[1]):
        decoded = decode_corpus(telegram, decrypted=True)
        assert decoded.ell.encrypted and decoded.security.decrypted_by == "receiver"
        altered = bytearray(decoded.frame.to_bytes())
        altered[-1] ^= 0x01
        with pytest.raises(MBusAuthenticationError, match="marked decrypted"):
            decode_telegram(bytes(altered), decrypted=True)


@pytest.mark.parametrize("telegram", [t for t in wireless() if t.crypto == "none"], ids=lambda t: t.id)
def test_plaintext_telegrams_decode_without_key_and_are_refused_with_one(telegram):
    decoded = decode_corpus(telegram)
    assert not decoded.security.encrypted and decoded.security.decrypted_by is None
    with pytest.raises(MBusPlaintextError, match="not encrypted but a key is configured"):
        decode_corpus(telegram, key=AesKey(KEY))


@pytest.mark.parametrize("mode", [16, 21, 24, 29])
def test_unsupported_security_modes_are_refused_with_or_without_key(mode):
    telegram = next(t for t in wireless() if t.crypto == f"mode {mode} ciphertext (no key)")
    with pytest.raises(MBusNoKeyError, match=f"security mode {mode}"):
        decode_corpus(telegram)
    with pytest.raises(MBusUnsupportedSecurityError, match=f"security mode {mode}"):
        decode_corpus(telegram, key=AesKey(KEY))


def test_manufacturer_specific_ci_is_kept_raw_and_refused_with_a_key():
    telegram = next(t for t in wireless() if t.crypto == "no-TPL-config (CI 0xA2)")
    decoded = decode_corpus(telegram)
    assert decoded.ci == 0xA2 and decoded.content is None and decoded.tpl is None
    assert decoded.application_data == decode_frame(telegram.data).data
    with pytest.raises(MBusUnsupportedSecurityError, match="manufacturer-specific CI 0xA2"):
        decode_corpus(telegram, key=AesKey(KEY))


# --- OMS Volume 2 Annex N ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OMS))
def test_oms_annex_n_examples_decrypt_and_carry_the_published_volume(name):
    example = OMS[name]
    key = AesKey.from_hex(example["key"]) if example["key"] else None
    decoded = decode_telegram(bytes.fromhex(example["hex"]), key=key, frame_format="auto")
    assert decoded.frame.frame_format.value == example["frame_format"]
    assert decoded.security.mode == example["security_mode"]
    meter = example["meter"]
    assert manufacturer_letters(decoded.meter_manufacturer) == meter["manufacturer"]
    assert decoded.meter_address[:4][::-1].hex() == meter["id"]
    assert decoded.meter_address[4:] == bytes([meter["version"], meter["device_type"]])
    first = example["records"][0]
    if first.get("unit") == "m3":
        # DIF 0x0B/0x0C (6/8 BCD digits), VIF 0x13/0x14 (litres / 10 litres): the published volume.
        dif, vif = decoded.application_data[0], decoded.application_data[1]
        assert dif in (0x0B, 0x0C) and vif in (0x13, 0x14)
        digits = decoded.application_data[2 : 2 + {0x0B: 3, 0x0C: 4}[dif]]
        scale = {0x13: 3, 0x14: 2}[vif]
        text = digits[::-1].hex().lstrip("0") or "0"
        assert f"{text[:-scale]}.{text[-scale:]}" == first["value"]


@pytest.mark.parametrize("name", ["security_profile_b", "radio_adapter_profile_b"])
def test_oms_mode7_examples_verify_their_afl_mac_with_the_derived_key(name):
    example = OMS[name]
    decoded = decode_telegram(bytes.fromhex(example["hex"]), key=AesKey.from_hex(example["key"]), frame_format="a")
    assert decoded.afl.counter == example["message_counter"]
    assert decoded.afl.mac.hex() == example["mac"]
    assert decoded.security.mac_verified is True
    assert decoded.tpl.kdf_selection == 1


@pytest.mark.parametrize("name", ["security_profile_a", "security_profile_b", "radio_adapter_profile_b", "partial_encryption"])
def test_oms_examples_with_a_wrong_key_are_refused_without_showing_the_key(name):
    wrong = "000102030405060708090A0B0C0D0E0E"
    with pytest.raises(MBusAuthenticationError) as info:
        decode_telegram(bytes.fromhex(OMS[name]["hex"]), key=AesKey.from_hex(wrong), frame_format="a")
    assert wrong.lower() not in str(info.value).lower() and wrong.lower() not in repr(info.value).lower()


@pytest.mark.parametrize("name", ["security_profile_b", "radio_adapter_profile_b"])
def test_a_flipped_ciphertext_byte_of_a_mode7_example_fails_the_mac_before_decryption(name):
    example = OMS[name]
    frame = decode_frame(bytes.fromhex(example["hex"]), frame_format="a")
    stripped = bytearray(frame.to_bytes())
    stripped[-3] ^= 0x01  # inside the encrypted blocks; the CRCs are recomputed by to_bytes("a")
    altered = decode_frame(bytes(stripped)).to_bytes(FrameFormat.A)
    with pytest.raises(MBusAuthenticationError, match="MAC") as info:
        decode_telegram(altered, key=AesKey.from_hex(example["key"]), frame_format="a")
    assert info.value.field == "AFL.MAC"


def test_the_oms_partial_encryption_example_keeps_the_plaintext_after_the_encrypted_block():
    example = OMS["partial_encryption"]
    decoded = decode_telegram(bytes.fromhex(example["hex"]), key=AesKey.from_hex(example["key"]), frame_format="a")
    assert decoded.security.encrypted_bytes == 16
    assert decoded.application_data.endswith(bytes.fromhex("0CFD1078563412"))  # customer location 12345678


# --- built from first principles ----------------------------------------------------------


def test_a_mode7_telegram_built_from_the_formulas_decodes():
    decoded = decode_telegram(build.mode7_telegram(KEY), key=AesKey(KEY))
    assert decoded.security.mode == 7 and decoded.security.mac_verified
    assert decoded.application_data.startswith(build.RECORDS)


def test_a_mode7_telegram_with_a_forged_mac_is_refused_at_the_mac():
    forged = build.mode7_telegram(KEY, mac_key=bytes(16))
    with pytest.raises(MBusAuthenticationError) as info:
        decode_telegram(forged, key=AesKey(KEY))
    assert info.value.field == "AFL.MAC"


@pytest.mark.parametrize("counter", [0, 1, 0xFFFFFFFF])
def test_mode7_keys_change_with_the_message_counter(counter):
    decoded = decode_telegram(build.mode7_telegram(KEY, counter=counter), key=AesKey(KEY))
    assert decoded.afl.counter == counter
    replayed_counter = bytearray(build.mode7_telegram(KEY, counter=counter))
    replayed_counter[18] ^= 0x01  # first byte of AFL.MCR
    with pytest.raises(MBusAuthenticationError):
        decode_telegram(bytes(replayed_counter), key=AesKey(KEY))


def test_mode7_without_key_is_refused_and_decrypted_needs_2f2f():
    telegram = build.mode7_telegram(KEY)
    with pytest.raises(MBusNoKeyError, match="security mode 7"):
        decode_telegram(telegram)
    with pytest.raises(MBusAuthenticationError, match="marked decrypted"):
        decode_telegram(telegram, decrypted=True)


def test_a_mode5_telegram_built_from_the_formulas_decodes_and_a_plaintext_one_is_refused():
    decoded = decode_telegram(build.mode5_telegram(KEY), key=AesKey(KEY))
    assert decoded.application_data.startswith(build.RECORDS)
    with pytest.raises(MBusAuthenticationError, match="2F2F"):
        decode_telegram(build.mode5_telegram(KEY, plaintext=True), key=AesKey(KEY))
    assert decode_telegram(build.mode5_telegram(KEY, plaintext=True), decrypted=True).security.decrypted_by == "receiver"


def test_an_ell_ctr_telegram_built_from_the_formulas_decodes_and_a_wrong_key_fails_its_crc():
    telegram = build.ell_ctr_telegram(KEY)
    decoded = decode_telegram(telegram, key=AesKey(KEY))
    assert decoded.ci == 0x78 and decoded.application_data == build.RECORDS
    assert decoded.ell.session == 3 and decoded.ell.session_time == 0x12345
    with pytest.raises(MBusAuthenticationError, match="payload CRC"):
        decode_telegram(telegram, key=AesKey(bytes(16)))


def test_the_ell_counter_block_ignores_the_hop_count_and_repeated_access_bits():
    telegram = bytearray(build.ell_ctr_telegram(KEY, cc=0x20))
    telegram[11] = 0x20 | 0x10 | 0x02  # a repeater set H and R after the meter encrypted
    assert decode_telegram(bytes(telegram), key=AesKey(KEY)).ell.cc == 0x32


def test_key_and_decrypted_together_is_a_usage_error():
    with pytest.raises(ValueError):
        decode_telegram(build.mode5_telegram(KEY), key=AesKey(KEY), decrypted=True)


def test_a_fragmented_afl_message_is_refused():
    telegram = bytearray(build.mode7_telegram(KEY))
    telegram[16] |= 0x40  # FCL high byte: more fragments
    with pytest.raises(MBusFrameError, match="fragment"):
        decode_telegram(bytes(telegram), key=AesKey(KEY))


def test_an_afl_whose_length_disagrees_with_its_fields_is_refused():
    telegram = bytearray(build.mode7_telegram(KEY))
    telegram[14] = 0x10  # AFL.L one too long
    with pytest.raises(MBusFrameError, match="AFL") as info:
        decode_telegram(bytes(telegram), key=AesKey(KEY))
    assert info.value.field == "AFL.L"


def test_mode5_announcing_more_blocks_than_follow_is_a_frame_error():
    telegram = bytearray(build.mode5_telegram(KEY))
    telegram[13] = 0x50  # configuration low byte: 5 blocks
    with pytest.raises(MBusFrameError, match="5 encrypted blocks announced"):
        decode_telegram(bytes(telegram), key=AesKey(KEY))


@pytest.mark.parametrize("cut", range(11, 40))
def test_a_truncated_secured_telegram_raises_only_codec_errors(cut):
    telegram = build.mode7_telegram(KEY)
    body = bytes([cut - 1]) + telegram[1:cut]
    with pytest.raises(MBusError):
        decode_telegram(body, key=AesKey(KEY))


def test_json_has_the_layers_and_the_security_summary():
    decoded = decode_telegram(build.mode7_telegram(KEY), key=AesKey(KEY))
    out = decoded.as_dict()
    assert list(out) == ["link", "ell", "afl", "tpl", "security"]
    assert out["tpl"]["security_mode"] == 7 and out["tpl"]["kdf"] == 1
    assert out["afl"]["authentication"] == "AES-CMAC-128 (8 bytes)"
    assert out["security"] == {
        "mode": 7,
        "name": "AES-128-CBC, IV 0, ephemeral key",
        "ell_encrypted": False,
        "encrypted": True,
        "decrypted": True,
        "decrypted_by": "key",
        "mac_verified": True,
        "encrypted_bytes": 32,
    }


@pytest.mark.parametrize("telegram", CORPUS_MODE5 + CORPUS_ELL + STORED[::4], ids=lambda t: t.id)
def test_a_telegram_with_format_a_or_b_crc_blocks_decodes_as_the_stripped_one(telegram):
    options = {"key": key_of(telegram)} if telegram in CORPUS_MODE5 + CORPUS_ELL else {"decrypted": True}
    stripped = decode_corpus(telegram, **options)
    for fmt in (FrameFormat.A, FrameFormat.B):
        on_air = stripped.frame.to_bytes(fmt) if len(stripped.frame.to_bytes()) + 4 <= 256 else None
        if on_air is None:
            continue
        again = decode_telegram(on_air, frame_format=fmt, **options)
        assert again.application_data == stripped.application_data
        assert {k: v for k, v in again.as_dict().items() if k != "link"} == {
            k: v for k, v in stripped.as_dict().items() if k != "link"
        }


@pytest.mark.parametrize("name", sorted(OMS))
def test_oms_annex_n_examples_decode_to_the_published_records(name):
    from gateway.codecs.mbus.wireless import WMBusDecoder
    from gateway.model import value_text

    example = OMS[name]
    key = AesKey.from_hex(example["key"]) if example["key"] else None
    decoded = WMBusDecoder().decode(bytes.fromhex(example["hex"]), key=key, frame_format="auto")
    got = [(value_text(r.value).replace("T", " ")[:16], r.unit, r.storage) for r in decoded.records]
    want = [(r["value"], {"m3": "m^3"}.get(r.get("unit"), r.get("unit")), r.get("storage", 0)) for r in example["records"]]
    assert [(v, s) for v, _, s in got] == [(v, s) for v, _, s in want]
    assert [u for _, u, _ in got if u] == [u for _, u, _ in want if u]
    meter = example["meter"]
    assert decoded.device == f"{meter['manufacturer']}-{meter['id']}-{meter['version']:02x}-{meter['device_type']:02x}"
