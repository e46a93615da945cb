"""A DLMS meter during a key change's overlap: while it still holds its previous keys the
collector associates with them (readings flagged ``previous_key``, no refusal raised), once
the overlap is over only the new keys count; its invocation counters are kept per key
generation; key_transfer_data wraps each key with the KEK as RFC 3394 says."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from gateway.codecs.dlms.axdr import DataType
from gateway.codecs.dlms.security import SecurityKeys
from gateway.collectors.dlms import DlmsCollector, MemoryState, counter_name, key_transfer_data
from gateway.collectors.dlms_session import AssociationRefused
from gateway.model import Event
from tests.collectors.dlms_helpers import line, meter, secret_file
from tests.collectors.dlms_sim_meter import serving
from tests.collectors.polling import ListSink, running
from tests.lifecycle.secured_dlms_meter import SecuredMeter

UTC = ZoneInfo("UTC")
OLD_EK, OLD_AK = "5A4B3C2D1E0F00112233445566778899", "A0B1C2D3E4F5061728394A5B6C7D8E9F"
NEW_EK, NEW_AK = "11111111222222223333333344444444", "55555555666666667777777788888888"


def rekeyed(tmp_path, until: datetime):
    files = {"ek_file": secret_file(tmp_path, "ek", NEW_EK), "ak_file": secret_file(tmp_path, "ak", NEW_AK),
             "previous_ek_file": secret_file(tmp_path, "pek", OLD_EK),
             "previous_ak_file": secret_file(tmp_path, "pak", OLD_AK)}
    return meter(tmp_path, security="hls-gmac", keys=files, objects=["1.0.1.8.0.255"], key_generation=1,
                 key_overlap_until=until)


async def test_a_meter_still_on_its_previous_keys_is_read_with_them_during_the_overlap(tmp_path):
    sim = SecuredMeter(keys=SecurityKeys(bytes.fromhex(OLD_EK), bytes.fromhex(OLD_AK)))
    sink, state = ListSink(), MemoryState()
    async with serving(sim) as address:
        config = rekeyed(tmp_path, datetime.now(timezone.utc) + timedelta(hours=1))
        collector = DlmsCollector(line(tcp=address), [config], sink, UTC, state=state)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("m1"), 20)
    assert readings and all(r.flags == ("previous_key",) for r in readings)
    assert not [e for e in sink.of(Event) if e.code == "security.refused"]
    assert sim.refused == 1  # the new keys, tried first
    assert any(key.startswith("dlms.ic.in.m1") and not key.endswith(".k1") for key in state.values)


async def test_after_the_overlap_only_the_new_keys_count(tmp_path):
    sim = SecuredMeter(keys=SecurityKeys(bytes.fromhex(OLD_EK), bytes.fromhex(OLD_AK)))
    sink = ListSink()
    async with serving(sim) as address:
        config = rekeyed(tmp_path, datetime.now(timezone.utc) - timedelta(seconds=1))
        collector = DlmsCollector(line(tcp=address), [config], sink, UTC, state=MemoryState())
        async with running(collector):
            with pytest.raises(AssociationRefused):
                await asyncio.wait_for(collector.read_now("m1"), 20)
    assert [e.code for e in sink.of(Event)] == ["security.refused", "comm.failed"]


async def test_readings_under_the_new_keys_carry_no_flag_and_count_under_the_new_generation(tmp_path):
    sim = SecuredMeter(keys=SecurityKeys(bytes.fromhex(NEW_EK), bytes.fromhex(NEW_AK)))
    state = MemoryState()
    async with serving(sim) as address:
        config = rekeyed(tmp_path, datetime.now(timezone.utc) + timedelta(hours=1))
        collector = DlmsCollector(line(tcp=address), [config], ListSink(), UTC, state=state)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("m1"), 20)
    assert readings and all(r.flags == () for r in readings)
    assert {r.protection for r in readings} == {"authenticated+encrypted:dlms-suite0"}
    assert counter_name(config) == "m1.k1" and counter_name(config, previous=True) == "m1"
    assert any(key.startswith("dlms.ic.in.m1.k1") for key in state.values)


def test_key_transfer_data_is_an_array_of_key_ids_and_keys_wrapped_with_the_kek():
    kek = bytes(range(16))
    data = key_transfer_data({"ek": bytes.fromhex(NEW_EK), "ak": bytes.fromhex(NEW_AK)}, kek)
    assert data.type is DataType.ARRAY
    (ek_id, ek_wrapped), (ak_id, ak_wrapped) = ([item.value for item in entry.value] for entry in data.value)
    assert (ek_id, ak_id) == (0, 2)
    assert len(ek_wrapped) == 24  # RFC 3394: the key and one 64-bit integrity block
    assert aes_key_unwrap(kek, bytes(ek_wrapped)).hex().upper() == NEW_EK
    assert aes_key_unwrap(kek, bytes(ak_wrapped)).hex().upper() == NEW_AK


def test_rfc_3394_vector_4_1_wraps_as_published():
    """RFC 3394 4.1: 128-bit key data with a 128-bit KEK (the wrap the suite 0 key transfer uses)."""
    data = key_transfer_data({"ek": bytes.fromhex("00112233445566778899AABBCCDDEEFF")},
                             bytes.fromhex("000102030405060708090A0B0C0D0E0F"))
    wrapped = bytes(data.value[0].value[1].value)
    assert wrapped.hex().upper() == "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
