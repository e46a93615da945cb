"""The package's wireless M-Bus dongle simulator: what each dongle answers, how it frames the
telegrams it hears, the meter model's telegrams (checked against an independent builder),
and its command line."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.dongles.amber import AmberAdapter, AmberConfirm
from gateway.codecs.mbus.dongles.cul import CulAdapter, CulText
from gateway.codecs.mbus.dongles.imst import HciMessage, ImstDeviceInfo, ImstHci
from gateway.codecs.mbus.errors import MBusAuthenticationError
from gateway.codecs.mbus.records import encode_record
from gateway.codecs.mbus.telegram import decode_telegram
from gateway.codecs.mbus.wireless import WMBusDecoder
from gateway.codecs.mbus.wireless_link import LinkMode, decode_frame
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.simulators.wmbus import AmberDongle, CulDongle, ImstDongle, WirelessMeterModel

from tests.codecs.mbus.wmbus_builders import mode5_telegram

KEY = bytes(range(16))
CLOCK = datetime(2026, 5, 4, 3, 2)


def meter(**kwargs) -> WirelessMeterModel:
    kwargs.setdefault("wall_clock", lambda: CLOCK)
    return WirelessMeterModel(**kwargs)


def events(adapter, data: bytes) -> list:
    adapter.receive_data(data)
    out = []
    while (event := adapter.next_event()) is not None:
        out.append(event)
    return out


# -- the meter model --------------------------------------------------------------------------------

@given(st.integers(1, 255))
def test_an_encrypted_telegram_is_the_one_an_independent_mode_5_builder_makes(count):
    model = meter(identification="12345678", manufacturer="ELS", version=0x33, device_type=0x03, key=AesKey(KEY))
    records = b"".join(encode_record(record) for record in model.records_at(count))
    assert model.telegram_at(count) == mode5_telegram(KEY, access=count, records=records)


def test_the_meter_model_counts_its_volume_up_by_one_step_per_telegram():
    model = meter(key=AesKey(KEY))
    decoder = WMBusDecoder()
    volumes = []
    for _ in range(3):
        decoded = decoder.decode(model.next_telegram(), key=AesKey(KEY))
        assert decoded.telegram.security.mode == 5 and decoded.header.access_number == model.sent
        volumes.append(decoded.records[0].value)
    assert volumes == [Decimal("123.463"), Decimal("123.470"), Decimal("123.477")]
    assert decoded.records[2].value == CLOCK and decoded.records[3].storage == 1


def test_a_plaintext_meter_sends_no_security_and_another_key_fails_the_2f2f_check():
    plain = decode_telegram(meter().telegram_at(1))
    assert plain.security.encrypted is False
    with pytest.raises(MBusAuthenticationError, match="2F2F"):
        decode_telegram(meter(key=AesKey(KEY)).telegram_at(1), key=AesKey(bytes(16)))


# -- the dongles --------------------------------------------------------------------------------------

def test_an_imst_dongle_answers_device_info_and_set_config_as_the_hci_spec_says():
    dongle = ImstDongle()
    info, = events(ImstHci(), dongle.received(ImstHci.command_get_device_info()))
    assert isinstance(info, ImstDeviceInfo) and info.module == "iM871A"
    assert not dongle.receiving
    answer, = events(ImstHci(), dongle.received(ImstHci.command_set_link_mode("C1", "T1")))
    assert answer == HciMessage(0x01, 0x04, b"\x00")
    assert dongle.modes == {LinkMode.C1, LinkMode.T1} and dongle.inits == 1


def test_an_amber_dongle_answers_parameters_from_its_memory_and_confirms_the_mode():
    dongle = AmberDongle(command_output=False, rssi=True)
    out = dongle.received(AmberAdapter.command_get_parameter(0x05) + AmberAdapter.command_get_parameter(0x45))
    assert events(AmberAdapter(), out) == [AmberConfirm(0x8A, b"\x05\x01\x00"), AmberConfirm(0x8A, b"\x45\x01\x01")]
    assert events(AmberAdapter(), dongle.received(AmberAdapter.command_set_link_mode("S1"))) == [AmberConfirm(0x84, b"\x00")]
    assert dongle.modes == {LinkMode.S1}


def test_a_cul_stick_answers_its_version_and_mode_and_takes_x21_silently():
    dongle = CulDongle()
    out = dongle.received(CulAdapter.command_version() + CulAdapter.command_report_rssi() + b"brc\r")
    out += dongle.received(b"\n")
    assert events(CulAdapter(), out) == [CulText("V 1.67 nanoCUL868"), CulText("CMODE")]
    assert dongle.rssi and dongle.modes == {LinkMode.C1}


@pytest.mark.parametrize("make", [
    lambda: (ImstDongle(), ImstHci()),
    lambda: (AmberDongle(), AmberAdapter(rssi=True)),
    lambda: (AmberDongle(command_output=False), AmberAdapter(rssi=True, transparent=True)),
    lambda: (CulDongle(), CulAdapter()),
], ids=["imst", "amber", "amber-transparent", "cul"])
@pytest.mark.parametrize("mode", ["T1", "C1"])
def test_each_dongle_hands_over_a_heard_telegram_that_its_adapter_reads_back_with_the_rssi(make, mode):
    dongle, adapter = make()
    command = {ImstDongle: ImstHci, AmberDongle: AmberAdapter}.get(type(dongle))
    dongle.received(command.command_set_link_mode(mode) if command else CulAdapter.command_report_rssi()
                    + CulAdapter.command_set_link_mode(mode))
    frame = meter(key=AesKey(KEY)).telegram_at(7)
    (heard,) = events(adapter, dongle.indication(frame, -71))
    assert isinstance(heard, ReceivedTelegram)
    assert decode_frame(heard.frame, frame_format=heard.frame_format).to_bytes() == frame
    assert heard.rssi_dbm == -71


@pytest.mark.parametrize("make", [lambda: (ImstDongle(), ImstHci()), lambda: (AmberDongle(), AmberAdapter()),
                                  lambda: (CulDongle(), CulAdapter())], ids=["imst", "amber", "cul"])
def test_line_noise_is_skipped_whole_by_the_dongles_adapter(make):
    dongle, adapter = make()
    assert events(adapter, dongle.garbage(random.Random(1), 40)) == []
    assert adapter.skipped_bytes == 40


# -- the command line ------------------------------------------------------------------------------

def test_the_command_line_explains_itself():
    out = subprocess.run([sys.executable, "-m", "gateway.simulators.wmbus", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for option in ("--dongle", "--meter", "--meters", "--garbage", "--repeat", "--wrong-key", "--silent-after"):
        assert option in out.stdout


@pytest.mark.integration
def test_the_command_line_prints_its_pty_and_serves_until_terminated():
    process = subprocess.Popen([sys.executable, "-m", "gateway.simulators.wmbus", "--dongle", "cul", "--meters", "1"],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("PTY /dev/") and os.path.exists(line.split()[1])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
