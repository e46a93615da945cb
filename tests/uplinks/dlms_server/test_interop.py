"""Independent clients against the DLMS server: gurux-dlms's (GPLv2, test-only) and
dlms-cosem's (BSL, test-only), each over a real TCP connection with the wrapper, associate
with HLS-GMAC and security suite 0 (authenticated and encrypted), read the names, the SAP
list, the clock, registers whose values equal the store's, and a profile by range and by
entry in blocks; their public clients read the SAP list and are denied the rest.

The clients are blocking: they run in a thread while the server serves on the test's loop."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import structlog
from dlms_cosem import cosem as their_cosem
from dlms_cosem import enumerations as their_enums
from dlms_cosem import security as their_security
from dlms_cosem.client import DataResultError, DlmsClient
from dlms_cosem.cosem import selective_access as their_access
from dlms_cosem.cosem.capture_object import CaptureObject as TheirCaptureObject
from dlms_cosem.cosem.obis import Obis as TheirObis
from dlms_cosem.dlms_data import DlmsDataParser
from gurux_dlms import GXByteBuffer, GXDLMSException, GXReplyData
from gurux_dlms.enums import Authentication as GxAuthentication
from gurux_dlms.enums import InterfaceType, Security
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSProfileGeneric, GXDLMSRegister, GXDLMSSapAssignment
from gurux_dlms.secure import GXDLMSSecureClient

from gateway.codecs.dlms.wrapper import HEADER_LENGTH, WrapperMessage
from gateway.model import Reading
from tests.uplinks.dlms_server.conftest import HEAT, KEYS, T0, heat_readings, serving

pytestmark = pytest.mark.integration

# dlms-cosem logs every APDU through structlog: keep its warnings only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

HEAT_SAP = 16
TIMEOUT_S = 10


async def stored(store) -> tuple[dict[str, Reading], list[list]]:
    """The heat meter's latest readings by quantity, and its captures as profile rows."""
    latest = {s.record.quantity: s.record for s in await store.last_readings() if s.record.device == HEAT}
    captures: dict[datetime, dict[str, Reading]] = {}
    async for s in store.query_readings(device=HEAT):
        captures.setdefault(s.record.captured_at, {})[s.record.quantity] = s.record
    rows = [[at, int(r["energy"].value * 1000), int(r["volume"].value * 100), int(r["flow temperature"].value * 10),
             r["fabrication number"].value] for at, r in captures.items()]
    return latest, rows


# --- gurux-dlms ------------------------------------------------------------------------------


class Gurux:
    """gurux-dlms's client driven over a socket, as its own example reader does."""

    def __init__(self, port: int, client_sap: int, server_sap: int, *, counter: int = 1, pdu: int = 0xFFFF) -> None:
        secured = client_sap == 1
        self.client = GXDLMSSecureClient(True, client_sap, server_sap,
                                         GxAuthentication.HIGH_GMAC if secured else GxAuthentication.NONE, None,
                                         InterfaceType.WRAPPER)
        self.client.maxReceivePDUSize = pdu
        if secured:
            ciphering = self.client.ciphering
            ciphering.security = Security.AUTHENTICATION_ENCRYPTION
            ciphering.systemTitle = bytes.fromhex("4758580000000001")
            ciphering.blockCipherKey = KEYS.encryption_key
            ciphering.authenticationKey = KEYS.authentication_key
            ciphering.invocationCounter = counter
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)

    def close(self) -> None:
        self.sock.close()

    def _packet(self, data, reply: GXReplyData) -> None:
        notify = GXReplyData()
        self.sock.sendall(bytes(data))
        received = GXByteBuffer()
        while not self.client.getData(received, reply, notify):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            received.set(chunk)
        if reply.error:
            raise GXDLMSException(reply.error)

    def _blocks(self, data) -> GXReplyData:
        reply = GXReplyData()
        self._packet(data, reply)
        while reply.isMoreData():
            self._packet(self.client.receiverReady(reply), reply)
        return reply

    def associate(self) -> None:
        self.client.parseAareResponse(self._blocks(self.client.aarqRequest()[0]).data)
        if self.client.authentication == GxAuthentication.HIGH_GMAC:
            reply = GXReplyData()
            for request in self.client.getApplicationAssociationRequest():
                self._packet(request, reply)
            self.client.parseApplicationAssociationResponse(reply.data)

    def read(self, item, attribute: int):
        reply = self._blocks(self.client.read(item, attribute)[0])
        return self.client.updateValue(item, attribute, reply.value)

    def read_raw(self, item, attribute: int):
        """The value as sent (gurux scales a register's value by its scaler, as a float)."""
        return self._blocks(self.client.read(item, attribute)[0]).value

    def rows(self, requests) -> list:
        return self._blocks(requests[0]).value

    def objects(self) -> list[tuple[int, str]]:
        """The association's object list, as gurux parses it."""
        parsed = self.client.parseObjects(self._blocks(self.client.getObjectsRequest()).data, True)
        return [(int(item.objectType), item.logicalName) for item in parsed]


