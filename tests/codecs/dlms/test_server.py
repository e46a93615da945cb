"""The server association (the gateway serving the HES) against the client association: every
security setting, block transfers both ways, and every refusal a server must give."""

from __future__ import annotations

import pytest

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
    Released,
    SecuritySettings,
    SetResult,
)
from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.errors import DLMSFrameError, DLMSSecurityError, DLMSStateError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys
from gateway.codecs.dlms.server import (
    BlockWanted,
    Reply,
    ServerAssociation,
    ServerSettings,
    ServerState,
    ServiceRequest,
)
from gateway.codecs.dlms.services import (
    ActionRequestNormal,
    ActionRequestWithList,
    ActionResult,
    AttributeDescriptor,
    AttributeWithSelection,
    DataAccessResult,
    DataBlock,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    MethodDescriptor,
    SelectiveAccess,
    SetRequestNormal,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
)
from gateway.codecs.dlms.xdlms import ExceptionResponse, conformance

from .fake_meter import CLIENT_TITLE, GREEN_KEYS

GATEWAY_TITLE = bytes.fromhex("4757590000000001")
CLIENT_SECURITY = SecuritySettings(CLIENT_TITLE, GREEN_KEYS)
SERVER_SECURITY = SecuritySettings(GATEWAY_TITLE, GREEN_KEYS)
ENERGY = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 2)
BUFFER = AttributeDescriptor(7, Obis.parse("1-0:99.1.0"), 2)
ECHO = MethodDescriptor(9, Obis.parse("0-0:10.0.0"), 1)
LONG = Data(DataType.ARRAY, tuple(Data(DataType.DOUBLE_LONG_UNSIGNED, n) for n in range(300)))


class Application:
    """What the gateway would serve: a few attributes and a method that echoes."""

    def __init__(self) -> None:
        self.values = {ENERGY: Data(DataType.DOUBLE_LONG_UNSIGNED, 42), BUFFER: LONG}
        self.requests: list = []

    def answer(self, server: ServerAssociation, request) -> bytes:
        self.requests.append(request)
        if isinstance(request, GetRequestNormal):
            return server.answer_get(self.values.get(request.attribute, DataAccessResult(4)))
        if isinstance(request, GetRequestWithList):
            return server.answer_get_list([self.values.get(i.attribute, DataAccessResult(4))
                                           for i in request.attributes])
        if isinstance(request, SetRequestNormal):
            self.values[request.attribute] = request.value
            return server.answer_set(DataAccessResult(0))
        if isinstance(request, ActionRequestNormal):
            return server.answer_action(ActionResult(0), request.parameters)
        raise AssertionError(request)


def run(client: ClientAssociation, server: ServerAssociation, app: Application, apdu: bytes, sizes=None):
    """One exchange to its final client event; ``sizes`` collects (request, reply) lengths."""
    for _ in range(2000):
        event = server.receive_apdu(apdu)
        reply = event.apdu if isinstance(event, Reply) else app.answer(server, event.request)
        if sizes is not None:
            sizes.append((len(apdu), len(reply)))
        answer = client.receive_apdu(reply)
        if not isinstance(answer, NextRequest):
            return answer
        apdu = answer.apdu
    raise AssertionError("no end")


def pair(client_settings: ClientSettings, server_settings: ServerSettings):
    client = ClientAssociation(client_settings, MemoryInvocationCounters(outgoing={CLIENT_TITLE: 5}))
    server = ServerAssociation(server_settings, MemoryInvocationCounters(outgoing={GATEWAY_TITLE: 9}))
    return client, server, Application()


