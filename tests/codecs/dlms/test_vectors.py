"""The published DLMS/COSEM vectors (tests/data/dlms-vectors): every APDU, A-XDR, ACSE, GCM and
HLS-GMAC vector decoded and compared field by field with what its description says,
re-encoded to the same bytes, and refused when truncated, followed by junk or altered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.axdr import Data, DataType, decode_data
from gateway.codecs.dlms.dates import ClockStatus, CosemDateTime
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError, DLMSSecurityError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import (
    SecurityKeys,
    check_hls_gmac,
    cipher_apdu,
    decipher_apdu,
    decrypt,
    encrypt,
    hls_gmac,
)
from gateway.codecs.dlms.selective import CLOCK_TIME, RangeDescriptor
from gateway.codecs.dlms.services import (
    AttributeDescriptor,
    AttributeWithSelection,
    DataNotification,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    InvokeIdAndPriority,
)
from gateway.codecs.dlms.xdlms import (
    CipheredApdu,
    ConfirmedServiceError,
    InitiateRequest,
    InitiateResponse,
    conformance_names,
)

VECTORS_FILE = Path(__file__).parents[2] / "data" / "dlms-vectors" / "vectors.json"
VECTORS = {v["id"]: v for v in json.loads(VECTORS_FILE.read_text())["vectors"]}
HIGH_CONFIRMED_1 = InvokeIdAndPriority(0xC1)
CLOCK = Obis(0, 0, 1, 0, 0, 255)


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


def info_field(frame: bytes) -> bytes:
    """The APDU inside an HDLC I-frame of the vectors: after the LLC header, before FCS and flag."""
    for llc in (b"\xe6\xe6\x00", b"\xe6\xe7\x00"):
        at = frame.find(llc)
        if at > 0:
            return frame[at + 3 : -3]
    raise AssertionError("no LLC header in the frame")


#: Every vector that carries an APDU, as (vector id, field) -> the bytes.
APDUS: dict[str, bytes] = {}
for _id, _v in VECTORS.items():
    for _field in ("apdu", "full_apdu", "full_aarq", "glo_get_request_apdu", "aare_with_stoc", "aarq_with_ctos",
                   "plaintext"):
        if _field in _v:
            APDUS[f"{_id}.{_field}"] = hexbytes(_v[_field])
    # HDLC I-frames (the SNRM and UA carry no APDU): their information field is an APDU.
    if "frame" in _v and _v["id"].startswith("hdlc_iframe"):
        APDUS[f"{_id}.info"] = info_field(hexbytes(_v["frame"]))


def test_the_vectors_are_all_there():
    assert len(VECTORS) == 19
    # 14 vectors hold 20 APDUs (two HDLC I-frames among them); the rest are HDLC frames and data.
    assert len(APDUS) == 20


# --- field by field, against each vector's description ---------------------------------------

EXPECTED = {
    "apdu_get_request_normal.apdu": GetRequestNormal(
        AttributeDescriptor(1, Obis(0, 0, 43, 1, 0, 255), 2), None, HIGH_CONFIRMED_1
    ),
    "apdu_get_request_next.apdu": GetRequestNext(1, HIGH_CONFIRMED_1),
    "apdu_get_request_with_list.apdu": GetRequestWithList(
        (
            AttributeWithSelection(AttributeDescriptor(1, Obis(0, 0, 42, 0, 0, 255), 2)),
            AttributeWithSelection(AttributeDescriptor(8, CLOCK, 2)),
        ),
        HIGH_CONFIRMED_1,
    ),
    "axdr_initiate_request.apdu": InitiateRequest(0x007E1F, 0x04B0, 6),
    "axdr_initiate_response.apdu": InitiateResponse(0x00501F, 0x01F4, 6, 0x0007),
    "gcm_glo_initiate_request_greenbook.plaintext": InitiateRequest(
        0x007E1F, 0x04B0, 6, dedicated_key=hexbytes("00112233445566778899AABBCCDDEEFF")
    ),
    "gcm_get_request_clock.plaintext": GetRequestNormal(AttributeDescriptor(8, CLOCK, 2), None,
                                                        InvokeIdAndPriority(0x00)),
    "acse_rlrq_normal.apdu": acse.RLRQ(reason=0),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_apdu_vector_decodes_to_what_its_description_says(key):
    assert decode_apdu(APDUS[key]) == EXPECTED[key]
    assert EXPECTED[key].to_bytes() == APDUS[key]


def test_initiate_request_conformance_names_match_the_green_book_bits():
    initiate = decode_apdu(APDUS["axdr_initiate_request.apdu"])
    assert conformance_names(initiate.proposed_conformance) == (
        "priority-mgmt-supported", "attribute0-supported-with-get", "block-transfer-with-get-or-read",
        "block-transfer-with-set-or-write", "block-transfer-with-action", "multiple-references", "get", "set",
        "selective-access", "event-notification", "action",
    )


def test_range_descriptor_vector_reads_as_clock_range_with_dst_and_deviation_kept():
    request = decode_apdu(APDUS["apdu_get_request_range_descriptor.apdu"])
    assert request.attribute == AttributeDescriptor(7, Obis(1, 0, 99, 1, 0, 255), 2)
    assert request.invoke == HIGH_CONFIRMED_1
    selection = RangeDescriptor.from_access(request.access)
    assert selection.restricting_object == CLOCK_TIME
    assert selection.selected_values == ()
    start = CosemDateTime.from_bytes(selection.from_value.value)
    end = CosemDateTime.from_bytes(selection.to_value.value)
    # 2017-10-01 (a Sunday, day 7) 00:00 and 01:00, deviation -60, daylight saving active.
    assert (start.year, start.month, start.day, start.day_of_week, start.hour) == (2017, 10, 1, 7, 0)
    assert (end.hour, end.minute, end.second, end.hundredths) == (1, 0, 0, 0)
    assert start.deviation == end.deviation == -60
    assert start.status == ClockStatus.DAYLIGHT_SAVING_ACTIVE
    assert start.to_datetime().isoformat() == "2017-10-01T00:00:00+01:00"
    # dlms-cosem loses the weekday and the DST bit on re-encoding; this codec keeps them.
    assert RangeDescriptor.by_time(start, end).to_access() == request.access


def test_ln_lls_aarq_vector_carries_context_mechanism_password_and_initiate():
    aarq = decode_apdu(APDUS["acse_aarq_lls.apdu"])
    assert aarq.context_id == acse.LOGICAL_NAME
    assert aarq.mechanism_id == acse.MECHANISM_LLS
    assert aarq.calling_authentication_value.value == b"12345678"
    assert aarq.sender_acse_requirements == acse.ACSE_REQUIREMENTS_AUTHENTICATION
    assert aarq.user_information == InitiateRequest(0x007E1F, 0x04B0, 6)
    assert "12345678" not in repr(aarq)


def test_accepted_aare_vector():
    aare = decode_apdu(APDUS["acse_aare_accepted.apdu"])
    assert aare.accepted and aare.result_source == acse.ACSE_SERVICE_USER and aare.diagnostic == 0
    assert aare.context_id == acse.LOGICAL_NAME
    assert aare.user_information == InitiateResponse(0x00501F, 0x01F4, 6, 0x0007)
    assert aare.description == "accepted (acse-service-user: null)"


def test_rejected_aare_vector_carries_the_initiate_error_as_data():
    aare = decode_apdu(APDUS["acse_aare_rejected_dlms_version.apdu"])
    assert aare.result == 1 and not aare.accepted
    assert aare.user_information == ConfirmedServiceError(1, 6, 1)
    assert aare.user_information.description == "initiateError: initiate dlms-version-too-low"
    assert aare.description == "rejected-permanent (acse-service-user: no-reason-given)"


def test_hdlc_aarq_and_aare_info_fields_are_an_ln_association_without_security():
    aarq = decode_apdu(APDUS["hdlc_iframe_aarq.info"])
    aare = decode_apdu(APDUS["hdlc_iframe_aare.info"])
    assert aarq.mechanism_name is None and aarq.user_information.client_max_receive_pdu_size == 0xFFFF
    assert aare.accepted and aare.user_information.server_max_receive_pdu_size == 0x04C8
    assert aarq.user_information.proposed_conformance == aare.user_information.negotiated_conformance == 0x001E1D


def test_data_notification_vector():
    note = decode_apdu(APDUS["apdu_data_notification.apdu"])
    assert note == DataNotification(
        0x000001DB,
        Data(DataType.OCTET_STRING, hexbytes("125A8591360000000049000000110000000A5A8513D014800000000D0000000A0100")),
        None,
    )
    assert note.long_invoke_id == 0x1DB


def test_profile_buffer_vector_has_24_hourly_rows_with_exact_values():
    raw = hexbytes(VECTORS["axdr_profile_generic_buffer_24rows"]["data"])
    assert raw[0] == 0x00  # Get-Data-Result: data
    buffer = decode_data(raw[1:])
    assert buffer.to_bytes() == raw[1:]
    assert buffer.type is DataType.ARRAY and len(buffer.value) == 24
    for hour, row in enumerate(buffer.value):
        stamp, status, value = row.value
        when = CosemDateTime.from_bytes(stamp.value)
        assert (when.year, when.month, when.day, when.hour, when.minute) == (2018, 2, 12, hour, 0)
        assert when.deviation is None and when.clock_status == 0
        assert status == Data(DataType.UNSIGNED, 0)
        assert value == Data(DataType.DOUBLE_LONG_UNSIGNED, 100_000 + 416 * hour)


# --- the five ways, for every APDU vector ------------------------------------------------------


@pytest.mark.parametrize("key", sorted(APDUS))
def test_every_apdu_vector_reencodes_to_the_same_bytes(key):
    assert decode_apdu(APDUS[key]).to_bytes() == APDUS[key]


@pytest.mark.parametrize("key", sorted(APDUS))
def test_every_truncation_of_an_apdu_vector_is_refused(key):
    raw = APDUS[key]
    for size in range(len(raw)):
        with pytest.raises(DLMSFrameError):
            decode_apdu(raw[:size])


@pytest.mark.parametrize("key", sorted(APDUS))
def test_apdu_vector_with_trailing_junk_is_refused_at_the_junk(key):
    raw = APDUS[key]
    with pytest.raises(DLMSFrameError) as info:
        decode_apdu(raw + b"\x00\x42")
    # ACSE APDUs find the junk after their outer length; others at the end of the APDU.
    assert info.value.offset == len(raw)


@pytest.mark.parametrize("key", sorted(APDUS))
def test_apdu_vector_with_an_unknown_tag_is_refused(key):
    raw = bytearray(APDUS[key])
    raw[0] = 0x7F
    with pytest.raises(DLMSFrameError, match="unknown APDU tag") as info:
        decode_apdu(bytes(raw))
    assert info.value.offset == 0


@pytest.mark.parametrize("key", sorted(APDUS))
def test_flipping_any_byte_of_an_apdu_vector_is_refused_or_decoded_faithfully(key):
    # An APDU has no checksum: a flipped value byte is another valid APDU. What must never
    # happen is a stray exception, or a decode that silently changes what was received.
    raw = APDUS[key]
    refused = 0
    for at in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            altered = bytearray(raw)
            altered[at] ^= mask
            try:
                apdu = decode_apdu(bytes(altered))
            except DLMSError:
                refused += 1
                continue
            again = apdu.to_bytes()
            assert decode_apdu(again) == apdu
            # Only non-canonical forms (long-form lengths, booleans other than 0/1) may re-encode differently.
            assert again == bytes(altered) or len(again) <= len(altered)
    assert refused > 0


# --- AES-GCM, suite 0 ---------------------------------------------------------------------------

GCM_VECTORS = ["gcm_glo_initiate_request_greenbook", "gcm_get_request_clock"]
GCM_APDU_FIELD = {"gcm_glo_initiate_request_greenbook": "full_apdu", "gcm_get_request_clock": "glo_get_request_apdu"}


def keys_of(vector) -> SecurityKeys:
    return SecurityKeys(hexbytes(vector["encryption_key"]), hexbytes(vector["authentication_key"]))


@pytest.mark.parametrize("vid", GCM_VECTORS)
def test_gcm_vector_ciphertext_and_tag_are_reproduced(vid):
    v = VECTORS[vid]
    payload = encrypt(
        hexbytes(v["plaintext"]),
        security_control=int(v["security_control"], 16),
        system_title=hexbytes(v["system_title"]),
        invocation_counter=int(v["invocation_counter"], 16),
        key=hexbytes(v["encryption_key"]),
        authentication_key=hexbytes(v["authentication_key"]),
    )
    assert payload == hexbytes(v["ciphertext_and_tag"])
    assert len(payload) - len(hexbytes(v["plaintext"])) == v["tag_len"] == 12


@pytest.mark.parametrize("vid", GCM_VECTORS)
def test_gcm_vector_apdu_is_the_service_specific_ciphered_form(vid):
    v = VECTORS[vid]
    raw = hexbytes(v[GCM_APDU_FIELD[vid]])
    apdu = decode_apdu(raw)
    assert isinstance(apdu, CipheredApdu)
    assert apdu.plain_tag == hexbytes(v["plaintext"])[0] and not apdu.dedicated
    assert apdu.security_control == 0x30 and apdu.invocation_counter == 0x01234567
    assert apdu.ciphertext == hexbytes(v["ciphertext_and_tag"])
    ciphered = cipher_apdu(hexbytes(v["plaintext"]), keys=keys_of(v), system_title=hexbytes(v["system_title"]),
                           invocation_counter=0x01234567)
    assert ciphered == apdu and ciphered.to_bytes() == raw
    plain = decipher_apdu(apdu, keys=keys_of(v), system_title=hexbytes(v["system_title"]))
    assert plain.apdu == hexbytes(v["plaintext"])
    assert (plain.invocation_counter, plain.security_control) == (0x01234567, 0x30)


def test_green_book_iv_and_aad_are_what_the_vector_lists():
    v = VECTORS["gcm_glo_initiate_request_greenbook"]
    assert hexbytes(v["system_title"]) + hexbytes(v["invocation_counter"]) == hexbytes(v["iv"])
    assert bytes([0x30]) + hexbytes(v["authentication_key"]) == hexbytes(v["aad"])


def test_ciphered_aarq_vector_carries_the_ciphered_initiate_request():
    v = VECTORS["gcm_glo_initiate_request_greenbook"]
    aarq = decode_apdu(hexbytes(v["full_aarq"]))
    assert aarq.context_id == acse.LOGICAL_NAME_WITH_CIPHERING
    assert aarq.calling_ap_title == hexbytes(v["system_title"])
    assert aarq.mechanism_id == acse.MECHANISM_LLS
    assert aarq.calling_authentication_value.value == b"12345678"
    assert aarq.user_information == decode_apdu(hexbytes(v["full_apdu"]))


@pytest.mark.parametrize("vid", GCM_VECTORS)
def test_every_flipped_byte_of_the_ciphered_content_fails_the_tag_check(vid):
    v = VECTORS[vid]
    raw = hexbytes(v[GCM_APDU_FIELD[vid]])
    header = 2  # tag and length
    for at in range(header, len(raw)):
        altered = bytearray(raw)
        altered[at] ^= 0x01
        with pytest.raises(DLMSSecurityError):
            decipher_apdu(decode_apdu(bytes(altered)), keys=keys_of(v), system_title=hexbytes(v["system_title"]))


@pytest.mark.parametrize("vid", GCM_VECTORS)
def test_gcm_vector_refused_with_the_wrong_system_title_or_key(vid):
    v = VECTORS[vid]
    apdu = decode_apdu(hexbytes(v[GCM_APDU_FIELD[vid]]))
    with pytest.raises(DLMSSecurityError):
        decipher_apdu(apdu, keys=keys_of(v), system_title=bytes(8))
    wrong = SecurityKeys(bytes(16), hexbytes(v["authentication_key"]))
    with pytest.raises(DLMSSecurityError, match="tag"):
        decipher_apdu(apdu, keys=wrong, system_title=hexbytes(v["system_title"]))
    with pytest.raises(DLMSSecurityError, match="tag"):
        decrypt(hexbytes(v["ciphertext_and_tag"]), security_control=0x30, system_title=hexbytes(v["system_title"]),
                invocation_counter=0x01234567, key=hexbytes(v["encryption_key"]), authentication_key=bytes(16))


@pytest.mark.parametrize("vid", GCM_VECTORS)
def test_gcm_vector_replayed_at_or_below_the_last_counter_is_refused(vid):
    v = VECTORS[vid]
    apdu = decode_apdu(hexbytes(v[GCM_APDU_FIELD[vid]]))
    for last in (0x01234567, 0x01234568):
        with pytest.raises(DLMSSecurityError, match="replayed"):
            decipher_apdu(apdu, keys=keys_of(v), system_title=hexbytes(v["system_title"]), last_counter=last)
    decipher_apdu(apdu, keys=keys_of(v), system_title=hexbytes(v["system_title"]), last_counter=0x01234566)


# --- HLS-GMAC -------------------------------------------------------------------------------------

HLS = VECTORS["hls_gmac_greenbook_table43"]


def test_hls_gmac_pass_3_f_stoc_matches_the_green_book():
    f_stoc = hls_gmac(hexbytes(HLS["stoc_challenge"]), keys=keys_of(HLS),
                      system_title=hexbytes(HLS["client_system_title"]),
                      invocation_counter=int(HLS["client_invocation_counter"], 16))
    assert f_stoc == hexbytes(HLS["pass3_f_stoc"])
    assert f_stoc[5:] == hexbytes(HLS["pass3_tag"])


def test_hls_gmac_pass_4_f_ctos_matches_the_green_book_and_is_checked():
    f_ctos = hls_gmac(hexbytes(HLS["ctos_challenge"]), keys=keys_of(HLS),
                      system_title=hexbytes(HLS["server_system_title"]),
                      invocation_counter=int(HLS["server_invocation_counter"], 16))
    assert f_ctos == hexbytes(HLS["pass4_f_ctos"])
    counter = check_hls_gmac(f_ctos, hexbytes(HLS["ctos_challenge"]), keys=keys_of(HLS),
                             system_title=hexbytes(HLS["server_system_title"]))
    assert counter == 0x01234567


@pytest.mark.parametrize("at", range(17))
def test_hls_gmac_response_with_any_byte_flipped_is_refused(at):
    altered = bytearray(hexbytes(HLS["pass4_f_ctos"]))
    altered[at] ^= 0x01
    with pytest.raises(DLMSSecurityError):
        check_hls_gmac(bytes(altered), hexbytes(HLS["ctos_challenge"]), keys=keys_of(HLS),
                       system_title=hexbytes(HLS["server_system_title"]))


def test_hls_gmac_response_to_another_challenge_or_truncated_is_refused():
    good = hexbytes(HLS["pass4_f_ctos"])
    with pytest.raises(DLMSSecurityError):
        check_hls_gmac(good, hexbytes(HLS["stoc_challenge"]), keys=keys_of(HLS),
                       system_title=hexbytes(HLS["server_system_title"]))
    with pytest.raises(DLMSSecurityError, match="bytes"):
        check_hls_gmac(good[:-1], hexbytes(HLS["ctos_challenge"]), keys=keys_of(HLS),
                       system_title=hexbytes(HLS["server_system_title"]))


def test_hls_aare_and_aarq_vectors_carry_the_challenges_and_mechanism_5():
    aare = decode_apdu(hexbytes(HLS["aare_with_stoc"]))
    assert aare.accepted and aare.diagnostic == acse.AUTHENTICATION_REQUIRED
    assert aare.mechanism_id == acse.MECHANISM_HLS_GMAC
    assert aare.responding_authentication_value.value == hexbytes(HLS["stoc_challenge"])
    assert aare.responder_acse_requirements == acse.ACSE_REQUIREMENTS_AUTHENTICATION
    assert aare.description == "accepted (acse-service-user: authentication-required)"
    aarq = decode_apdu(hexbytes(HLS["aarq_with_ctos"]))
    assert aarq.mechanism_id == acse.MECHANISM_HLS_GMAC
    assert aarq.calling_authentication_value.value == b"K56iVagY" == hexbytes(HLS["ctos_challenge"])


def test_keys_never_show_in_repr():
    keys = keys_of(HLS)
    assert "D0D1" not in repr(keys).upper() and "0001020304" not in repr(keys)
    request = InitiateRequest(0x007E1F, 0x04B0, dedicated_key=bytes(range(16)))
    assert "dedicated_key" not in repr(request)
