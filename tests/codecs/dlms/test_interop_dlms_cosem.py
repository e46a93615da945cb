"""Interoperability with dlms-cosem (u9n, independent client library; test-only dependency):
APDUs and A-XDR values encoded here are decoded there and the other way round, the GCM
ciphering and HLS-GMAC agree for the Green Book keys and for random ones, and dlms-cosem's
client associates with, reads, writes and acts on our server association.

dlms-cosem decodes only some Data types (no float, bit-string, bcd, utf8, dont-care) and
encodes fewer still (integers, strings, arrays, structures): each direction uses what it
supports. Known dlms-cosem defects worked around here: GetResponseNormal cannot
re-encode itself, and a date-time deviation of 0 comes out without a time zone."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlms_cosem import dlms_data as theirs  # noqa: E402
from dlms_cosem import security as their_security  # noqa: E402
from dlms_cosem.connection import XDlmsApduFactory  # noqa: E402
from dlms_cosem.dlms_data import DlmsDataParser  # noqa: E402
from dlms_cosem.exceptions import DecryptionError  # noqa: E402
from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher  # noqa: E402

from gateway.codecs.dlms import acse  # noqa: E402
from gateway.codecs.dlms.apdu import decode_apdu  # noqa: E402
from gateway.codecs.dlms.axdr import Data, DataType, decode_data  # noqa: E402
from gateway.codecs.dlms.dates import CosemDateTime  # noqa: E402
from gateway.codecs.dlms.obis import Obis  # noqa: E402
from gateway.codecs.dlms.security import SecurityKeys, cipher_apdu, decipher_apdu, encrypt, hls_gmac  # noqa: E402
from gateway.codecs.dlms.services import (  # noqa: E402
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    AttributeDescriptor,
    AttributeWithSelection,
    DataAccessResult,
    DataNotification,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InvokeIdAndPriority,
    MethodDescriptor,
    SetRequestNormal,
    SetResponseNormal,
)
from gateway.codecs.dlms.xdlms import (  # noqa: E402
    ConfirmedServiceError,
    ExceptionResponse,
    InitiateRequest,
    InitiateResponse,
)

VECTORS = {v["id"]: v for v in json.loads(
    (Path(__file__).parents[2] / "data" / "dlms-vectors" / "vectors.json").read_text())["vectors"]}
GREEN = VECTORS["gcm_glo_initiate_request_greenbook"]
EK = bytes.fromhex(GREEN["encryption_key"])
AK = bytes.fromhex(GREEN["authentication_key"])
TITLE = bytes.fromhex(GREEN["system_title"])
D = DataType

# --- A-XDR ------------------------------------------------------------------------------------

#: Our type -> their class, for the types dlms-cosem both decodes and encodes.
BOTH_WAYS = {
    D.DOUBLE_LONG: theirs.DoubleLongData,
    D.DOUBLE_LONG_UNSIGNED: theirs.DoubleLongUnsignedData,
    D.INTEGER: theirs.IntegerData,
    D.LONG: theirs.LongData,
    D.UNSIGNED: theirs.UnsignedIntegerData,
    D.LONG_UNSIGNED: theirs.UnsignedLongData,
    D.LONG64: theirs.Long64Data,
    D.LONG64_UNSIGNED: theirs.UnsignedLong64Data,
    D.ENUM: theirs.EnumData,
    D.OCTET_STRING: theirs.OctetStringData,
    D.VISIBLE_STRING: theirs.VisibleStringData,
}
RANGES = {
    D.DOUBLE_LONG: (-(2**31), 2**31 - 1), D.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1), D.INTEGER: (-128, 127),
    D.LONG: (-(2**15), 2**15 - 1), D.UNSIGNED: (0, 255), D.LONG_UNSIGNED: (0, 2**16 - 1),
    D.LONG64: (-(2**63), 2**63 - 1), D.LONG64_UNSIGNED: (0, 2**64 - 1), D.ENUM: (0, 255),
}


def _leaf():
    ints = st.sampled_from(sorted(RANGES)).flatmap(lambda t: st.integers(*RANGES[t]).map(lambda v: Data(t, v)))
    octets = st.binary(max_size=40).map(lambda v: Data(D.OCTET_STRING, v))
    text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(
        lambda v: Data(D.VISIBLE_STRING, v))
    return ints | octets | text


common_data = st.recursive(
    _leaf(),
    lambda kids: st.lists(kids, max_size=5).map(lambda items: Data(D.ARRAY, tuple(items)))
    | st.lists(kids, max_size=5).map(lambda items: Data(D.STRUCTURE, tuple(items))),
    max_leaves=20,
)


def to_theirs(data: Data):
    if data.type is D.ARRAY:
        return theirs.DataArray([to_theirs(item) for item in data.value])
    if data.type is D.STRUCTURE:
        return theirs.DataStructure([to_theirs(item) for item in data.value])
    return BOTH_WAYS[data.type](data.value)


def from_theirs(value) -> Data:
    if isinstance(value, theirs.DataArray):
        return Data(D.ARRAY, tuple(from_theirs(item) for item in value.value))
    if isinstance(value, theirs.DataStructure):
        return Data(D.STRUCTURE, tuple(from_theirs(item) for item in value.value))
    if isinstance(value, theirs.NullData):
        return Data(D.NULL_DATA)
    if isinstance(value, theirs.BooleanData):
        return Data(D.BOOLEAN, value.value)
    dtype = next(t for t, cls in BOTH_WAYS.items() if type(value) is cls)
    raw = value.value
    return Data(dtype, bytes(raw) if isinstance(raw, bytearray) else raw)


@given(common_data)
@settings(max_examples=200, deadline=None)
def test_data_we_encode_dlms_cosem_decodes_to_the_same_values(value):
    parsed = DlmsDataParser().parse(value.to_bytes())
    assert len(parsed) == 1
    assert from_theirs(parsed[0]) == value


@given(common_data)
@settings(max_examples=200, deadline=None)
def test_data_dlms_cosem_encodes_we_decode_to_the_same_values(value):
    assert decode_data(to_theirs(value).to_bytes()) == value


def test_null_and_boolean_decode_alike():
    for value in (Data(D.NULL_DATA), Data(D.BOOLEAN, True), Data(D.BOOLEAN, False)):
        assert from_theirs(DlmsDataParser().parse(value.to_bytes())[0]) == value


@given(st.integers(2000, 2099), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 59), st.integers(0, 99), st.integers(-720, 720).filter(bool))
@settings(max_examples=100, deadline=None)
def test_date_times_we_encode_are_the_same_instant_for_dlms_cosem(year, month, day, hour, minute, second, hundredths,
                                                                 deviation):
    stamp = CosemDateTime(year, month, day, None, hour, minute, second, hundredths, deviation, 0)
    parsed = DlmsDataParser().parse(Data(D.DATE_TIME, stamp).to_bytes())[0]
    when = parsed.value[0] if isinstance(parsed.value, tuple) else parsed.value
    assert when == stamp.to_datetime()
    assert when.utcoffset() == timedelta(minutes=-deviation)


def test_the_profile_buffer_vector_reads_the_same_in_both():
    raw = bytes.fromhex(VECTORS["axdr_profile_generic_buffer_24rows"]["data"])[1:]
    ours = decode_data(raw)
    parsed = DlmsDataParser().parse(raw)[0]
    assert [row.value[2].value for row in parsed.value] == [row.value[2].value for row in ours.value]
    assert [bytes(row.value[0].value) for row in parsed.value] == [row.value[0].value for row in ours.value]


# --- APDUs ------------------------------------------------------------------------------------

CLOCK = AttributeDescriptor(8, Obis(0, 0, 1, 0, 0, 255), 2)
ENERGY = AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 2)
IIP = InvokeIdAndPriority.of(5)
APDUS = [
    GetRequestNormal(ENERGY, None, IIP),
    GetRequestNext(7, IIP),
    GetRequestWithList((AttributeWithSelection(ENERGY), AttributeWithSelection(CLOCK)), IIP),
    GetResponseNormal(DataAccessResult(4), IIP),
    GetResponseWithDatablock(False, 1, bytes(range(30)), IIP),
    GetResponseWithDatablock(True, 2, bytes(range(5)), IIP),
    GetResponseWithDatablock(True, 3, DataAccessResult(14), IIP),
    GetResponseWithList((Data(D.UNSIGNED, 1), DataAccessResult(4)), IIP),
    SetRequestNormal(CLOCK, Data(D.OCTET_STRING, CosemDateTime(2024, 1, 1, 1, 0, 0, 0, 0, -60, 0).to_bytes()),
                     None, IIP),
    SetResponseNormal(DataAccessResult(3), IIP),
    ActionRequestNormal(MethodDescriptor(70, Obis(0, 0, 96, 3, 10, 255), 1), Data(D.INTEGER, 0), IIP),
    ActionResponseNormal(ActionResult(0), None, IIP),
    ActionResponseNormal(ActionResult(0), Data(D.DOUBLE_LONG_UNSIGNED, 9), IIP),
    InitiateRequest(0x007E1F, 0x04B0, 6),
    InitiateRequest(0x007E1F, 0x04B0, 6, dedicated_key=bytes(range(16))),
    InitiateResponse(0x00501F, 0x01F4, 6, 7),
    ConfirmedServiceError(1, 6, 1),
    ExceptionResponse(1, 2),
    DataNotification(0x80000001, Data(D.STRUCTURE, (Data(D.UNSIGNED, 1), Data(D.OCTET_STRING, b"abc")))),
    acse.AARQ(acse.application_context_name(1), InitiateRequest(0x001E1D, 0xFFFF)),
    acse.AARQ(acse.application_context_name(1), InitiateRequest(0x007E1F, 0x04B0), None, acse.mechanism_name(1),
              acse.AuthenticationValue(b"12345678"), acse.ACSE_REQUIREMENTS_AUTHENTICATION),
    acse.AARE(0, 1, 0, acse.application_context_name(1), InitiateResponse(0x00501F, 0x01F4)),
    acse.AARE(1, 1, 1, acse.application_context_name(1), ConfirmedServiceError(1, 6, 1)),
    acse.RLRQ(0),
]


@pytest.mark.parametrize("apdu", APDUS, ids=lambda a: type(a).__name__)
def test_apdus_we_encode_dlms_cosem_decodes_and_reencodes_identically(apdu):
    raw = apdu.to_bytes()
    parsed = XDlmsApduFactory.apdu_from_bytes(raw)
    assert parsed.to_bytes() == raw
    assert decode_apdu(parsed.to_bytes()) == apdu


def test_get_response_normal_fields_agree():
    # dlms-cosem cannot re-encode a GetResponseNormal (a defect of 25.1.0); compare its fields.
    value = Data(D.STRUCTURE, (Data(D.LONG, -5), Data(D.VISIBLE_STRING, "x")))
    parsed = XDlmsApduFactory.apdu_from_bytes(GetResponseNormal(value, IIP).to_bytes())
    assert parsed.data == value.to_bytes()
    assert parsed.invoke_id_and_priority.invoke_id == 5


def test_request_fields_agree():
    parsed = XDlmsApduFactory.apdu_from_bytes(GetRequestNormal(ENERGY, None, IIP).to_bytes())
    assert parsed.cosem_attribute.instance.to_bytes() == ENERGY.instance.to_bytes()
    assert (int(parsed.cosem_attribute.interface), parsed.cosem_attribute.attribute) == (3, 2)
    assert parsed.invoke_id_and_priority.high_priority and parsed.invoke_id_and_priority.confirmed
    aarq = XDlmsApduFactory.apdu_from_bytes(APDUS[20].to_bytes())
    assert aarq.authentication_value == b"12345678"


@pytest.mark.parametrize("key", ["apdu_get_request_range_descriptor", "acse_aare_rejected_dlms_version",
                                 "apdu_data_notification", "acse_aare_accepted", "acse_aarq_lls"])
def test_vectors_dlms_cosem_encodes_we_decode(key):
    raw = bytes.fromhex(VECTORS[key]["apdu"])
    theirs_bytes = XDlmsApduFactory.apdu_from_bytes(raw).to_bytes()
    # dlms-cosem re-encodes the range descriptor's date-times without weekday and DST bit.
    assert decode_apdu(theirs_bytes).to_bytes() == theirs_bytes


# --- GCM and HLS-GMAC --------------------------------------------------------------------------


def their_sc(value: int):
    return their_security.SecurityControlField.from_bytes(bytes((value,)))


keys16 = st.binary(min_size=16, max_size=16)


@given(st.binary(max_size=300), st.integers(0, 2**32 - 1), st.one_of(st.just((EK, AK)), st.tuples(keys16, keys16)),
       st.binary(min_size=8, max_size=8))
@settings(max_examples=150, deadline=None)
def test_our_gcm_matches_dlms_cosem_and_each_deciphers_the_other(plaintext, counter, key_pair, title):
    key, auth = key_pair
    ours = encrypt(plaintext, security_control=0x30, system_title=title, invocation_counter=counter, key=key,
                   authentication_key=auth)
    assert ours == their_security.encrypt(their_sc(0x30), title, counter, key, plaintext, auth)
    assert their_security.decrypt(their_sc(0x30), title, counter, key, ours, auth) == plaintext


@given(st.binary(min_size=1, max_size=100), st.integers(0, 2**32 - 1), st.data())
@settings(max_examples=100, deadline=None)
def test_dlms_cosem_refuses_what_we_cipher_once_altered(plaintext, counter, data):
    ours = bytearray(encrypt(plaintext, security_control=0x30, system_title=TITLE, invocation_counter=counter,
                             key=EK, authentication_key=AK))
    at = data.draw(st.integers(0, len(ours) - 1))
    ours[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecryptionError):
        their_security.decrypt(their_sc(0x30), TITLE, counter, EK, bytes(ours), AK)


def test_green_book_vectors_cipher_the_same_in_both():
    for vid, field in (("gcm_glo_initiate_request_greenbook", "plaintext"), ("gcm_get_request_clock", "plaintext")):
        plain = bytes.fromhex(VECTORS[vid][field])
        theirs_ct = their_security.encrypt(their_sc(0x30), TITLE, 0x01234567, EK, plain, AK)
        assert cipher_apdu(plain, keys=SecurityKeys(EK, AK), system_title=TITLE,
                           invocation_counter=0x01234567).ciphertext == theirs_ct


@given(st.binary(min_size=8, max_size=64), st.integers(0, 2**32 - 1), st.binary(min_size=8, max_size=8))
@settings(max_examples=100, deadline=None)
def test_hls_gmac_matches_dlms_cosem(challenge, counter, title):
    tag = their_security.gmac(their_sc(0x10), title, counter, EK, AK, challenge)
    assert hls_gmac(challenge, keys=SecurityKeys(EK, AK), system_title=title, invocation_counter=counter) == \
        b"\x10" + counter.to_bytes(4, "big") + tag


@given(st.binary(max_size=100), st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_general_glo_ciphering_round_trips_between_the_codecs(plaintext, counter):
    ours = cipher_apdu(b"\xc0\x01\xc1" + plaintext, keys=SecurityKeys(EK, AK), system_title=TITLE,
                       invocation_counter=counter, general=True)
    parsed = GeneralGlobalCipher.from_bytes(ours.to_bytes())
    assert parsed.system_title == TITLE and parsed.invocation_counter == counter
    assert parsed.to_bytes() == ours.to_bytes()
    assert decipher_apdu(decode_apdu(parsed.to_bytes()), keys=SecurityKeys(EK, AK)).apdu == b"\xc0\x01\xc1" + plaintext


# --- dlms-cosem's client against our server ------------------------------------------------

from dlms_cosem import cosem as their_cosem  # noqa: E402
from dlms_cosem import enumerations as their_enums  # noqa: E402
from dlms_cosem.client import DlmsClient  # noqa: E402
from dlms_cosem.cosem.obis import Obis as TheirObis  # noqa: E402

from gateway.codecs.dlms.association import Authentication, SecuritySettings  # noqa: E402
from gateway.codecs.dlms.server import Reply, ServerAssociation, ServerSettings  # noqa: E402

SERVER_TITLE = bytes.fromhex("4757590000000001")
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")


class InProcessMeter:
    """A dlms-cosem transport that hands each request to our ServerAssociation and answers as a
    tiny application would (one register, a method that echoes)."""

    client_logical_address = 16
    server_logical_address = 1
    io = None
    timeout = 1

    def __init__(self, settings: ServerSettings) -> None:
        self.server = ServerAssociation(settings)
        self.register = Data(D.DOUBLE_LONG_UNSIGNED, 1234567)

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def send_request(self, data: bytes) -> bytes:
        event = self.server.receive_apdu(data)
        if isinstance(event, Reply):
            return event.apdu
        request = event.request
        if isinstance(request, GetRequestNormal):
            return self.server.answer_get(self.register)
        if isinstance(request, SetRequestNormal):
            self.register = request.value
            return self.server.answer_set(DataAccessResult(0))
        return self.server.answer_action(ActionResult(0), request.parameters)


THEIR_REGISTER = their_cosem.CosemAttribute(their_enums.CosemInterface.REGISTER, TheirObis(1, 0, 1, 8, 0, 255), 2)
THEIR_METHOD = their_cosem.CosemMethod(their_enums.CosemInterface.DATA, TheirObis(0, 0, 10, 0, 0, 255), 1)
SERVERS = {
    "none": (ServerSettings(), {}),
    "lls": (ServerSettings(Authentication.LOW, password=b"12345678"),
            {"authentication": their_security.LowLevelSecurityAuthentication(secret=b"12345678")}),
    "ciphered": (
        ServerSettings(ciphered=True, security=SecuritySettings(SERVER_TITLE, SecurityKeys(EK, AK))),
        {"encryption_key": EK, "authentication_key": AK, "client_system_title": CLIENT_TITLE},
    ),
    "hls-gmac-ciphered": (
        ServerSettings(Authentication.HIGH_GMAC, ciphered=True,
                       security=SecuritySettings(SERVER_TITLE, SecurityKeys(EK, AK))),
        {"authentication": their_security.HighLevelSecurityGmacAuthentication(challenge_length=16),
         "encryption_key": EK, "authentication_key": AK, "client_system_title": CLIENT_TITLE,
         "client_initial_invocation_counter": 100},
    ),
}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_dlms_cosem_client_associates_reads_writes_and_acts_on_our_server(name):
    settings, options = SERVERS[name]
    options = dict(options)
    options.setdefault("authentication", their_security.NoSecurityAuthentication())
    meter = InProcessMeter(settings)
    client = DlmsClient(transport=meter, **options)
    aare = client.associate()
    assert aare.result == their_enums.AssociationResult.ACCEPTED
    assert client.get(THEIR_REGISTER) == Data(D.DOUBLE_LONG_UNSIGNED, 1234567).to_bytes()
    client.set(THEIR_REGISTER, Data(D.DOUBLE_LONG_UNSIGNED, 5).to_bytes())
    assert meter.register == Data(D.DOUBLE_LONG_UNSIGNED, 5)
    assert client.action(THEIR_METHOD, Data(D.UNSIGNED, 9).to_bytes()) == Data(D.UNSIGNED, 9).to_bytes()
    assert client.release_association() is not None
    assert meter.server.state.name == "IDLE"


def test_dlms_cosem_client_with_the_wrong_password_is_refused_by_our_server():
    meter = InProcessMeter(ServerSettings(Authentication.LOW, password=b"12345678"))
    client = DlmsClient(transport=meter, authentication=their_security.LowLevelSecurityAuthentication(secret=b"x"))
    with pytest.raises(Exception, match="Unable to perform Association"):
        client.associate()
