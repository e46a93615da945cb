"""The sans-IO client association against a scripted meter: establishing with no security, LLS
and HLS-GMAC (plain and ciphered), GET with blocks and GBT, GET-with-list, SET and ACTION in
blocks, release, and every way a server can misbehave."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.association import (
    ActionOutcome,
    Associated,
    AssociationRejected,
    Authentication,
    ClientAssociation,
    ClientSettings,
    GetListResult,
    GetResult,
    NextRequest,
    Notification,
    Released,
    RequestFailed,
    SecuritySettings,
    SetResult,
    State,
)
from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.errors import DLMSFrameError, DLMSSecurityError, DLMSStateError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import MemoryInvocationCounters, cipher_apdu
from gateway.codecs.dlms.services import (
    AttributeDescriptor,
    DataAccessResult,
    DataNotification,
    GetResponseNormal,
    InvokeIdAndPriority,
    MethodDescriptor,
)
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.xdlms import CipheredApdu, ExceptionResponse, GeneralBlockTransfer, conformance

from .fake_meter import CLIENT_TITLE, GREEN_KEYS, METER_TITLE, FakeMeter

ENERGY = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 2)
SCALER = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 3)
PROFILE = AttributeDescriptor(7, Obis.parse("1-0:99.1.0"), 2)
OBJECTS = {
    (3, "1-0:1.8.0*255", 2): Data(DataType.DOUBLE_LONG_UNSIGNED, 1234567),
    (3, "1-0:1.8.0*255", 3): Data(DataType.STRUCTURE, (Data(DataType.INTEGER, -1), Data(DataType.ENUM, 30))),
    (7, "1-0:99.1.0*255", 2): Data(DataType.ARRAY, tuple(
        Data(DataType.STRUCTURE, (Data(DataType.OCTET_STRING, bytes(12)), Data(DataType.DOUBLE_LONG_UNSIGNED, i)))
        for i in range(40))),
}
SECURITY = SecuritySettings(CLIENT_TITLE, GREEN_KEYS)


def run(client: ClientAssociation, meter: FakeMeter, apdu: bytes):
    """Drive one exchange to its final event, as a collector's loop does."""
    for _ in range(1000):
        event = client.receive_apdu(meter.handle(apdu))
        if not isinstance(event, NextRequest):
            return event
        apdu = event.apdu
    raise AssertionError("the exchange does not end")


def associate(settings: ClientSettings, meter: FakeMeter, counters=None) -> ClientAssociation:
    client = ClientAssociation(settings, counters)
    event = run(client, meter, client.send_aarq())
    assert isinstance(event, Associated), event
    assert client.state is State.READY
    return client


def meter(**kwargs) -> FakeMeter:
    return FakeMeter(objects=dict(OBJECTS), **kwargs)


def test_public_association_get_and_release():
    m = meter()
    client = associate(ClientSettings(), m)
    assert m.aarq.mechanism_name is None and m.aarq.context_id == acse.LOGICAL_NAME
    event = run(client, m, client.send_get(ENERGY))
    assert event == GetResult(ENERGY, Data(DataType.DOUBLE_LONG_UNSIGNED, 1234567))
    scaler = run(client, m, client.send_get(SCALER))
    assert ScalerUnit.from_data(scaler.result).apply(event.result) == Decimal("123456.7")
    released = run(client, m, client.send_release())
    assert isinstance(released, Released) and client.state is State.IDLE


def test_invoke_ids_advance_and_wrap():
    m = meter()
    client = associate(ClientSettings(), m)
    for _ in range(20):
        run(client, m, client.send_get(ENERGY))
    ids = [apdu.invoke.invoke_id for apdu in m.received]
    assert ids[:3] == [1, 2, 3] and ids[15] == 0 and ids[16] == 1
    assert all(apdu.invoke.high_priority and apdu.invoke.confirmed for apdu in m.received)


