"""IEC 62056-46 HDLC frames: the published vectors five ways, addresses, control fields,
negotiation parameters, and a stream parser that trusts the length field, not 0x7E."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.hdlc import (
    FCS16_TABLE,
    LLC_COMMAND,
    LLC_RESPONSE,
    Control,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
    HdlcParser,
    decode_frame,
    fcs16,
    physical_address_from_serial,
)
from tests.codecs.dlms.hdlc_vectors import HDLC_VECTOR_IDS, VECTORS, units_from_chunks, vector_frame

CLIENT_16 = HdlcAddress(16)
SERVER_1_17 = HdlcAddress(1, 17, 2)

# What each vector holds, read from the bytes and the vector's description (not from this
# codec): destination, source, control kind, N(S), N(R), P/F, information field.
EXPECTED = {
    "hdlc_snrm": (SERVER_1_17, CLIENT_16, "SNRM", None, None, True, ""),
    "hdlc_ua_with_params": (
        CLIENT_16,
        SERVER_1_17,
        "UA",
        None,
        None,
        True,
        "81801205019A06019A070400000001080400000001",
    ),
    "hdlc_iframe_aarq": (
        SERVER_1_17,
        CLIENT_16,
        "I",
        0,
        0,
        True,
        "E6E600601DA109060760857405080101BE10040E01000000065F1F0400001E1DFFFF",
    ),
    "hdlc_iframe_aare": (
        CLIENT_16,
        SERVER_1_17,
        "I",
        0,
        1,
        True,
        "E6E7006129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F0400001E1D04C80007",
    ),
}
# Offset of the HCS (frames with information) from the opening flag: flag, format (2),
# destination (2), source (1), control.
HCS_OFFSET = 7


def test_every_hdlc_vector_is_in_the_corpus():
    assert set(HDLC_VECTOR_IDS) <= set(VECTORS)


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_vector_decodes_field_by_field(vector_id):
    frame = decode_frame(vector_frame(vector_id))
    dest, src, kind, ns, nr, pf, info = EXPECTED[vector_id]
    assert (frame.destination, frame.source) == (dest, src)
    assert (frame.kind, frame.control.ns, frame.control.nr, frame.control.poll_final) == (kind, ns, nr, pf)
    assert frame.info == bytes.fromhex(info)
    assert frame.segmented is False


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_vector_reencodes_to_the_same_bytes(vector_id):
    raw = vector_frame(vector_id)
    assert decode_frame(raw).to_bytes() == raw


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_vector_built_from_its_fields_gives_the_published_bytes(vector_id):
    dest, src, kind, ns, nr, pf, info = EXPECTED[vector_id]
    if kind == "I":
        control = Control.information(ns, nr, pf)
    else:
        control = Control.unnumbered(kind, pf)
    assert HdlcFrame(dest, src, control, bytes.fromhex(info)).to_bytes() == vector_frame(vector_id)


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_vector_fed_byte_by_byte_comes_out_once_at_the_closing_flag(vector_id):
    raw = vector_frame(vector_id)
    parser = HdlcParser()
    for byte in raw[:-1]:
        parser.receive_data(bytes([byte]))
        assert parser.next_frame() is None
    parser.receive_data(raw[-1:])
    assert parser.next_frame() == decode_frame(raw)
    assert parser.next_frame() is None and parser.buffered == 0
    assert (parser.frames, parser.skipped_bytes, parser.errors) == (1, 0, 0)


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_junk_before_and_after_a_vector_is_skipped_and_counted(vector_id):
    raw = vector_frame(vector_id)
    parser = HdlcParser()
    parser.receive_data(b"\x00\xff\x42" + raw + b"\x01\x02")
    assert parser.next_frame() == decode_frame(raw)
    assert parser.next_frame() is None
    assert parser.skipped_bytes == 5


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_strict_decoder_rejects_a_vector_with_trailing_junk(vector_id):
    raw = vector_frame(vector_id)
    with pytest.raises(DLMSFrameError, match="trailing") as info:
        decode_frame(raw + b"\x00")
    assert info.value.offset == len(raw)


@pytest.mark.parametrize("vector_id", HDLC_VECTOR_IDS)
def test_vector_with_a_flipped_information_byte_fails_the_fcs_at_its_offset(vector_id):
    raw = bytearray(vector_frame(vector_id))
    raw[-4] ^= 0x01  # last information byte (the control field of the SNRM)
    with pytest.raises(DLMSFrameError) as info:
        decode_frame(bytes(raw))
    assert (info.value.field, info.value.offset) == ("FCS", len(raw) - 3)


@pytest.mark.parametrize("vector_id", ["hdlc_ua_with_params", "hdlc_iframe_aarq", "hdlc_iframe_aare"])
def test_vector_with_a_flipped_header_byte_fails_the_hcs_at_its_offset(vector_id):
    raw = bytearray(vector_frame(vector_id))
    raw[4] ^= 0x40  # an address byte, extension bit untouched
    with pytest.raises(DLMSFrameError) as info:
        decode_frame(bytes(raw))
    assert (info.value.field, info.value.offset) == ("HCS", HCS_OFFSET)


def test_flipped_length_is_caught_by_the_hcs_without_waiting_for_the_claimed_length():
    raw = bytearray(vector_frame("hdlc_iframe_aarq"))
    raw[2] = 0xFF  # claims 255 bytes
    parser = HdlcParser()
    parser.receive_data(bytes(raw[: HCS_OFFSET + 2]))
    with pytest.raises(DLMSFrameError) as info:
        parser.next_frame()
    assert info.value.field == "HCS"


def test_fcs_is_crc16_x25_with_its_check_value():
    assert fcs16(b"123456789") == 0x906E


def test_fcs_table_is_the_reflected_polynomial_0x8408():
    def entry(value: int) -> int:
        for _ in range(8):
            value = (value >> 1) ^ 0x8408 if value & 1 else value >> 1
        return value

    assert FCS16_TABLE == tuple(entry(i) for i in range(256))


def test_a_7e_inside_a_payload_does_not_cut_the_frame():
    frame = HdlcFrame(SERVER_1_17, CLIENT_16, Control.information(2, 3), LLC_COMMAND + b"\x7e\x7e\xa0\x7e" * 10)
    parser = HdlcParser()
    parser.receive_data(frame.to_bytes())
    assert parser.next_frame() == frame
    assert parser.skipped_bytes == 0


def test_two_frames_may_share_one_flag():
    first = HdlcFrame(CLIENT_16, SERVER_1_17, Control.supervisory("RR", 1)).to_bytes()
    second = HdlcFrame(CLIENT_16, SERVER_1_17, Control.information(0, 1), LLC_RESPONSE + b"\x01").to_bytes()
    parser = HdlcParser()
    parser.receive_data(first + second[1:])
    assert [parser.next_frame(), parser.next_frame()] == [decode_frame(first), decode_frame(second)]
    assert (parser.skipped_bytes, parser.buffered) == (0, 0)


def test_extra_flags_between_frames_are_fill_not_junk():
    raw = vector_frame("hdlc_snrm")
    parser = HdlcParser()
    parser.receive_data(b"\x7e\x7e" + raw + b"\x7e\x7e\x7e" + raw)
    assert parser.next_frame() == parser.next_frame() == decode_frame(raw)
    assert parser.skipped_bytes == 0


def test_parser_resynchronises_after_a_broken_frame():
    bad = bytearray(vector_frame("hdlc_iframe_aarq"))
    bad[-2] ^= 0xFF
    good = vector_frame("hdlc_iframe_aare")
    parser = HdlcParser()
    parser.receive_data(bytes(bad) + good)
    with pytest.raises(DLMSFrameError, match="FCS"):
        parser.next_frame()
    assert parser.next_frame() == decode_frame(good)
    assert parser.errors == 1
    assert parser.skipped_bytes == len(bad) - 2  # all but the dropped opening flag and the closing flag


def test_a_three_byte_address_is_rejected_with_its_offset():
    raw = bytes.fromhex("7EA009022223219300007E")
    with pytest.raises(DLMSFrameError, match="3 bytes") as info:
        decode_frame(raw)
    assert (info.value.field, info.value.offset) == ("destination", 3)


def test_an_address_longer_than_four_bytes_is_rejected():
    with pytest.raises(DLMSFrameError, match="longer than 4") as info:
        decode_frame(bytes.fromhex("7EA00A0202020202217E"))
    assert info.value.field == "destination"


def test_a_length_below_the_minimum_is_rejected():
    with pytest.raises(DLMSFrameError, match="below the minimum") as info:
        decode_frame(bytes.fromhex("7EA00303217E"))
    assert (info.value.field, info.value.offset) == ("format", 1)


def test_a_length_that_leaves_one_byte_for_hcs_and_information_is_rejected():
    body = bytes.fromhex("A009032193") + b"\x00\x00\x00\x00"
    with pytest.raises(DLMSFrameError, match="no room"):
        decode_frame(b"\x7e" + body + b"\x7e")


def test_a_wrong_closing_flag_is_rejected_at_its_offset():
    raw = bytearray(vector_frame("hdlc_snrm"))
    raw[-1] = 0x7F
    with pytest.raises(DLMSFrameError, match="closing flag") as info:
        decode_frame(bytes(raw))
    assert info.value.offset == len(raw) - 1


def test_an_incomplete_frame_says_how_much_is_missing():
    raw = vector_frame("hdlc_iframe_aare")
    with pytest.raises(DLMSFrameError, match="need 10 more"):
        decode_frame(raw[:-10])


def test_bytes_before_the_opening_flag_are_refused_by_the_strict_decoder():
    with pytest.raises(DLMSFrameError, match="bytes before the frame"):
        decode_frame(b"\x00" + vector_frame("hdlc_snrm"))


def test_segmentation_bit_round_trips():
    frame = HdlcFrame(CLIENT_16, SERVER_1_17, Control.information(0, 1, False), b"abc", segmented=True)
    raw = frame.to_bytes()
    assert raw[1] == 0xA8
    assert decode_frame(raw) == frame


def test_frame_longer_than_the_length_field_cannot_be_encoded():
    with pytest.raises(ValueError, match="11-bit"):
        HdlcFrame(SERVER_1_17, CLIENT_16, Control.information(0, 0), bytes(2040)).to_bytes()


def test_clear_counts_the_dropped_bytes():
    parser = HdlcParser()
    parser.receive_data(vector_frame("hdlc_snrm")[:5])
    parser.clear()
    assert (parser.buffered, parser.skipped_bytes) == (0, 5)


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        (HdlcAddress(16), "21"),
        (HdlcAddress(1), "03"),
        (HdlcAddress(1, 17, 2), "0223"),
        (HdlcAddress(0x7F, 0x7F, 2), "FEFF"),
        # Logical 1, physical 6678 (serial number 12345678): 14 bits each, 7 per byte.
        (HdlcAddress(1, 6678, 4), "0002682D"),
        (HdlcAddress(0x3FFF, 0x3FFF, 4), "FEFEFEFF"),
    ],
)
def test_addresses_of_every_size_have_their_wire_form(address, wire):
    assert address.to_bytes() == bytes.fromhex(wire)
    assert HdlcAddress.from_bytes(bytes.fromhex(wire)) == address


def test_server_address_takes_the_shortest_size_unless_told():
    assert HdlcAddress.server(1).size == 1
    assert HdlcAddress.server(1, 17).size == 2
    assert HdlcAddress.server(1, 200).size == 4
    assert HdlcAddress.server(1, 17, size=4).to_bytes() == bytes.fromhex("00020023")


def test_physical_address_from_serial_number_is_the_dlms_ua_formula():
    assert physical_address_from_serial(12345678) == 5678 + 1000
    assert physical_address_from_serial(9999) == 10999


@pytest.mark.parametrize(
    ("upper", "lower", "size"), [(128, None, 1), (1, None, 2), (1, 5, 1), (1, 128, 2), (1, 0x4000, 4), (1, 1, 3)]
)
def test_impossible_addresses_cannot_be_built(upper, lower, size):
    with pytest.raises(ValueError):
        HdlcAddress(upper, lower, size)


def test_reserved_addresses_are_named():
    assert HdlcAddress(0x7F).meaning == "all station (broadcast)"
    assert HdlcAddress(0x3FFF, 1, 4).meaning == "all station (broadcast)"
    assert HdlcAddress(1).meaning is None


# --- control field -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "value"),
    [
        # Bit patterns of IEC 62056-46 6.4.3 (tables 4 and 5), written out by hand.
        (Control.unnumbered("SNRM"), 0b1001_0011),
        (Control.unnumbered("DISC"), 0b0101_0011),
        (Control.unnumbered("UA"), 0b0111_0011),
        (Control.unnumbered("DM"), 0b0001_1111),
        (Control.unnumbered("FRMR"), 0b1001_0111),
        (Control.unnumbered("UI", False), 0b0000_0011),
        (Control.supervisory("RR", 5), 0b1011_0001),
        (Control.supervisory("RNR", 2, False), 0b0100_0101),
        (Control.information(3, 5), 0b1011_0110),
        (Control.information(7, 0, False), 0b0000_1110),
    ],
)
def test_control_fields_have_the_standard_bit_patterns(control, value):
    assert control.value == value
    assert Control(value).kind == control.kind


def test_control_field_names_sequence_numbers_and_poll_bit():
    control = Control(0b1011_0110)
    assert (control.kind, control.ns, control.nr, control.poll_final) == ("I", 3, 5, True)
    assert str(control) == "I N(S)=3 N(R)=5 P/F"
    rr = Control(0x51)
    assert (rr.kind, rr.ns, rr.nr) == ("RR", None, 2)


def test_a_control_field_the_profile_does_not_use_is_kept_as_unknown():
    frame = HdlcFrame(SERVER_1_17, CLIENT_16, Control(0x2F))  # SABM
    decoded = decode_frame(frame.to_bytes())
    assert decoded.kind == "unknown" and decoded.control.value == 0x2F


# --- negotiation parameters ----------------------------------------------------------------


def test_ua_vector_parameters_decode_and_reencode():
    info = decode_frame(vector_frame("hdlc_ua_with_params")).info
    params = HdlcParameters.from_info(info)
    assert params == HdlcParameters(max_info_tx=0x9A, max_info_rx=0x9A, window_tx=1, window_rx=1)
    assert params.to_info() == info


def test_absent_parameters_take_the_defaults():
    assert HdlcParameters.from_info(b"") == HdlcParameters(128, 128, 1, 1)
    assert HdlcParameters.from_info(bytes.fromhex("818003050164")) == HdlcParameters(max_info_tx=100)


def test_large_max_info_is_written_on_two_bytes_and_windows_on_four():
    info = HdlcParameters(max_info_tx=1024, window_rx=7).to_info()
    assert info.hex().upper() == "81801305020400060180070400000001080400000007"


def test_unknown_parameters_are_kept_and_written_back():
    info = bytes.fromhex("8180080501800903123456")
    params = HdlcParameters.from_info(info)
    assert params.other == ((0x09, bytes.fromhex("123456")),)
    assert HdlcParameters.from_info(params.to_info()) == params


@pytest.mark.parametrize(
    ("info", "field"),
    [
        ("8180", "group length"),
        ("8280020501", "format identifier"),
        ("8181020580", "group identifier"),
        ("8180050501", "group length"),
        ("818002050580", "group length"),
        ("81800305", "group length"),
        ("8180020502", "parameter length"),
        ("81800705050000000001", "max_info_tx"),
    ],
)
def test_broken_parameters_are_rejected_with_field(info, field):
    with pytest.raises(DLMSFrameError) as error:
        HdlcParameters.from_info(bytes.fromhex(info))
    assert error.value.field == field


def test_negotiation_bounds_each_direction_by_the_other_side():
    client = HdlcParameters(max_info_tx=512, max_info_rx=256, window_tx=7, window_rx=3)
    server = HdlcParameters(max_info_tx=128, max_info_rx=300, window_tx=1, window_rx=2)
    assert client.negotiate(server) == HdlcParameters(300, 128, 2, 1)


# --- properties --------------------------------------------------------------------------

addresses = st.one_of(
    st.builds(HdlcAddress, st.integers(0, 0x7F)),
    st.builds(HdlcAddress, st.integers(0, 0x7F), st.integers(0, 0x7F), st.just(2)),
    st.builds(HdlcAddress, st.integers(0, 0x3FFF), st.integers(0, 0x3FFF), st.just(4)),
)
frames = st.builds(
    HdlcFrame,
    destination=addresses,
    source=addresses,
    control=st.builds(Control, st.integers(0, 0xFF)),
    info=st.binary(max_size=300) | st.lists(st.sampled_from([0x7E, 0xA0, 0x00]), max_size=40).map(bytes),
    segmented=st.booleans(),
)


@given(frames)
def test_any_frame_round_trips_through_bytes(frame):
    assert decode_frame(frame.to_bytes()) == frame


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_frames_come_out_of_a_stream_in_any_chunking(batch, data):
    stream = b"".join(frame.to_bytes() for frame in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = HdlcParser()
    assert units_from_chunks(parser, parser.next_frame, stream, cuts) == batch
    assert (parser.skipped_bytes, parser.errors, parser.buffered) == (0, 0, 0)
