"""Mutated vectors fed to the public decoders raise nothing but the codec's own errors
(a longer run: tests/bench/fuzz_dlms_apdu.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.association import (
    ClientAssociation,
    ClientSettings,
    NextRequest,
    SecuritySettings,
    State,
)
from gateway.codecs.dlms.axdr import decode_data
from gateway.codecs.dlms.errors import DLMSError, DLMSStateError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.services import AttributeDescriptor

from gateway.codecs.dlms.server import ServerAssociation, ServerSettings, ServerState, ServiceRequest

from .fake_meter import CLIENT_TITLE, GREEN_KEYS, METER_TITLE, FakeMeter
from .mutations import mutations

COUNT = 4000


def decode_or_refuse(decoder, raw: bytes) -> bool:
    try:
        decoder(raw)
    except DLMSError:
        return False
    return True


def test_mutated_vectors_decode_or_raise_dlms_errors_only():
    decoded = refused = 0
    for raw in mutations(COUNT, seed=1):
        if decode_or_refuse(decode_apdu, raw):
            decoded += 1
        else:
            refused += 1
        decode_or_refuse(decode_data, raw)
        decode_or_refuse(decode_data, raw[1:])
    # Both outcomes occur: the mutations reach past the first byte.
    assert decoded > 100 and refused > 100


def test_a_ready_association_fed_mutated_apdus_raises_dlms_errors_only():
    meter = FakeMeter(ciphered=True)
    client = ClientAssociation(ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, GREEN_KEYS)))
    event = client.receive_apdu(meter.handle(client.send_aarq()))
    assert not isinstance(event, NextRequest)
    clock = AttributeDescriptor(8, Obis(0, 0, 1, 0, 0, 255), 2)
    for raw in mutations(1000, seed=2):
        if client.state is State.READY:
            client.send_get(clock)
        decode_or_refuse(client.receive_apdu, raw)
    assert client.state in (State.READY, State.AWAITING_RESPONSE)


@given(st.binary(max_size=64))
@settings(max_examples=1000, deadline=None)
def test_random_bytes_decode_or_raise_dlms_errors_only(raw):
    decode_or_refuse(decode_apdu, raw)
    decode_or_refuse(decode_data, raw)


@pytest.mark.parametrize("ciphered", [False, True])
def test_a_ready_server_fed_mutated_apdus_raises_dlms_errors_only(ciphered):
    security = SecuritySettings(METER_TITLE, GREEN_KEYS) if ciphered else None
    server = ServerAssociation(ServerSettings(ciphered=ciphered, security=security))
    client = ClientAssociation(ClientSettings(ciphered=ciphered, security=SecuritySettings(CLIENT_TITLE, GREEN_KEYS)))
    for raw in mutations(1000, seed=3):
        if server.state is not ServerState.READY:
            client.abort()
            client.receive_apdu(server.receive_apdu(client.send_aarq()).apdu)
        try:
            event = server.receive_apdu(raw)
        except DLMSError as error:
            server.refuse(error)
            continue
        if isinstance(event, ServiceRequest):
            server.refuse(DLMSStateError("not served in this test"))