def test_lls_sends_the_password_and_a_wrong_one_is_an_event_not_an_exception():
    m = meter(password=b"12345678")
    associate(ClientSettings(Authentication.LOW, password=b"12345678"), m)
    assert m.aarq.mechanism_id == acse.MECHANISM_LLS
    assert m.aarq.sender_acse_requirements == acse.ACSE_REQUIREMENTS_AUTHENTICATION
    client = ClientAssociation(ClientSettings(Authentication.LOW, password=b"wrong"))
    event = run(client, meter(password=b"12345678"), client.send_aarq())
    assert isinstance(event, AssociationRejected)
    assert "authentication-failure" in event.reason and client.state is State.IDLE


def test_hls_gmac_runs_pass_3_and_4_and_checks_the_server():
    m = meter(hls=True)
    counters = MemoryInvocationCounters(outgoing={CLIENT_TITLE: 7})
    client = associate(ClientSettings(Authentication.HIGH_GMAC, security=SECURITY), m, counters)
    assert m.aarq.mechanism_id == acse.MECHANISM_HLS_GMAC and len(m.aarq.calling_authentication_value.value) == 16
    assert m.received[0].parameters.value[1:5] == (7).to_bytes(4, "big")  # f(StoC) with the client's counter
    assert client.server_system_title == METER_TITLE
    assert run(client, m, client.send_get(ENERGY)).result.value == 1234567


def test_hls_gmac_with_a_server_that_does_not_know_the_key_is_a_security_error():
    client = ClientAssociation(ClientSettings(Authentication.HIGH_GMAC, security=SECURITY))
    with pytest.raises(DLMSSecurityError, match="HLS-GMAC response does not match"):
        run(client, meter(hls=True, wrong_ctos=True), client.send_aarq())
    assert client.state is State.IDLE


def test_each_association_uses_a_fresh_challenge():
    settings = ClientSettings(Authentication.HIGH_GMAC, security=SECURITY)
    client = ClientAssociation(settings)
    first = decode_apdu(client.send_aarq()).calling_authentication_value.value
    client.abort()
    assert decode_apdu(client.send_aarq()).calling_authentication_value.value != first


@pytest.mark.parametrize("general", [False, True])
@pytest.mark.parametrize("hls", [False, True])
def test_ciphered_association_wraps_every_apdu_and_checks_every_answer(general, hls):
    m = meter(ciphered=True, hls=hls, general=general)
    settings = ClientSettings(Authentication.HIGH_GMAC if hls else Authentication.NONE, ciphered=True,
                              security=SecuritySettings(CLIENT_TITLE, GREEN_KEYS, general_protection=general))
    counters = MemoryInvocationCounters(outgoing={CLIENT_TITLE: 1000})
    client = associate(settings, m, counters)
    assert m.aarq.context_id == acse.LOGICAL_NAME_WITH_CIPHERING and m.aarq.calling_ap_title == CLIENT_TITLE
    request = client.send_get(ENERGY)
    assert decode_apdu(request).__class__.__name__ == ("GeneralGloCiphering" if general else "CipheredApdu")
    assert ENERGY.to_bytes() not in request
    assert run(client, m, request).result.value == 1234567
    assert counters.last_incoming(METER_TITLE) == m.counter
    assert counters.next_outgoing(CLIENT_TITLE) > 1000


def test_dedicated_key_is_proposed_and_used_after_the_association():
    key = bytes(range(0x40, 0x50))
    m = meter(ciphered=True)
    client = associate(ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, GREEN_KEYS,
                                                                               dedicated_key=key)), m)
    assert m.dedicated == key
    request = decode_apdu(client.send_get(ENERGY))
    assert isinstance(request, CipheredApdu) and request.dedicated
    assert "dedicated" not in repr(client.settings)


def test_a_replayed_ciphered_answer_is_refused():
    m = meter(ciphered=True)
    client = associate(ClientSettings(ciphered=True, security=SECURITY), m)
    request = client.send_get(ENERGY)
    answer = m.handle(request)
    assert isinstance(client.receive_apdu(answer), GetResult)
    client.send_get(ENERGY)
    with pytest.raises(DLMSSecurityError, match="replayed"):
        client.receive_apdu(answer)
    assert client.state is State.READY  # the request is abandoned, the association stays


