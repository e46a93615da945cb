"""The 3-out-of-6 code of mode T: the table, round trips, invalid code words, T1 radio frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus import three_of_six
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import FrameFormat, LinkMode, decode_frame, frame_from_radio

from .wmbus_corpus import wireless


def test_every_code_word_has_three_ones_in_six_chips_and_all_differ():
    assert len(set(three_of_six.CODE_WORDS)) == 16
    assert all(bin(word).count("1") == 3 and word < 64 for word in three_of_six.CODE_WORDS)
    assert three_of_six.CODE_WORDS[0x0] == 0b010110 and three_of_six.CODE_WORDS[0xF] == 0b101001


def test_only_sixteen_of_the_sixty_four_words_decode():
    assert sum(n is not None for n in three_of_six.NIBBLES) == 16


def test_a_known_byte_encodes_to_its_two_code_words():
    # 0x4E: nibble 4 -> 011100, nibble E -> 110010; 12 chips then 4 postamble chips.
    assert three_of_six.encode(b"\x4e") == bytes([0b01110011, 0b00100101])


@given(st.binary(max_size=300))
def test_encode_then_decode_gives_the_data_back(data):
    raw = three_of_six.encode(data)
    assert len(raw) == three_of_six.encoded_length(len(data))
    assert three_of_six.decode(raw, len(data)) == data


@given(st.binary(min_size=1, max_size=60), st.data())
def test_an_invalid_code_word_is_rejected_with_the_raw_offset_where_it_starts(data, draw):
    raw = bytearray(three_of_six.encode(data))
    symbol = draw.draw(st.integers(0, 2 * len(data) - 1))
    bit = symbol * 6
    bad = draw.draw(st.sampled_from([w for w in range(64) if three_of_six.NIBBLES[w] is None]))
    for i in range(6):  # write the invalid word over the chosen symbol
        position = bit + i
        mask = 0x80 >> (position % 8)
        if bad & (0x20 >> i):
            raw[position // 8] |= mask
        else:
            raw[position // 8] &= ~mask
    with pytest.raises(MBusFrameError) as info:
        three_of_six.decode(bytes(raw), len(data))
    assert info.value.field == "3-of-6"
    assert info.value.offset == bit // 8
    assert "invalid 3-of-6 code word" in info.value.reason


def test_all_zero_chips_are_not_a_code_word():
    with pytest.raises(MBusFrameError, match="invalid 3-of-6 code word 0b000000") as info:
        three_of_six.decode(bytes(3), 2)
    assert info.value.offset == 0


def test_asking_for_more_bytes_than_the_chips_hold_is_an_error():
    with pytest.raises(MBusFrameError, match="hold 2 data bytes, need 3"):
        three_of_six.decode(three_of_six.encode(b"ab"), 3)


@pytest.mark.parametrize("telegram", wireless()[:40], ids=lambda t: t.id)
def test_a_t1_radio_frame_of_a_corpus_telegram_decodes_to_the_same_frame(telegram):
    frame = decode_frame(telegram.data, frame_format="auto", keep_trailing=True)
    on_air = frame.to_bytes(FrameFormat.A)
    raw = three_of_six.encode(on_air) + b"\x55\x55"  # the receiver may pass postamble chips on
    assert frame_from_radio(LinkMode.T1, raw).to_bytes() == frame.to_bytes()


def test_a_t1_radio_frame_with_a_corrupted_chip_is_rejected():
    frame = decode_frame(wireless()[0].data, frame_format="auto")
    raw = bytearray(three_of_six.encode(frame.to_bytes(FrameFormat.A)))
    raw[5] ^= 0xFF
    with pytest.raises(MBusFrameError):
        frame_from_radio(LinkMode.T1, bytes(raw))
