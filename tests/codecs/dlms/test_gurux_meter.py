"""The client association against an independent server: the gurux-dlms simulated meter of
tests/peers/dlms-meter (fixtures in tests/dlms_peer.py), over the IEC 62056-47 wrapper and over
HDLC (the link codecs of this package), with every security setting it offers (none, LLS,
HLS-GMAC, ciphered, general-glo-ciphering) and both block transfers (GET-next, GBT)."""

from __future__ import annotations

import socket

import pytest

from gateway.codecs.dlms.association import (
    DEFAULT_CONFORMANCE,
    Associated,
    Authentication,
    ClientAssociation,
    ClientSettings,
    GetListResult,
    GetResult,
    NextRequest,
    Released,
    SecuritySettings,
)
from gateway.codecs.dlms.axdr import DataType
from gateway.codecs.dlms.hdlc_connection import HdlcConnection, HdlcSettings
from gateway.codecs.dlms.link_events import ApduReceived, Connected
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys
from gateway.codecs.dlms.selective import EntryDescriptor
from gateway.codecs.dlms.services import AttributeDescriptor
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.wrapper import WrapperConnection
from gateway.codecs.dlms.xdlms import conformance
from tests.dlms_peer import SocketLink, exchange

pytestmark = pytest.mark.integration

KEYS = SecurityKeys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")
METER_TITLE = bytes.fromhex("4752580000BC614E")
ROWS = 100


class Session:
    """An association driven over a link connection (wrapper or HDLC) on a socket, as a
    collector does; ``tags`` records the first byte of every APDU received."""

    def __init__(self, meter, link, client: ClientAssociation) -> None:
        self.sock = socket.create_connection(meter.address, timeout=5)
        self.link = link
        self.io = SocketLink(self.sock)
        self.client = client
        self.tags: list[int] = []
        if isinstance(link, HdlcConnection):
            assert isinstance(exchange(link, self.io, link.connect()), Connected)

    def run(self, apdu: bytes):
        while True:
            received = exchange(self.link, self.io, self.link.send_apdu(apdu))
            assert isinstance(received, ApduReceived), received
            self.tags.append(received.apdu[0])
            event = self.client.receive_apdu(received.apdu)
            if not isinstance(event, NextRequest):
                return event
            apdu = event.apdu

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def session(start_dlms_meter):
    sessions = []

    def open_session(iface: str, client_sap: int, settings: ClientSettings, counters=None, **meter) -> Session:
        meter.setdefault("args", ("--rows", str(ROWS)))
        started = start_dlms_meter(iface=iface, **meter)
        link = WrapperConnection(client_wport=client_sap) if iface == "wrapper" else \
            HdlcConnection(HdlcSettings(client_sap=client_sap))
        sessions.append(Session(started, link, ClientAssociation(settings, counters)))
        return sessions[-1]

    try:
        yield open_session
    finally:
        for opened in sessions:
            opened.close()


CASES = {
    "public": ({}, 16, ClientSettings()),
    "lls": ({"auth": "low"}, 17, ClientSettings(Authentication.LOW, password=b"Gurux")),
    "hls-gmac": ({"auth": "gmac"}, 1,
                 ClientSettings(Authentication.HIGH_GMAC, security=SecuritySettings(CLIENT_TITLE, KEYS))),
    "ciphered": ({"secure": True}, 1, ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, KEYS))),
    "hls-gmac-ciphered": ({"auth": "gmac", "secure": True}, 1,
                          ClientSettings(Authentication.HIGH_GMAC, ciphered=True,
                                         security=SecuritySettings(CLIENT_TITLE, KEYS))),
    "general-glo": ({"secure": True}, 1,
                    ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, KEYS,
                                                                            general_protection=True))),
}
ENERGY = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 2)
SCALER = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 3)
NAME = AttributeDescriptor(1, Obis.parse("0-0:42.0.0"), 2)
PROFILE = AttributeDescriptor(7, Obis.parse("1-0:99.1.0"), 2)


@pytest.mark.parametrize("iface", ["wrapper", "hdlc"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_association_reads_and_releases_with_every_security_setting(session, case, iface):
    meter, sap, settings = CASES[case]
    counters = MemoryInvocationCounters(outgoing={CLIENT_TITLE: 1})
    s = session(iface, sap, settings, counters, **meter)
    client = s.client
    associated = s.run(client.send_aarq())
    assert isinstance(associated, Associated), associated
    if settings.security is not None:
        assert client.server_system_title == METER_TITLE
    assert s.run(client.send_get(NAME)).result.value == b"GRX0000012345678"
    value = s.run(client.send_get(ENERGY)).result
    scaler = ScalerUnit.from_data(s.run(client.send_get(SCALER)).result)
    assert (str(scaler.apply(value)), scaler.symbol) == ("123456.7", "Wh")
    listed = s.run(client.send_get_with_list([ENERGY, NAME]))
    assert isinstance(listed, GetListResult) and listed.results[0] == value
    two = s.run(client.send_get(PROFILE, EntryDescriptor(1, 2).to_access()))
    assert isinstance(two, GetResult) and len(two.result.value) == 2
    assert isinstance(s.run(client.send_release()), Released)
    if settings.ciphered:
        assert counters.last_incoming(METER_TITLE) is not None
        assert set(s.tags) <= {0xCC, 0xCF, 0xDB, 0x61, 0x63}  # every answer ciphered (0xCF: HLS pass 4)


@pytest.mark.parametrize("gbt", [False, True], ids=["get-next", "general-block-transfer"])
@pytest.mark.parametrize("ciphered", [False, True], ids=["plain", "ciphered"])
def test_a_profile_larger_than_the_pdu_comes_in_blocks_and_is_reassembled(session, gbt, ciphered):
    meter = {"args": ("--rows", str(ROWS), *(("--gbt",) if gbt else ()))}
    if ciphered:
        meter.update(auth="gmac", secure=True)
    settings = ClientSettings(
        Authentication.HIGH_GMAC if ciphered else Authentication.NONE,
        security=SecuritySettings(CLIENT_TITLE, KEYS) if ciphered else None,
        ciphered=ciphered,
        conformance=DEFAULT_CONFORMANCE | (conformance("general-block-transfer") if gbt else 0),
        max_receive_pdu_size=256,
    )
    s = session("wrapper", 1 if ciphered else 16, settings, MemoryInvocationCounters(outgoing={CLIENT_TITLE: 1}),
                **meter)
    assert isinstance(s.run(s.client.send_aarq()), Associated)
    s.tags.clear()
    buffer = s.run(s.client.send_get(PROFILE)).result
    assert buffer.type is DataType.ARRAY and len(buffer.value) == ROWS
    assert [row.value[1].value for row in buffer.value[:3]] == [1000000, 1000250, 1000500]
    assert len(s.tags) > 3 and set(s.tags) == ({0xE0} if gbt else {0xCC if ciphered else 0xC4})