def test_a_plaintext_answer_in_a_ciphered_association_is_refused_but_an_exception_response_is_reported():
    m = meter(ciphered=True)
    client = associate(ClientSettings(ciphered=True, security=SECURITY), m)
    client.send_get(ENERGY)
    with pytest.raises(DLMSSecurityError, match="plaintext"):
        client.receive_apdu(GetResponseNormal(Data(DataType.NULL_DATA), InvokeIdAndPriority(0xC1)).to_bytes())
    client.send_get(ENERGY)
    event = client.receive_apdu(ExceptionResponse(1, 5).to_bytes())
    assert event == RequestFailed(ExceptionResponse(1, 5)) and client.state is State.READY


def test_a_tampered_ciphered_answer_fails_its_tag():
    m = meter(ciphered=True)
    client = associate(ClientSettings(ciphered=True, security=SECURITY), m)
    answer = bytearray(m.handle(client.send_get(ENERGY)))
    answer[-1] ^= 0x01
    with pytest.raises(DLMSSecurityError, match="tag"):
        client.receive_apdu(bytes(answer))


def test_a_ciphered_association_needs_a_ciphered_initiate_response():
    client = ClientAssociation(ClientSettings(ciphered=True, security=SECURITY))
    plain_meter = meter()
    with pytest.raises(DLMSSecurityError, match="plaintext InitiateResponse"):
        client.receive_apdu(plain_meter.handle(client.send_aarq()))


@pytest.mark.parametrize("size", [7, 50, 200])
def test_get_with_blocks_is_reassembled(size):
    m = meter(block_size=size)
    client = associate(ClientSettings(), m)
    event = run(client, m, client.send_get(PROFILE))
    assert event == GetResult(PROFILE, OBJECTS[(7, "1-0:99.1.0*255", 2)])
    nexts = [a for a in m.received if type(a).__name__ == "GetRequestNext"]
    assert [a.block_number for a in nexts] == list(range(1, len(nexts) + 1))


def test_get_with_list_plain_and_in_blocks():
    for block_size in (None, 5):
        m = meter(block_size=block_size)
        client = associate(ClientSettings(), m)
        missing = AttributeDescriptor(1, Obis.parse("0-0:96.1.0"), 2)
        event = run(client, m, client.send_get_with_list([ENERGY, missing, SCALER]))
        assert isinstance(event, GetListResult)
        assert event.results == (OBJECTS[(3, "1-0:1.8.0*255", 2)], DataAccessResult(4),
                                 OBJECTS[(3, "1-0:1.8.0*255", 3)])


def test_general_block_transfer_is_acknowledged_and_reassembled():
    m = meter(gbt_size=16)
    client = associate(ClientSettings(), m)
    apdu = client.send_get(PROFILE)
    first = m.handle(apdu)
    event = client.receive_apdu(first)
    assert isinstance(event, NextRequest)
    ack = decode_apdu(event.apdu)
    assert isinstance(ack, GeneralBlockTransfer) and ack.block_number_ack == 1 and ack.block_data == b""
    assert run(client, m, event.apdu).result == OBJECTS[(7, "1-0:99.1.0*255", 2)]


def test_ciphered_general_block_transfer():
    m = meter(gbt_size=40, ciphered=True)
    client = associate(ClientSettings(ciphered=True, security=SECURITY), m)
    assert run(client, m, client.send_get(PROFILE)).result == OBJECTS[(7, "1-0:99.1.0*255", 2)]


def test_set_that_fits_and_set_in_blocks():
    m = meter(max_pdu=64)
    client = associate(ClientSettings(), m)
    assert run(client, m, client.send_set(ENERGY, Data(DataType.DOUBLE_LONG_UNSIGNED, 5))) == \
        SetResult(ENERGY, DataAccessResult(0))
    big = Data(DataType.OCTET_STRING, bytes(range(200)))
    assert run(client, m, client.send_set(SCALER, big)).result.success
    assert m.objects[(3, "1-0:1.8.0*255", 3)] == big
    sizes = [len(a.to_bytes()) for a in m.received]
    assert max(sizes) <= 64 and len(sizes) > 4