def gurux_session(port: int, expected_rows: list[list], latest: dict[str, Reading]) -> dict:
    seen: dict = {}
    management = Gurux(port, 1, 1)
    try:
        management.associate()
        seen["name"] = bytes(management.read(GXDLMSData("0.0.42.0.0.255"), 2))
        sap = GXDLMSSapAssignment("0.0.41.0.0.255")
        management.read(sap, 2)
        seen["saps"] = list(sap.sapAssignmentList)
        seen["clock"] = management.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    finally:
        management.close()
    meter = Gurux(port, 1, HEAT_SAP, counter=1000, pdu=256)  # small PDU: profiles come in many blocks
    try:
        meter.associate()
        seen["objects"] = meter.objects()
        for obis, quantity in (("6.0.1.0.0.255", "energy"), ("0.0.128.0.0.255", "volume")):
            register = GXDLMSRegister(obis)
            meter.read(register, 3)
            seen[quantity] = (Decimal(meter.read_raw(register, 2)).scaleb(_exponent(register.scaler)), register.unit)
        profile = GXDLMSProfileGeneric("0.0.99.1.0.255")
        meter.read(profile, 3)
        seen["entries"] = meter.rows(meter.client.readRowsByEntry(profile, 100, 3))
        first, last = expected_rows[10][0], expected_rows[149][0]
        seen["range"] = meter.rows(meter.client.readRowsByRange(profile, first.replace(tzinfo=None),
                                                                 last.replace(tzinfo=None)))
    finally:
        meter.close()
    public = Gurux(port, 16, 1)
    try:
        public.associate()
        seen["public_objects"] = public.objects()
        sap = GXDLMSSapAssignment("0.0.41.0.0.255")
        public.read(sap, 2)
        seen["public_saps"] = list(sap.sapAssignmentList)
        with pytest.raises(GXDLMSException) as denied:
            public.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        seen["public_clock"] = denied.value.errorCode
    finally:
        public.close()
    return seen


def _exponent(scaler: float) -> int:
    """gurux keeps a scaler as the power of ten itself (0.001 for -3)."""
    return int(Decimal(repr(scaler)).adjusted())


async def test_gurux_client_associates_with_hls_gmac_and_reads_what_the_store_holds(store) -> None:
    await store.append(heat_readings(200))
    latest, rows = await stored(store)
    async with serving(store) as server:
        seen = await asyncio.to_thread(gurux_session, server.port, rows, latest)
    assert seen["name"] == b"demogw1"
    assert seen["saps"] == seen["public_saps"] == [(1, "demogw1"), (HEAT_SAP, "KAM123456781b04")]
    assert isinstance(seen["clock"].value, datetime)
    assert seen["energy"] == (latest["energy"].value * 1000, 30)  # kWh -> Wh
    assert seen["volume"] == (latest["volume"].value, 13)
    as_rows = [[bytes(row[0]) if isinstance(row[0], (bytes, bytearray)) else row[0], *row[1:]]
               for row in seen["entries"]]
    assert [row[1:] for row in as_rows] == [row[1:] for row in rows[99:102]]
    assert [row[1:] for row in seen["range"]] == [row[1:] for row in rows[10:150]]
    assert seen["public_clock"] == 3  # read-write-denied
    assert {(3, "6.0.1.0.0.255"), (3, "0.0.128.0.0.255"), (1, "0.0.128.0.2.255"), (7, "0.0.99.1.0.255"),
            (8, "0.0.1.0.0.255"), (64, "0.0.43.0.2.255")} <= set(seen["objects"])
    assert seen["public_objects"] == [(15, "0.0.40.0.0.255"), (1, "0.0.42.0.0.255"), (17, "0.0.41.0.0.255")]


# --- dlms-cosem ------------------------------------------------------------------------------


