"""IEC 62056-21 mode E opening: request, identification, option select, echo and parity."""

from __future__ import annotations

import pytest

from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError
from gateway.codecs.dlms.link_events import NeedData
from gateway.codecs.dlms.mode_e import (
    OPENING_FORMAT,
    Identification,
    ModeEOpening,
    SerialFormat,
    decode_identification,
    option_select,
    sign_on_request,
    with_even_parity,
)

# An identification as IEC 62056-21 6.3.2 lays it out: "/", manufacturer ISk (lower-case
# third letter: 20 ms reaction), baud rate character 5 (9600), "\2" (binary mode), the rest.
MODE_E_METER = b"/ISk5\\2MT382-1000\r\n"
MODE_C_METER = b"/LGZ4ZMD3104100.B32\r\n"


def test_request_message_without_and_with_device_address():
    assert sign_on_request() == b"/?!\r\n"
    assert sign_on_request("12345678") == b"/?12345678!\r\n"


@pytest.mark.parametrize("address", ["a/b", "x" * 33, "12!"])
def test_a_device_address_outside_the_standard_cannot_be_sent(address):
    with pytest.raises(ValueError):
        sign_on_request(address)


def test_mode_e_identification_decodes_field_by_field():
    ident = decode_identification(MODE_E_METER)
    assert (ident.manufacturer, ident.baud_char, ident.identification, ident.enhanced) == ("ISk", "5", "MT382-1000", ("2",))
    assert ident.mode_e and ident.fast_reaction
    assert ident.baud_rate == 9600
    assert ident.raw == MODE_E_METER


def test_mode_c_identification_has_no_mode_e():
    ident = decode_identification(MODE_C_METER)
    assert (ident.manufacturer, ident.baud_rate, ident.mode_e, ident.fast_reaction) == ("LGZ", 4800, False, False)


def test_option_select_switches_to_hdlc_at_the_offered_rate():
    opening = ModeEOpening()
    opening.sign_on()
    opening.receive_data(MODE_E_METER)
    assert isinstance(opening.next_event(), Identification)
    assert opening.acknowledge() == b"\x06" + b"252\r\n"
    assert opening.baud_rate == 9600
    assert opening.hdlc_format == SerialFormat(9600, 8, "N", 1)
    assert OPENING_FORMAT == SerialFormat(300, 7, "E", 1)


def test_the_rate_can_be_capped_below_what_the_meter_offers():
    opening = ModeEOpening(max_baud_rate=4800)
    opening.receive_data(MODE_E_METER)
    opening.next_event()
    assert opening.acknowledge() == b"\x06242\r\n"
    assert opening.baud_rate == 4800


def test_a_meter_without_mode_e_is_not_switched_to_hdlc():
    opening = ModeEOpening()
    opening.receive_data(MODE_C_METER)
    opening.next_event()
    with pytest.raises(DLMSError, match="does not offer mode E"):
        opening.acknowledge()


def test_acknowledging_before_an_identification_is_a_usage_error():
    with pytest.raises(DLMSError, match="no identification"):
        ModeEOpening().acknowledge()


def test_option_select_message_layout():
    assert option_select("6") == bytes([0x06, 0x32, 0x36, 0x32, 0x0D, 0x0A])
    with pytest.raises(ValueError):
        option_select("56")


def test_identification_fed_byte_by_byte_after_the_echo_of_our_request():
    opening = ModeEOpening()
    stream = opening.sign_on() + b"\x00" + MODE_E_METER
    for byte in stream[:-1]:
        opening.receive_data(bytes([byte]))
        assert isinstance(opening.next_event(), NeedData)
    opening.receive_data(stream[-1:])
    assert opening.next_event() == decode_identification(MODE_E_METER)
    assert opening.skipped_bytes == 6  # the echoed request and one noise byte


def test_parity_bits_from_a_port_running_8n1_are_stripped():
    opening = ModeEOpening()
    opening.receive_data(with_even_parity(MODE_E_METER))
    assert opening.next_event() == decode_identification(MODE_E_METER)


def test_even_parity_sets_bit_seven_on_characters_with_an_odd_number_of_ones():
    assert with_even_parity(b"/?!\r\n") == bytes([0xAF, 0x3F, 0x21, 0x8D, 0x0A])


@pytest.mark.parametrize(
    ("line", "field", "offset"),
    [
        (b"/IS\x015MT382\r\n", "identification", 3),
        (b"/1SK5MT382\r\n", "manufacturer", 1),
        (b"/ISK5MT382\\\r\n", "enhanced", 10),
        (b"/ISK\r\n", "identification", 6),
        (b"ISK5MT382\r\n", "start", 0),
        (b"/ISK5MT382\n", "end", 9),
        (b"/ISK5" + b"M" * 70 + b"\r\n", "identification", 64),
    ],
)
def test_malformed_identifications_are_rejected_with_field_and_offset(line, field, offset):
    with pytest.raises(DLMSFrameError) as info:
        decode_identification(line)
    assert (info.value.field, info.value.offset) == (field, offset)


def test_a_line_without_end_is_given_up_and_the_next_identification_found():
    opening = ModeEOpening()
    opening.receive_data(b"/" + b"x" * 80)
    with pytest.raises(DLMSFrameError, match="no CR LF"):
        opening.next_event()
    opening.receive_data(MODE_E_METER)
    assert opening.next_event() == decode_identification(MODE_E_METER)


def test_a_broken_identification_raises_once_then_the_next_one_is_read():
    opening = ModeEOpening()
    opening.receive_data(b"/1SK5X\r\n" + MODE_E_METER)
    with pytest.raises(DLMSFrameError):
        opening.next_event()
    assert opening.next_event().manufacturer == "ISk"
