"""ACSE APDUs (Green Book 9.4.4, BER): tolerant of the length forms real meters send, exact on
what it keeps, and strict on structure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.acse import AARE, AARQ, RLRE, RLRQ, AuthenticationValue
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.xdlms import CipheredApdu, ConfirmedServiceError, InitiateRequest, InitiateResponse

AARE_ACCEPTED = bytes.fromhex("6129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F040000501F01F40007")


def long_form(raw: bytes) -> bytes:
    """Rewrite every BER length of an ACSE APDU in the two-byte long form (0x81 NN), as the
    gurux server does for some of them, down to the user-information octet string."""
    def rewrite(buf: bytes) -> bytes:
        out = bytearray()
        pos = 0
        while pos < len(buf):
            tag, length = buf[pos], buf[pos + 1]
            content = buf[pos + 2 : pos + 2 + length]
            if tag & 0x20 or tag in (0x60, 0x61, 0x62, 0x63):
                content = rewrite(content)
            out += bytes((tag, 0x81, len(content))) + content
            pos += 2 + length
        return bytes(out)
    return rewrite(raw)


def test_an_aare_with_long_form_lengths_everywhere_decodes_like_the_canonical_one():
    sloppy = long_form(AARE_ACCEPTED)
    assert sloppy != AARE_ACCEPTED and len(sloppy) > len(AARE_ACCEPTED)
    assert decode_apdu(sloppy) == decode_apdu(AARE_ACCEPTED)
    assert decode_apdu(sloppy).to_bytes() == AARE_ACCEPTED


def test_multi_byte_length_forms_are_accepted():
    # The outer length as 0x82 0x00 0x29 and the user-information octet string as 0x84 ...
    raw = bytes.fromhex("618200" "2F" "A109060760857405080101A203020100A305A103020100BE82001404840000000E"
                        "0800065F1F040000501F01F40007")
    assert decode_apdu(raw) == decode_apdu(AARE_ACCEPTED)


def test_elements_in_any_order_are_accepted_and_re_encoded_in_tag_order():
    shuffled = bytes.fromhex("6129" "A305A103020100" "A109060760857405080101" "A203020100"
                             "BE10040E0800065F1F040000501F01F40007")
    assert decode_apdu(shuffled).to_bytes() == AARE_ACCEPTED


def test_fields_dlms_does_not_use_are_kept_and_re_encoded():
    # AARQ with called-AP-title [2] and calling-AE-invocation-id [9] (a user id).
    raw = bytes.fromhex("601E" "A109060760857405080101" "A2060404AABBCCDD" "A903020105"
                        "BE0404030000")
    with pytest.raises(DLMSFrameError, match="runs past"):
        decode_apdu(raw)  # the user-information octet string is longer than its container
    raw = bytes.fromhex("601D" "A109060760857405080101" "A2060404AABBCCDD" "A903020105" "BE03040100")
    aarq = decode_apdu(raw)
    assert aarq.other == ((0xA2, bytes.fromhex("0404AABBCCDD")), (0xA9, bytes.fromhex("020105")))
    assert aarq.user_information == b"\x00"  # not an xDLMS initiate: kept as bytes
    assert aarq.to_bytes() == raw


@pytest.mark.parametrize(
    "hexed,match",
    [
        ("6105A203020100", "without application-context-name"),
        ("6108A103060100A10100", "twice"),  # two application context names
        ("6003A10406", "runs past"),
        ("6129A109060760857405080101A203020100A305A303020100BE10040E0800065F1F040000501F01F40007",
         "acse-service-user or -provider"),
        ("600DA109060760857405080101BE00", "user-information"),
        ("6080", "definite length"),
        ("600EA1090607608574050801011F0100", "multi-byte"),
    ],
)
def test_malformed_acse_is_refused(hexed, match):
    with pytest.raises(DLMSFrameError, match=match):
        decode_apdu(bytes.fromhex(hexed))


def test_the_user_information_error_offset_points_into_the_whole_apdu():
    raw = bytearray(AARE_ACCEPTED)
    raw[-9] = 0x6F  # conformance header byte inside the InitiateResponse
    with pytest.raises(DLMSFrameError) as info:
        decode_apdu(bytes(raw))
    assert info.value.field == "conformance"


def test_rlre_with_reason_and_ciphered_user_information():
    ciphered = CipheredApdu(0x28, 0x30, 7, bytes(20))
    rlre = RLRE(0, ciphered)
    assert decode_apdu(rlre.to_bytes()) == rlre
    assert decode_apdu(bytes.fromhex("6300")) == RLRE(None)
    assert RLRQ(1).to_bytes() == bytes.fromhex("6203800101")


def test_names_of_contexts_mechanisms_results_and_diagnostics():
    aare = AARE(1, 1, 13, mechanism_name=acse.mechanism_name(5))
    assert aare.description == "rejected-permanent (acse-service-user: authentication-failure)"
    assert aare.mechanism_id == 5 and acse.MECHANISMS[5] == "HLS-GMAC"
    assert AARE(2, 2, 2).description == "rejected-transient (acse-service-provider: no-common-acse-version)"
    assert AARQ(application_context_name=b"\x2b\x06").context_id is None


def test_authentication_values_of_other_choices_are_kept():
    aarq = AARQ(calling_authentication_value=AuthenticationValue(b"\x03\x01", choice=1))
    assert decode_apdu(aarq.to_bytes()).calling_authentication_value == AuthenticationValue(b"\x03\x01", 1)


titles = st.none() | st.binary(min_size=8, max_size=8)
initiates = st.builds(InitiateRequest, st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFF))
responses = st.builds(InitiateResponse, st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFF))
auth = st.none() | st.builds(AuthenticationValue, st.binary(max_size=64), st.integers(0, 3))
contexts = st.integers(1, 4).map(acse.application_context_name)
mechanisms = st.none() | st.integers(0, 7).map(acse.mechanism_name)
requirements = st.none() | st.just(acse.ACSE_REQUIREMENTS_AUTHENTICATION)


@given(st.builds(AARQ, contexts, st.none() | initiates | st.builds(CipheredApdu, st.just(0x21), st.just(0x30),
                                                                    st.integers(0, 2**32 - 1), st.binary(max_size=40)),
                 titles, mechanisms, auth, requirements, st.none() | st.just(b"\x07\x80")))
@settings(max_examples=200, deadline=None)
def test_aarq_round_trips(aarq):
    assert decode_apdu(aarq.to_bytes()) == aarq


@given(st.builds(AARE, st.integers(0, 2), st.integers(1, 2), st.integers(0, 14), contexts,
                 st.none() | responses | st.builds(ConfirmedServiceError, st.integers(0, 255), st.integers(0, 9),
                                                   st.integers(0, 255)),
                 titles, mechanisms, auth, requirements))
@settings(max_examples=200, deadline=None)
def test_aare_round_trips(aare):
    assert decode_apdu(aare.to_bytes()) == aare