class WrapperTransport:
    """A dlms-cosem transport for the IEC 62056-47 wrapper on TCP that reads each reply by the
    header's length field (never by scanning for an end)."""

    def __init__(self, port: int, client_sap: int, server_sap: int) -> None:
        self.port = port
        self.client_logical_address = client_sap
        self.server_logical_address = server_sap
        self.timeout = TIMEOUT_S
        self.sock: socket.socket | None = None

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)

    def disconnect(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send_request(self, apdu: bytes) -> bytes:
        self.sock.sendall(WrapperMessage(self.client_logical_address, self.server_logical_address,
                                         bytes(apdu)).to_bytes())
        header = self._exactly(HEADER_LENGTH)
        return self._exactly(int.from_bytes(header[6:8], "big"))

    def _exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return bytes(data)


class EntryAccess(their_access.EntryDescriptor):
    """dlms-cosem 25.1.0 has an entry descriptor it cannot encode (``to_bytes`` is not
    implemented): the selector and its four numbers, as the Blue Book (4.3.6) lays them out."""

    def to_bytes(self) -> bytes:
        numbers = (b"\x06", self.from_entry, 4), (b"\x06", self.to_entry, 4), \
            (b"\x12", self.from_selected_value, 2), (b"\x12", self.to_selected_value, 2)
        return b"\x02\x02\x04" + b"".join(tag + value.to_bytes(size, "big") for tag, value, size in numbers)


def _cosem_client(port: int, client_sap: int, server_sap: int, counter: int = 1, pdu: int = 65535) -> DlmsClient:
    transport = WrapperTransport(port, client_sap, server_sap)
    if client_sap != 1:
        return DlmsClient(transport=transport, authentication=their_security.NoSecurityAuthentication())
    return DlmsClient(transport=transport,
                      authentication=their_security.HighLevelSecurityGmacAuthentication(challenge_length=16),
                      encryption_key=KEYS.encryption_key, authentication_key=KEYS.authentication_key,
                      client_system_title=bytes.fromhex("434F534D00000001"), client_initial_invocation_counter=counter,
                      block_transfer=True, max_pdu_size=pdu)


def _attribute(interface, obis: str, attribute: int):
    return their_cosem.CosemAttribute(interface, TheirObis.from_string(obis), attribute)


def _value(raw: bytes):
    return DlmsDataParser().parse(raw)[0]


def cosem_session(port: int, expected_rows: list[list]) -> dict:
    seen: dict = {}
    with _cosem_client(port, 1, 1).session() as client:
        seen["name"] = bytes(_value(client.get(_attribute(their_enums.CosemInterface.DATA, "0.0.42.0.0.255", 2))).value)
        saps = _value(client.get(_attribute(their_enums.CosemInterface.SAP_ASSIGNMENT, "0.0.41.0.0.255", 2)))
        seen["saps"] = [(s.value[0].value, bytes(s.value[1].value)) for s in saps.value]
        seen["clock"] = _value(client.get(_attribute(their_enums.CosemInterface.CLOCK, "0.0.1.0.0.255", 2))).value
    with _cosem_client(port, 1, HEAT_SAP, counter=500, pdu=300).session() as client:
        register = _attribute(their_enums.CosemInterface.REGISTER, "6.0.1.0.0.255", 2)
        scaler_unit = _attribute(their_enums.CosemInterface.REGISTER, "6.0.1.0.0.255", 3)
        scaler, unit = (item.value for item in _value(client.get(scaler_unit)).value)
        seen["energy"] = (Decimal(_value(client.get(register)).value).scaleb(scaler), unit)
        buffer = _attribute(their_enums.CosemInterface.PROFILE_GENERIC, "0.0.99.1.0.255", 2)
        clock = TheirCaptureObject(their_cosem.CosemAttribute(their_enums.CosemInterface.CLOCK,
                                                              TheirObis.from_string("0.0.1.0.0.255"), 2), 0)
        window = their_access.RangeDescriptor(clock, expected_rows[10][0], expected_rows[149][0])
        seen["range"] = _value(client.get(buffer, window)).value
        seen["entries"] = _value(client.get(buffer, EntryAccess(100, 102))).value
    with _cosem_client(port, 16, 1).session() as public:
        saps = _value(public.get(_attribute(their_enums.CosemInterface.SAP_ASSIGNMENT, "0.0.41.0.0.255", 2)))
        seen["public_saps"] = [(s.value[0].value, bytes(s.value[1].value)) for s in saps.value]
        with pytest.raises(DataResultError, match="READ_WRITE_DENIED"):
            public.get(_attribute(their_enums.CosemInterface.CLOCK, "0.0.1.0.0.255", 2))
    return seen


def _columns(row) -> list:
    return [item.value for item in row.value[1:]]


async def test_dlms_cosem_client_associates_with_hls_gmac_and_reads_what_the_store_holds(store) -> None:
    await store.append(heat_readings(200))
    latest, rows = await stored(store)
    async with serving(store) as server:
        seen = await asyncio.to_thread(cosem_session, server.port, rows)
    assert seen["name"] == b"demogw1"
    assert seen["saps"] == seen["public_saps"] == [(1, b"demogw1"), (HEAT_SAP, b"KAM123456781b04")]
    assert isinstance(seen["clock"], (datetime, bytes, bytearray, tuple))
    assert seen["energy"] == (latest["energy"].value * 1000, 30)
    assert [_columns(row) for row in seen["range"]] == [row[1:] for row in rows[10:150]]
    assert [_columns(row) for row in seen["entries"]] == [row[1:] for row in rows[99:102]]
    assert T0 + timedelta(minutes=15 * 199) == rows[-1][0]