SETTINGS = {
    "none": (ClientSettings(), ServerSettings()),
    "lls": (ClientSettings(Authentication.LOW, password=b"secret"),
            ServerSettings(Authentication.LOW, password=b"secret")),
    "hls-gmac": (ClientSettings(Authentication.HIGH_GMAC, security=CLIENT_SECURITY),
                 ServerSettings(Authentication.HIGH_GMAC, security=SERVER_SECURITY)),
    "ciphered": (ClientSettings(ciphered=True, security=CLIENT_SECURITY),
                 ServerSettings(ciphered=True, security=SERVER_SECURITY)),
    "hls-gmac-ciphered": (ClientSettings(Authentication.HIGH_GMAC, ciphered=True, security=CLIENT_SECURITY),
                          ServerSettings(Authentication.HIGH_GMAC, ciphered=True, security=SERVER_SECURITY)),
    "general-glo": (ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, GREEN_KEYS,
                                                                            general_protection=True)),
                    ServerSettings(ciphered=True, security=SERVER_SECURITY)),
    "dedicated-key": (ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, GREEN_KEYS,
                                                                              dedicated_key=bytes(range(16)))),
                      ServerSettings(ciphered=True, security=SERVER_SECURITY)),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_client_and_server_associate_get_set_act_and_release(name):
    client, server, app = pair(*SETTINGS[name])
    assert isinstance(run(client, server, app, client.send_aarq()), Associated)
    assert server.state is ServerState.READY
    energy = Data(DataType.DOUBLE_LONG_UNSIGNED, 42)
    assert run(client, server, app, client.send_get(ENERGY)) == GetResult(ENERGY, energy)
    assert run(client, server, app, client.send_set(ENERGY, Data(DataType.DOUBLE_LONG_UNSIGNED, 7))).result.success
    assert run(client, server, app, client.send_get(ENERGY)).result.value == 7
    missing = AttributeDescriptor(1, Obis.parse("0-0:96.1.0"), 2)
    assert run(client, server, app, client.send_get(missing)).result == DataAccessResult(4)
    listed = run(client, server, app, client.send_get_with_list([ENERGY, missing]))
    assert isinstance(listed, GetListResult) and listed.results[1] == DataAccessResult(4)
    outcome = run(client, server, app, client.send_action(ECHO, Data(DataType.UNSIGNED, 3)))
    assert outcome == ActionOutcome(ECHO, ActionResult(0), Data(DataType.UNSIGNED, 3))
    assert isinstance(run(client, server, app, client.send_release()), Released)
    assert server.state is ServerState.IDLE


@pytest.mark.parametrize("ciphered", [False, True])
def test_long_answers_and_long_requests_travel_in_blocks(ciphered):
    client_settings = ClientSettings(ciphered=ciphered, security=CLIENT_SECURITY, max_receive_pdu_size=128)
    server_settings = ServerSettings(ciphered=ciphered, security=SERVER_SECURITY, max_receive_pdu_size=96)
    client, server, app = pair(client_settings, server_settings)
    run(client, server, app, client.send_aarq())
    sizes: list[tuple[int, int]] = []
    assert run(client, server, app, client.send_get(BUFFER), sizes).result == LONG
    big = Data(DataType.OCTET_STRING, bytes(range(256)) * 2)
    assert run(client, server, app, client.send_set(BUFFER, big), sizes) == SetResult(BUFFER, DataAccessResult(0))
    assert app.values[BUFFER] == big and app.requests[-1] == SetRequestNormal(BUFFER, big, None,
                                                                            app.requests[-1].invoke)
    echoed = run(client, server, app, client.send_action(ECHO, big), sizes)
    assert echoed.result.success and echoed.return_data == big
    # Many blocks each way, none over the PDU size the other side announced.
    assert len(sizes) > 25
    assert max(request for request, _ in sizes) <= 96 and max(reply for _, reply in sizes) <= 128


def test_a_wrong_password_is_an_authentication_failure():
    client, server, app = pair(ClientSettings(Authentication.LOW, password=b"guess"),
                               ServerSettings(Authentication.LOW, password=b"secret"))
    event = run(client, server, app, client.send_aarq())
    assert isinstance(event, AssociationRejected) and "authentication-failure" in event.reason
    assert server.state is ServerState.IDLE


@pytest.mark.parametrize(
    "client_settings,server_settings,reason",
    [
        (ClientSettings(), ServerSettings(Authentication.LOW, password=b"x"), "authentication-mechanism-name-required"),
        (ClientSettings(Authentication.LOW, password=b"x"), ServerSettings(), "mechanism-name-not-recognised"),
        (ClientSettings(), ServerSettings(ciphered=True, security=SERVER_SECURITY),
         "application-context-name-not-supported"),
        (ClientSettings(dlms_version=5), ServerSettings(), "dlms-version-too-low"),
    ],
)
def test_what_the_server_cannot_accept_is_refused_with_the_reason(client_settings, server_settings, reason):
    client, server, app = pair(client_settings, server_settings)
    event = run(client, server, app, client.send_aarq())
    assert isinstance(event, AssociationRejected) and reason in event.reason


