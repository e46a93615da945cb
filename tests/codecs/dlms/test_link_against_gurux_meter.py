"""The lower layers against the independent meter (gurux-dlms): wrapper over TCP, HDLC over
TCP and over a pseudo-terminal serial line, and a silent peer that must time out."""

from __future__ import annotations

import socket

import pytest
import serial

from gateway.codecs.dlms.hdlc import HdlcParameters
from gateway.codecs.dlms.hdlc_connection import CONNECTED, DISCONNECTED, HdlcConnection, HdlcSettings
from gateway.codecs.dlms.link_events import ApduReceived, Connected, Disconnected
from gateway.codecs.dlms.wrapper import WrapperConnection
from gateway.errors import DeviceTimeout
from tests.codecs.dlms.hdlc_vectors import AARQ_NO_AUTH, VECTORS, aare_result
from tests.dlms_peer import SerialLink, SocketLink, exchange

pytestmark = pytest.mark.integration

AARQ_LLS_12345678 = bytes.fromhex(VECTORS["acse_aarq_lls"]["apdu"])
ACCEPTED, REJECTED_PERMANENT = 0, 1


def wrapper_association(address: tuple[str, int], aarq: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        reply = exchange(WrapperConnection(), SocketLink(sock), WrapperConnection().send_apdu(aarq))
    assert isinstance(reply, ApduReceived)
    return reply.apdu


def test_wrapper_aarq_without_authentication_gets_an_accepting_aare(dlms_meter):
    aare = wrapper_association(dlms_meter, AARQ_NO_AUTH)
    assert aare[0] == 0x61
    assert aare_result(aare) == ACCEPTED


@pytest.mark.dlms_meter(auth="low", args=("--password", "12345678"))
def test_wrapper_aarq_with_the_right_lls_password_is_accepted(dlms_meter):
    assert aare_result(wrapper_association(dlms_meter, AARQ_LLS_12345678)) == ACCEPTED


@pytest.mark.dlms_meter(auth="low")
def test_wrapper_aarq_with_a_wrong_lls_password_is_rejected(dlms_meter):
    # The meter's password is "Gurux"; the vector's is "12345678".
    assert aare_result(wrapper_association(dlms_meter, AARQ_LLS_12345678)) == REJECTED_PERMANENT


def hdlc_association(conn: HdlcConnection, link) -> tuple[Connected, bytes, Disconnected]:
    connected = exchange(conn, link, conn.connect())
    assert isinstance(connected, Connected), connected
    assert conn.state == CONNECTED
    reply = exchange(conn, link, conn.send_apdu(AARQ_NO_AUTH))
    assert isinstance(reply, ApduReceived), reply
    disconnected = exchange(conn, link, conn.disconnect())
    assert isinstance(disconnected, Disconnected), disconnected
    assert conn.state == DISCONNECTED
    return connected, reply.apdu, disconnected


@pytest.mark.dlms_meter(iface="hdlc")
def test_hdlc_over_tcp_connects_with_default_parameters_and_associates(dlms_meter):
    conn = HdlcConnection(HdlcSettings())
    with socket.create_connection(dlms_meter, timeout=5) as sock:
        connected, aare, disconnected = hdlc_association(conn, SocketLink(sock))
    assert connected.parameters == HdlcParameters(128, 128, 1, 1)
    assert aare_result(aare) == ACCEPTED
    assert disconnected.response == "UA"
    assert conn.parser.frames == 3  # UA, the AARE in one I-frame, UA


@pytest.mark.dlms_meter(iface="hdlc", args=("--hdlc-max-info", "64"))
def test_hdlc_negotiation_takes_the_smaller_of_both_offers(dlms_meter):
    conn = HdlcConnection(HdlcSettings(parameters=HdlcParameters(max_info_tx=100, max_info_rx=48)))
    with socket.create_connection(dlms_meter, timeout=5) as sock:
        connected, aare, _ = hdlc_association(conn, SocketLink(sock))
    assert (connected.parameters.max_info_tx, connected.parameters.max_info_rx) == (64, 48)
    assert aare_result(aare) == ACCEPTED


def test_hdlc_through_socat_on_a_pty_segments_the_aarq_and_reassembles_the_aare(dlms_meter_serial):
    settings = HdlcSettings(server_physical=17, parameters=HdlcParameters(max_info_tx=16, max_info_rx=24))
    conn = HdlcConnection(settings)
    with serial.Serial(dlms_meter_serial, baudrate=9600, timeout=1) as port:
        connected, aare, disconnected = hdlc_association(conn, SerialLink(port))
    assert connected.parameters == HdlcParameters(16, 24, 1, 1)
    assert connected.peer == settings.server_address
    assert aare[0] == 0x61 and aare_result(aare) == ACCEPTED
    assert disconnected.response == "UA"
    # UA, RR, RR (acknowledging the AARQ's first two segments), three AARE segments (46 bytes
    # with the LLC; gurux puts 21 in a frame where 24 are allowed), UA.
    assert conn.parser.frames == 7
    assert conn.parser.errors == 0 and conn.parser.skipped_bytes == 0


def test_hdlc_through_socat_with_a_serial_number_address_of_four_bytes(dlms_meter_serial):
    conn = HdlcConnection(HdlcSettings.for_serial_number(12345678))
    with serial.Serial(dlms_meter_serial, baudrate=9600, timeout=1) as port:
        connected, aare, _ = hdlc_association(conn, SerialLink(port))
    assert connected.peer.size == 4 and connected.peer.lower == 5678 + 1000
    assert aare_result(aare) == ACCEPTED


def test_a_peer_that_accepts_and_never_answers_times_out_instead_of_hanging(silent_tcp_server):
    conn = HdlcConnection()
    with socket.create_connection(silent_tcp_server, timeout=5) as sock:
        with pytest.raises(DeviceTimeout):
            exchange(conn, SocketLink(sock), conn.connect(), timeout_s=0.3)


def test_a_silent_wrapper_peer_times_out_too(silent_tcp_server):
    conn = WrapperConnection()
    with socket.create_connection(silent_tcp_server, timeout=5) as sock:
        with pytest.raises(DeviceTimeout):
            exchange(conn, SocketLink(sock), conn.send_apdu(AARQ_NO_AUTH), timeout_s=0.3)
