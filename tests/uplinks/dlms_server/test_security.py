"""What the management association refuses: wrong keys, replayed invocation counters, altered
tags, plaintext, malformed APDUs and broken wrapper headers. Each is refused, the connection
goes on serving (or closes cleanly), nothing crashes, and the refusals are stored as
rate-limited ``security.refused`` events."""

from __future__ import annotations

from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.association import (
    Associated,
    AssociationRejected,
    ClientAssociation,
    ClientSettings,
    NextRequest,
    RequestFailed,
)
from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import SecurityKeys, cipher_apdu
from gateway.codecs.dlms.services import ActionRequestNormal, GetRequestNormal, MethodDescriptor
from gateway.codecs.dlms.xdlms import ExceptionResponse
from gateway.model import Event
from tests.uplinks.dlms_server.conftest import CLIENT_TITLE, KEYS, NAME, Client, management_settings, serving

WRONG = bytes(range(100, 116))
DECIPHERING_ERROR = ExceptionResponse(1, 5)


async def security_events(store) -> list[Event]:
    return [s.record for s in await store.read_after(0, 1000)
            if isinstance(s.record, Event) and s.record.code == "security.refused"]


async def healthy(client: Client) -> None:
    """The connection still serves a ciphered GET."""
    assert (await client.get(NAME)).value == b"demogw1"


async def test_a_wrong_authentication_or_encryption_key_is_refused_and_recorded(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        for keys in (SecurityKeys(KEYS.encryption_key, WRONG), SecurityKeys(WRONG, KEYS.authentication_key)):
            client.association = ClientAssociation(management_settings(keys), client.counters)
            rejected = await client.associate()
            assert isinstance(rejected, AssociationRejected) and "deciphering-error" in rejected.reason
        client.association = ClientAssociation(management_settings(), client.counters)
        assert isinstance(await client.associate(), Associated)
        await healthy(client)
    events = await security_events(store)
    assert events and all(e.details["peer"].startswith("127.0.0.1:") for e in events)
    assert server.stats.security_refused == 2


async def test_a_replayed_request_and_an_altered_tag_are_refused_and_the_association_goes_on(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        await client.associate()
        request = client.association.send_get(NAME)
        client.association.receive_apdu(await client.exchange(request))
        assert decode_apdu(await client.exchange(request)) == DECIPHERING_ERROR  # replayed
        altered = bytearray(client.association.send_get(NAME))
        altered[-1] ^= 0x01
        answer = await client.exchange(bytes(altered))
        assert decode_apdu(answer) == DECIPHERING_ERROR
        assert isinstance(client.association.receive_apdu(answer), RequestFailed)
        await healthy(client)
    reasons = {e.details["reason"] for e in await security_events(store)}
    assert {"invocation-counter", "authentication-tag"} <= reasons


async def test_plaintext_on_the_management_association_is_refused(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        plain = Client(server.port, settings=ClientSettings())  # LN context, no authentication
        async with plain:
            rejected = await plain.associate()
            assert isinstance(rejected, AssociationRejected)
            assert "application-context-name-not-supported" in rejected.reason
        await client.associate()
        answer = await client.exchange(GetRequestNormal(NAME).to_bytes())
        assert decode_apdu(answer) == DECIPHERING_ERROR
        await healthy(client)
    reasons = {e.details["reason"] for e in await security_events(store)}
    assert {"aarq", "tag"} <= reasons


async def test_a_failed_hls_pass_3_is_refused_and_recorded(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        event = client.association.receive_apdu(await client.exchange(client.association.send_aarq()))
        assert isinstance(event, NextRequest)  # the client would answer the challenge now; it lies
        forged = ActionRequestNormal(MethodDescriptor(15, Obis(0, 0, 40, 0, 0), 1),
                                     Data(DataType.OCTET_STRING, b"\x10" + bytes(16)))
        ciphered = cipher_apdu(forged.to_bytes(), keys=KEYS, system_title=CLIENT_TITLE,
                               invocation_counter=client.counters.next_outgoing(CLIENT_TITLE))
        answer = decode_apdu(await client.exchange(ciphered.to_bytes()))
        assert answer.security_control == 0x30  # a ciphered ACTION-Response ...
        assert server.stats.associations_refused == 1
        assert decode_apdu(await client.exchange(GetRequestNormal(NAME).to_bytes())) == ExceptionResponse(1, 1)
    assert {e.details["reason"] for e in await security_events(store)} == {"hls"}


async def test_malformed_apdus_and_broken_wrapper_headers_leave_the_connection_serving(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        await client.associate()
        for junk in (b"\x99\x01\x02", b"\xc0\x01", b"\xdb\x08" + bytes(3)):
            assert isinstance(decode_apdu(await client.exchange(junk)), ExceptionResponse)
        garbage = cipher_apdu(b"\xc0\x01\xc1\xff", keys=KEYS, system_title=CLIENT_TITLE,
                              invocation_counter=client.counters.next_outgoing(CLIENT_TITLE))
        assert decode_apdu(await client.exchange(garbage.to_bytes())) == ExceptionResponse(1, 3)
        client.writer.write(b"\x00\x07garbage" + b"\x00\x01\x00\x01\x00\x01\xff\xff")  # bad version, too long
        await healthy(client)
        assert server.stats.malformed >= 5
    async with serving(store) as server, Client(server.port, counter=100) as client:
        client.writer.write(bytes(range(2, 256)) * 64)  # noise, then a proper association
        assert isinstance(await client.associate(), Associated)


async def test_a_flood_of_refusals_stores_few_events_and_counts_the_rest(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        await client.associate()
        request = client.association.send_get(NAME)
        client.association.receive_apdu(await client.exchange(request))
        for _ in range(50):
            await client.exchange(request)
        await healthy(client)
        status = server.status()
    events = await security_events(store)
    assert len(events) == 1 and status["security_refused"] == 50
    assert status["security_events_suppressed"] == 49