def test_hls_with_the_wrong_key_fails_at_pass_3_and_the_association_is_not_made():
    wrong = SecuritySettings(CLIENT_TITLE, SecurityKeys(bytes(16), GREEN_KEYS.authentication_key))
    client, server, app = pair(ClientSettings(Authentication.HIGH_GMAC, security=wrong),
                               ServerSettings(Authentication.HIGH_GMAC, security=SERVER_SECURITY))
    event = run(client, server, app, client.send_aarq())
    assert isinstance(event, AssociationRejected) and "HLS pass 3 refused" in event.reason
    assert server.state is ServerState.IDLE


def test_requests_outside_an_association_get_an_exception_response():
    server = ServerAssociation(ServerSettings())
    reply = server.receive_apdu(GetRequestNormal(ENERGY).to_bytes())
    assert decode_apdu(reply.apdu) == ExceptionResponse(1, 1)


def test_replayed_and_plaintext_requests_in_a_ciphered_association_are_refused():
    client, server, app = pair(*SETTINGS["ciphered"])
    run(client, server, app, client.send_aarq())
    request = client.send_get(ENERGY)
    event = server.receive_apdu(request)
    assert isinstance(event, ServiceRequest)
    client.receive_apdu(app.answer(server, event.request))
    with pytest.raises(DLMSSecurityError, match="replayed") as info:
        server.receive_apdu(request)
    assert decode_apdu(server.refuse(info.value)) == ExceptionResponse(1, 5)
    with pytest.raises(DLMSSecurityError, match="plaintext"):
        server.receive_apdu(GetRequestNormal(ENERGY).to_bytes())


def test_answering_what_was_not_asked_is_a_state_error():
    server = ServerAssociation(ServerSettings())
    with pytest.raises(DLMSStateError):
        server.answer_get(Data(DataType.NULL_DATA))


def test_server_settings_are_checked_and_keep_the_password_out_of_repr():
    with pytest.raises(ValueError):
        ServerSettings(Authentication.LOW)
    assert "hunter2" not in repr(ServerSettings(Authentication.LOW, password=b"hunter2"))


# --- streamed GET answers (the application produces the blocks as the client asks) ---------


def stream(client: ClientAssociation, server: ServerAssociation, raw: bytes, *, abort_at: int | None = None):
    """GET BUFFER, answered by streaming ``raw`` block by block; returns the client's result
    and how many blocks went."""
    event = server.receive_apdu(client.send_get(BUFFER))
    assert isinstance(event, ServiceRequest)
    room = server.block_room
    chunks = [raw[i : i + room] for i in range(0, len(raw), room)]
    reply = server.answer_get_block(chunks[0], len(chunks) == 1)
    sent = 1
    while True:
        answer = client.receive_apdu(reply)
        if not isinstance(answer, NextRequest):
            return answer, sent
        wanted = server.receive_apdu(answer.apdu)
        assert isinstance(wanted, BlockWanted) and wanted.block_number == sent + 1
        if wanted.block_number == abort_at:
            reply = server.next_get_block(DataAccessResult(15), True)
        else:
            reply = server.next_get_block(chunks[sent], sent + 1 == len(chunks))
        sent += 1


