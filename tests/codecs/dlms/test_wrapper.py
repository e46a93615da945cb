"""IEC 62056-47 wrapper: a recorded exchange with the gurux meter five ways, bad versions and
oversized lengths, resynchronisation, and the connection interface shared with HDLC."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.link_events import ApduReceived, NeedData
from gateway.codecs.dlms.wrapper import (
    WrapperConnection,
    WrapperMessage,
    WrapperParser,
    decode_wrapper,
)
from tests.codecs.dlms.hdlc_vectors import AARQ_NO_AUTH, RECORDED_AARE, units_from_chunks

# Recorded on loopback from tests/peers/dlms-meter (gurux-dlms 1.0.203, --iface wrapper):
# the AARQ this codec sent and the AARE the meter answered.
RECORDED_REQUEST = bytes.fromhex("000100100001001f") + AARQ_NO_AUTH
RECORDED_REPLY = bytes.fromhex(
    "000100010010002b6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000121dffff0007"
)


def test_recorded_reply_decodes_field_by_field():
    message = decode_wrapper(RECORDED_REPLY)
    assert (message.source, message.destination) == (1, 16)
    assert message.apdu == RECORDED_AARE
    assert len(message.apdu) == 0x2B


@pytest.mark.parametrize("raw", [RECORDED_REQUEST, RECORDED_REPLY], ids=["request", "reply"])
def test_recorded_messages_reencode_to_the_same_bytes(raw):
    assert decode_wrapper(raw).to_bytes() == raw


def test_request_is_what_the_connection_sends_for_the_aarq():
    assert WrapperConnection().send_apdu(AARQ_NO_AUTH) == RECORDED_REQUEST


def test_recorded_reply_fed_byte_by_byte_comes_out_once_at_the_last_byte():
    parser = WrapperParser()
    for byte in RECORDED_REPLY[:-1]:
        parser.receive_data(bytes([byte]))
        assert parser.next_message() is None
    parser.receive_data(RECORDED_REPLY[-1:])
    assert parser.next_message() == decode_wrapper(RECORDED_REPLY)
    assert parser.buffered == 0


def test_strict_decoder_rejects_trailing_bytes():
    with pytest.raises(DLMSFrameError, match="trailing") as info:
        decode_wrapper(RECORDED_REPLY + b"\x00")
    assert info.value.offset == len(RECORDED_REPLY)


@pytest.mark.parametrize("index", [0, 1])
def test_a_flipped_version_byte_is_rejected(index):
    raw = bytearray(RECORDED_REPLY)
    raw[index] ^= 0x04
    with pytest.raises(DLMSFrameError, match="version") as info:
        decode_wrapper(bytes(raw))
    assert (info.value.field, info.value.offset) == ("version", 0)


def test_a_length_above_the_accepted_maximum_is_rejected():
    with pytest.raises(DLMSFrameError, match="exceeds") as info:
        decode_wrapper(RECORDED_REPLY, max_apdu_length=0x2A)
    assert (info.value.field, info.value.offset) == ("length", 6)


def test_an_incomplete_message_says_how_much_is_missing():
    with pytest.raises(DLMSFrameError, match="need 5 more"):
        decode_wrapper(RECORDED_REPLY[:-5])


def test_junk_before_a_message_raises_once_then_the_stream_resynchronises():
    parser = WrapperParser()
    parser.receive_data(b"\x7e\xa0\x33" + RECORDED_REPLY)
    with pytest.raises(DLMSFrameError, match="version"):
        parser.next_message()
    assert parser.next_message() == decode_wrapper(RECORDED_REPLY)
    assert (parser.skipped_bytes, parser.errors) == (3, 1)


def test_an_oversized_header_is_skipped_up_to_the_next_header():
    parser = WrapperParser(max_apdu_length=100)
    parser.receive_data(bytes.fromhex("00010001001012FF") + RECORDED_REPLY)
    with pytest.raises(DLMSFrameError, match="exceeds"):
        parser.next_message()
    assert parser.next_message() == decode_wrapper(RECORDED_REPLY)


def test_apdu_too_long_for_the_length_field_cannot_be_encoded():
    with pytest.raises(ValueError, match="16-bit"):
        WrapperMessage(16, 1, bytes(0x10000)).to_bytes()


def test_connection_delivers_apdus_to_its_wport_and_ignores_others():
    conn = WrapperConnection()
    other = WrapperMessage(1, 17, b"\x01").to_bytes()
    conn.receive_data(other + RECORDED_REPLY)
    assert conn.next_event() == ApduReceived(RECORDED_AARE)
    assert isinstance(conn.next_event(), NeedData)
    assert conn.ignored_messages == 1


def test_server_side_connection_answers_the_client_that_asked():
    server = WrapperConnection(server_side=True)
    server.receive_data(WrapperMessage(0x20, 1, AARQ_NO_AUTH).to_bytes())
    assert server.next_event() == ApduReceived(AARQ_NO_AUTH)
    assert decode_wrapper(server.send_apdu(RECORDED_AARE)) == WrapperMessage(1, 0x20, RECORDED_AARE)


messages = st.builds(WrapperMessage, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=600))


@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_messages_come_out_of_a_stream_in_any_chunking(batch, data):
    stream = b"".join(m.to_bytes() for m in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = WrapperParser()
    assert units_from_chunks(parser, parser.next_message, stream, cuts) == batch
    assert (parser.skipped_bytes, parser.errors, parser.buffered) == (0, 0, 0)


def test_a_run_of_noise_raises_once_and_a_later_loss_raises_again():
    parser = WrapperParser()
    noise = bytes(range(2, 200))
    parser.receive_data(noise[:50])
    with pytest.raises(DLMSFrameError):
        parser.next_message()
    for i in range(50, len(noise), 7):
        parser.receive_data(noise[i : i + 7])
        assert parser.next_message() is None
    parser.receive_data(RECORDED_REPLY + b"\x05\x06")
    assert parser.next_message() == decode_wrapper(RECORDED_REPLY)
    with pytest.raises(DLMSFrameError):
        parser.next_message()
    assert (parser.errors, parser.skipped_bytes) == (2, len(noise) + 2)
