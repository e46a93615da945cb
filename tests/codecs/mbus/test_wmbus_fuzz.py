"""Fuzzing: random and mutated input to the link layer, ELL/AFL/TPL, 3-of-6, the telegram
decoder and the dongle adapters raises nothing but the codec's own errors, and the stream
adapters always make progress (a longer run: tests/bench/fuzz_wmbus.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codecs.mbus import three_of_six
from gateway.codecs.mbus.afl import decode_afl
from gateway.codecs.mbus.compact import FormatCache, split_compact
from gateway.codecs.mbus.dongles.amber import AmberAdapter
from gateway.codecs.mbus.dongles.cul import CulAdapter
from gateway.codecs.mbus.dongles.imst import ImstHci, ImstSlipHci
from gateway.codecs.mbus.ell import decode_ell
from gateway.codecs.mbus.errors import MBusError
from gateway.codecs.mbus.telegram import decode_telegram
from gateway.codecs.mbus.tpl import decode_tpl
from gateway.codecs.mbus.wireless_link import LinkMode, decode_frame, frame_from_radio
from gateway.codecs.mbus.wmbus_security import AesKey

from . import wmbus_builders as build
from .wmbus_corpus import wireless

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [t.data for t in wireless()[::5]] + [
    build.mode5_telegram(bytes(16)),
    build.mode7_telegram(bytes(16)),
    build.ell_ctr_telegram(bytes(16)),
]
KEYS = st.sampled_from([None, AesKey(bytes(16)), "decrypted"])
FORMATS = st.sampled_from(["stripped", "a", "b", "auto"])


def only_codec_errors(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except MBusError:
        return None


@st.composite
def mutated(draw) -> bytes:
    """A corpus or built telegram with a few bytes flipped, cut, inserted or the L-field fixed."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "fix-l"]))
        if action == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif action == "insert":
            data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
        elif data:
            data[0] = (len(data) - 1) & 0xFF
    return bytes(data)


def decode_any(data: bytes, key, fmt: str):
    options = {"decrypted": True} if key == "decrypted" else {"key": key}
    return only_codec_errors(decode_telegram, data, frame_format=fmt, keep_trailing=True, **options)


@FUZZ
@given(st.binary(max_size=300), KEYS, FORMATS)
def test_random_bytes_give_a_telegram_or_a_codec_error(data, key, fmt):
    decode_any(data, key, fmt)


@FUZZ
@given(mutated(), KEYS, FORMATS)
def test_mutated_telegrams_give_a_telegram_or_a_codec_error(data, key, fmt):
    decoded = decode_any(data, key, fmt)
    if decoded is not None and decoded.content == "compact":
        only_codec_errors(lambda: FormatCache().expand(split_compact(decoded.application_data)))


@FUZZ
@given(st.binary(max_size=300), FORMATS)
def test_the_link_layer_raises_only_frame_errors(data, fmt):
    only_codec_errors(decode_frame, data, frame_format=fmt)


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 45))
def test_ell_afl_and_tpl_decoders_raise_only_codec_errors_at_any_offset(data, offset):
    for decoder in (decode_ell, decode_afl, decode_tpl):
        only_codec_errors(decoder, data, offset)
    for ci in (0x8C, 0x8D, 0x8E, 0x8F):
        only_codec_errors(decode_ell, bytes([ci]) + data)
    only_codec_errors(decode_afl, b"\x90" + data)
    for ci in (0x72, 0x7A, 0x5B, 0x6B):
        only_codec_errors(decode_tpl, bytes([ci]) + data)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(list(LinkMode)))
def test_3_of_6_and_radio_frames_raise_only_codec_errors(data, mode):
    only_codec_errors(three_of_six.decode, data)
    only_codec_errors(frame_from_radio, mode, data)


ADAPTERS = [ImstHci, ImstSlipHci, lambda: AmberAdapter(transparent=True), AmberAdapter, CulAdapter]


@pytest.mark.parametrize("make", ADAPTERS, ids=["imst", "iu891a", "amber-transparent", "amber", "cul"])
@settings(max_examples=600, deadline=None)
@given(chunks=st.lists(st.binary(max_size=120), max_size=8))
def test_dongle_adapters_raise_only_codec_errors_and_always_make_progress(make, chunks):
    adapter = make()
    for chunk in chunks:
        adapter.receive_data(chunk)
        for _ in range(10_000):  # each call consumes bytes or returns None: it cannot loop forever
            before = adapter.buffered
            try:
                if adapter.next_event() is None:
                    break
            except MBusError:
                assert adapter.buffered < before
        else:
            pytest.fail("adapter did not settle")