@pytest.mark.parametrize("ciphered", [False, True])
def test_a_streamed_answer_arrives_whole_in_blocks_within_the_clients_pdu(ciphered):
    settings = ClientSettings(ciphered=ciphered, security=CLIENT_SECURITY, max_receive_pdu_size=100)
    client, server, _ = pair(settings, ServerSettings(ciphered=ciphered, security=SERVER_SECURITY))
    run(client, server, Application(), client.send_aarq())
    result, blocks = stream(client, server, LONG.to_bytes())
    assert result == GetResult(BUFFER, LONG)
    assert blocks == -(-len(LONG.to_bytes()) // server.block_room) > 10
    assert server.block_room <= 100 - (21 if ciphered else 0)


def test_a_streamed_answer_that_fits_one_response_goes_as_a_normal_one():
    client, server, app = pair(ClientSettings(), ServerSettings())
    run(client, server, app, client.send_aarq())
    server.receive_apdu(client.send_get(BUFFER))
    reply = server.answer_get_block(Data(DataType.UNSIGNED, 7).to_bytes(), True)
    assert decode_apdu(reply) == GetResponseNormal(Data(DataType.UNSIGNED, 7), decode_apdu(reply).invoke)
    assert client.receive_apdu(reply).result == Data(DataType.UNSIGNED, 7)


def test_a_streamed_answer_can_end_with_a_result_and_blocks_out_of_turn_are_refused():
    client, server, app = pair(ClientSettings(max_receive_pdu_size=64), ServerSettings())
    run(client, server, app, client.send_aarq())
    result, _ = stream(client, server, LONG.to_bytes(), abort_at=3)
    assert result == GetResult(BUFFER, DataAccessResult(15))
    server.receive_apdu(client.send_get(BUFFER))
    server.answer_get_block(LONG.to_bytes()[: server.block_room], False)
    with pytest.raises(DLMSStateError, match="out of turn"):
        server.receive_apdu(GetRequestNext(5).to_bytes())
    with pytest.raises(DLMSStateError):
        server.next_get_block(b"x", True)


def test_without_block_transfer_a_long_streamed_answer_is_other_reason():
    client, server, app = pair(ClientSettings(conformance=conformance("get"), max_receive_pdu_size=64),
                               ServerSettings())
    run(client, server, app, client.send_aarq())
    assert not server.can_stream
    server.receive_apdu(client.send_get(BUFFER))
    reply = server.answer_get_block(LONG.to_bytes()[: server.block_room], False)
    assert client.receive_apdu(reply).result == DataAccessResult(250)


@pytest.mark.parametrize(
    "request_apdu, missing",
    [
        (SetRequestNormal(ENERGY, Data(DataType.NULL_DATA)), "set"),
        (SetRequestWithList((AttributeWithSelection(ENERGY),), (Data(DataType.NULL_DATA),)), "set"),
        (SetRequestWithFirstDatablock(ENERGY, DataBlock(False, 1, b"\x00")), "set"),
        (ActionRequestNormal(ECHO), "action"),
        (ActionRequestWithList((ECHO,), (Data(DataType.NULL_DATA),)), "action"),
        (GetRequestWithList((AttributeWithSelection(ENERGY),)), "multiple-references"),
        (GetRequestNormal(BUFFER, SelectiveAccess(2, Data(DataType.NULL_DATA))), "selective-access"),
    ],
)
def test_a_service_the_association_did_not_negotiate_is_refused_and_the_association_goes_on(request_apdu, missing):
    client, server, app = pair(ClientSettings(), ServerSettings(conformance=conformance(
        "get", "block-transfer-with-get-or-read", "block-transfer-with-set-or-write")))
    run(client, server, app, client.send_aarq())
    with pytest.raises(DLMSStateError, match=f"needs .*{missing}.*which this association did not negotiate") as info:
        server.receive_apdu(request_apdu.to_bytes())
    assert decode_apdu(server.refuse(info.value)) == ExceptionResponse(1, 1)  # service not allowed
    assert app.requests == [] and server.state is ServerState.READY
    assert run(client, server, app, client.send_get(ENERGY)).result == Data(DataType.DOUBLE_LONG_UNSIGNED, 42)


def test_blocks_of_a_set_are_refused_without_block_transfer_or_beyond_the_bound():
    client, server, app = pair(ClientSettings(max_receive_pdu_size=128),
                               ServerSettings(max_receive_pdu_size=64, max_incoming_bytes=200))
    run(client, server, app, client.send_aarq())
    too_long = client.send_set(BUFFER, Data(DataType.OCTET_STRING, bytes(300)))
    blocks = 0
    with pytest.raises(DLMSFrameError, match="too long"):
        while True:
            event = server.receive_apdu(too_long)
            blocks += 1
            too_long = client.receive_apdu(event.apdu).apdu
    assert blocks >= 3
    client, server, app = pair(ClientSettings(max_receive_pdu_size=128),
                               ServerSettings(conformance=conformance("get", "set"), max_receive_pdu_size=64))
    run(client, server, app, client.send_aarq())
    first = SetRequestWithFirstDatablock(BUFFER, DataBlock(False, 1, bytes(10)))
    with pytest.raises(DLMSStateError, match="without block transfer"):
        server.receive_apdu(first.to_bytes())