def test_action_with_parameters_in_blocks_and_return_data_in_blocks():
    method = MethodDescriptor(9, Obis.parse("0-0:10.0.0"), 1)
    m = meter(max_pdu=48)
    client = associate(ClientSettings(), m)
    parameters = Data(DataType.OCTET_STRING, bytes(100))
    outcome = run(client, m, client.send_action(method, parameters))
    assert outcome == ActionOutcome(method, outcome.result, parameters) and outcome.result.success
    m = meter(return_blocks=10)
    client = associate(ClientSettings(), m)
    assert run(client, m, client.send_action(method, parameters)).return_data == parameters


def test_a_request_too_long_without_block_transfer_is_refused_before_sending():
    m = meter(max_pdu=40, conformance=conformance("get", "set", "multiple-references"))  # no block transfer
    client = associate(ClientSettings(), m)
    with pytest.raises(ValueError, match="too long"):
        client.send_set(ENERGY, Data(DataType.OCTET_STRING, bytes(100)))
    assert client.state is State.READY
    with pytest.raises(ValueError, match="max PDU size"):
        client.send_get_with_list([ENERGY] * 10)


def test_rejected_association_is_an_event_with_the_reason():
    client = ClientAssociation(ClientSettings())
    event = run(client, meter(reject=(1, 2)), client.send_aarq())
    assert isinstance(event, AssociationRejected)
    assert event.reason == "rejected-permanent (acse-service-user: application-context-name-not-supported)"


def test_answers_that_do_not_fit_the_state_are_state_errors():
    m = meter()
    client = associate(ClientSettings(), m)
    with pytest.raises(DLMSStateError):
        client.receive_apdu(GetResponseNormal(Data(DataType.NULL_DATA)).to_bytes())  # nothing asked
    client.send_get(ENERGY)
    with pytest.raises(DLMSStateError, match="invoke-id"):
        client.receive_apdu(GetResponseNormal(Data(DataType.NULL_DATA), InvokeIdAndPriority(0xC9)).to_bytes())
    client.send_set(ENERGY, Data(DataType.NULL_DATA))
    with pytest.raises(DLMSStateError, match="does not answer"):
        client.receive_apdu(GetResponseNormal(Data(DataType.NULL_DATA), InvokeIdAndPriority(0xC3)).to_bytes())
    with pytest.raises(DLMSStateError, match="cannot"):
        ClientAssociation(ClientSettings()).send_get(ENERGY)


def test_garbage_from_the_server_is_a_frame_error_and_the_request_is_abandoned():
    m = meter()
    client = associate(ClientSettings(), m)
    client.send_get(ENERGY)
    with pytest.raises(DLMSFrameError):
        client.receive_apdu(b"\xc4\x01")
    assert client.state is State.READY


def test_unsolicited_notifications_pass_through_without_disturbing_a_request():
    m = meter()
    client = associate(ClientSettings(), m)
    request = client.send_get(ENERGY)
    note = DataNotification(1, Data(DataType.UNSIGNED, 3))
    assert client.receive_apdu(note.to_bytes()) == Notification(note)
    assert isinstance(client.receive_apdu(m.handle(request)), GetResult)


def test_ciphered_notifications_are_deciphered():
    m = meter(ciphered=True)
    client = associate(ClientSettings(ciphered=True, security=SECURITY), m)
    note = DataNotification(1, Data(DataType.UNSIGNED, 3))
    pushed = cipher_apdu(note.to_bytes(), keys=GREEN_KEYS, system_title=METER_TITLE, invocation_counter=10**6,
                         general=True)
    assert client.receive_apdu(pushed.to_bytes()) == Notification(note)


def test_settings_are_checked_and_secrets_stay_out_of_repr():
    with pytest.raises(ValueError, match="password"):
        ClientSettings(Authentication.LOW)
    with pytest.raises(ValueError, match="security"):
        ClientSettings(ciphered=True)
    settings = ClientSettings(Authentication.LOW, password=b"s3cret")
    assert "s3cret" not in repr(settings)
