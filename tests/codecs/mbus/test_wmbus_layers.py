"""ELL, AFL and TPL headers field by field (vectors from the OMS examples as split in
lvogt/wireless-mbus-parser's tests, MIT, and from EN 13757-7's field tables)."""

from __future__ import annotations

import pytest

from gateway.codecs.mbus.afl import AuthenticationFragmentationLayer, decode_afl
from gateway.codecs.mbus.ell import ExtendedLinkLayer, decode_ell
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.tpl import LONG, NONE, SHORT, TPL_CI, decode_tpl


def test_afl_of_the_oms_profile_b_example_splits_into_its_fields():
    afl = decode_afl(bytes.fromhex("900F002C25B30A000021924D4F2FB66E01"))
    assert afl == AuthenticationFragmentationLayer(
        length=0x0F,
        fragment_control=0x2C00,
        message_control=0x25,
        message_counter=bytes.fromhex("B30A0000"),
        mac=bytes.fromhex("21924D4F2FB66E01"),
    )
    assert (afl.fragment_id, afl.more_fragments, afl.authentication_type, afl.counter) == (0, False, 5, 0x0AB3)
    assert afl.size == 17
    assert afl.mac_input(b"\x7a") == bytes.fromhex("25B30A00007A")


def test_afl_key_info_and_message_length_are_read_in_their_order():
    # FCL: KI, MCR, MAC, ML, MCL present; MCL: AES-CMAC 4 bytes.
    body = (0x3E00).to_bytes(2, "little") + b"\x24" + b"\x01\x02" + b"\x05\x00\x00\x00" + b"MACM" + b"\x30\x00"
    afl = decode_afl(bytes([0x90, len(body)]) + body)
    assert (afl.key_info, afl.counter, afl.mac, afl.message_length) == (b"\x01\x02", 5, b"MACM", b"\x30\x00")
    assert afl.mac_input(b"") == b"\x24\x05\x00\x00\x00\x30\x00"


def test_an_afl_mac_without_an_authentication_type_is_an_error():
    with pytest.raises(MBusFrameError, match="authentication type 0"):
        decode_afl(bytes.fromhex("9007") + (0x2400).to_bytes(2, "little") + b"\x00" + b"\x00" * 4)


def test_ell_ii_of_a_kamstrup_meter_splits_its_session_number():
    ell = decode_ell(bytes.fromhex("8D3050209CD621B006"))
    assert ell == ExtendedLinkLayer(0x8D, 0x30, 0x50, session_number=bytes.fromhex("209CD621"), payload_crc=0x06B0)
    assert (ell.encryption, ell.session, ell.session_time, ell.size) == (1, 0, 1927618, 9)
    assert ell.as_dict()["cc_flags"] == ["synchronous", "hop_count"]


def test_ell_iii_carries_the_address_of_the_other_party():
    ell = decode_ell(bytes.fromhex("8E80753A63665544330A31"))
    assert (ell.manufacturer, ell.address) == (0x633A, bytes.fromhex("665544330A31"))
    assert ell.as_dict()["manufacturer"] == "XYZ" and ell.as_dict()["id"] == "33445566"
    assert not ell.encrypted and ell.session is None


def test_ell_iv_has_address_session_and_crc():
    ell = decode_ell(bytes.fromhex("8F30502D2C692845631B16209CD621B006"))
    assert ell.address == bytes.fromhex("692845631B16") and ell.session_time == 1927618 and ell.size == 17


@pytest.mark.parametrize("ci, kind", sorted((ci, kind) for ci, (kind, _, _) in TPL_CI.items()))
def test_every_tpl_ci_has_the_header_of_its_kind(ci, kind):
    body = bytes([ci]) + bytes.fromhex("78563412 9315 33 03")[: 8 if kind == LONG else 0] + bytes.fromhex("2A 04 1005")
    tpl = decode_tpl(body)
    assert tpl.kind == kind and tpl.size == {NONE: 1, SHORT: 5, LONG: 13}[kind]
    if kind != NONE:
        assert (tpl.access_number, tpl.status, tpl.security_mode, tpl.encrypted_blocks) == (0x2A, 0x04, 5, 1)
    if kind == LONG:
        assert tpl.identification == "12345678" and tpl.manufacturer == 0x1593 and tpl.address[4:] == b"\x33\x03"


def test_configuration_field_bits_of_mode_5():
    tpl = decode_tpl(bytes.fromhex("7A 2A 00 F5 E5".replace(" ", "")))
    out = tpl.as_dict()
    assert (out["security_mode"], out["encrypted_blocks"]) == (5, 15)
    assert (out["bidirectional"], out["accessibility"], out["synchronous"]) == (True, True, True)


def test_mode_7_has_a_configuration_field_extension_with_kdf_and_key_id():
    tpl = decode_tpl(bytes.fromhex("7A7500200713"))
    assert (tpl.security_mode, tpl.encrypted_blocks, tpl.kdf_selection, tpl.key_id, tpl.size) == (7, 2, 1, 3, 6)
    with pytest.raises(MBusFrameError, match="extension missing"):
        decode_tpl(bytes.fromhex("7A75002007"))


def test_status_byte_flags_are_named():
    out = decode_tpl(bytes.fromhex("7A011D0000")).as_dict()
    assert out["status_flags"] == ["power_low", "permanent_error", "temporary_error"]
    assert out["application_status"] == "application busy"


@pytest.mark.parametrize("decoder, data", [(decode_ell, b""), (decode_afl, b"\x90"), (decode_tpl, b"\x72\x01")])
def test_truncated_headers_are_frame_errors(decoder, data):
    with pytest.raises(MBusFrameError):
        decoder(data)
