"""Property-based tests: random responses round-trip through encode/decode, and mutated
corpus frames (checksum made right, so the application layer is reached) raise nothing
but M-Bus errors."""

from __future__ import annotations

import json
import struct
from datetime import date, datetime, time
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codecs.mbus import tables
from gateway.codecs.mbus.application import Header, decode_response, encode, response_to_json
from gateway.codecs.mbus.errors import MBusError
from gateway.codecs.mbus.records import make_record

from .libmbus_corpus import TEST_FRAMES, frame_bytes

CORPUS = [frame_bytes(p) for p in TEST_FRAMES]

headers = st.builds(
    Header,
    identification=st.integers(0, 99_999_999).map(lambda n: f"{n:08d}"),
    manufacturer=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
    version=st.integers(0, 255),
    medium=st.integers(0, 255),
    access_number=st.integers(0, 255),
    status=st.integers(0, 255),
    signature=st.integers(0, 0xFFFF),
)

#: Primary VIFs whose value is a number, and a few extension VIFs.
NUMERIC_VIFS = [code for code in range(0x6C) if tables.PRIMARY_VIFS[code].quantity != "reserved"] + list(
    range(0x70, 0x7B)
)
INT_CODES = {0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x6: 6, 0x7: 8}
BCD_CODES = {0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6}
FUNCTIONS = st.sampled_from(tables.FUNCTIONS)
QUALIFIERS = dict(
    function=FUNCTIONS,
    storage=st.integers(0, (1 << 21) - 1),
    tariff=st.integers(0, 255),
    subunit=st.integers(0, 15),
)


def _scale(vif: int) -> Decimal:
    entry = tables.PRIMARY_VIFS[vif]
    return Decimal(1).scaleb(entry.scaler) * entry.factor


@st.composite
def integer_records(draw):
    vif = draw(st.sampled_from(NUMERIC_VIFS))
    code, size = draw(st.sampled_from(sorted(INT_CODES.items())))
    mantissa = draw(st.integers(-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1))
    return dict(vif=vif, value=mantissa * _scale(vif), data_field=code)


@st.composite
def bcd_records(draw):
    vif = draw(st.sampled_from(NUMERIC_VIFS))
    code, size = draw(st.sampled_from(sorted(BCD_CODES.items())))
    mantissa = draw(st.integers(-(10 ** (2 * size - 1) - 1), 10 ** (2 * size) - 1))
    return dict(vif=vif, value=mantissa * _scale(vif), data_field=code)


@st.composite
def real_records(draw):
    vif = draw(st.sampled_from([v for v in NUMERIC_VIFS if tables.PRIMARY_VIFS[v].factor == 1]))
    number = draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
    from gateway.codecs.mbus.datatypes import shortest_float32_text

    return dict(vif=vif, value=Decimal(shortest_float32_text(number)).scaleb(tables.PRIMARY_VIFS[vif].scaler), data_field=0x5)


@st.composite
def time_records(draw):
    kind = draw(st.sampled_from(["G", "F", "I", "J"]))
    flags = dict(summer_time=draw(st.booleans()), time_invalid=draw(st.booleans()))
    if kind == "G":
        return dict(vif=0x6C, value=draw(st.dates(date(2000, 1, 1), date(2099, 12, 31))), data_field=0x2)
    if kind == "J":
        return dict(vif=0x6D, value=draw(st.times()).replace(microsecond=0), data_field=0x3)
    low, high = (datetime(1981, 1, 1), datetime(2199, 12, 31)) if kind == "F" else (datetime(2000, 1, 1), datetime(2099, 12, 31))
    moment = draw(st.datetimes(low, high)).replace(microsecond=0)
    if kind == "F":
        return dict(vif=0x6D, value=moment.replace(second=0), data_field=0x4, **flags)
    return dict(vif=0x6D, value=moment, data_field=0x6, **flags)


@st.composite
def lvar_records(draw):
    if draw(st.booleans()):
        return dict(vif=0xFD, vife=(0x11,), value=draw(st.text(st.characters(max_codepoint=0xFF), max_size=40)))
    size = draw(st.sampled_from([*range(16), 16, 20, 24, 28, 32, 48, 64]))
    return dict(vif=0xFD, vife=(0x17,), value=draw(st.binary(min_size=size, max_size=size)))


@st.composite
def records(draw):
    spec = draw(st.one_of(integer_records(), bcd_records(), real_records(), time_records(), lvar_records()))
    qualifiers = {name: draw(strategy) for name, strategy in QUALIFIERS.items()}
    if draw(st.booleans()):
        spec["vife"] = spec.get("vife", ()) + (0x22,) if spec["vif"] != 0xFD else spec["vife"]
        if spec["vif"] != 0xFD:
            spec["vif"] |= 0x80
    return make_record(**spec, **qualifiers)


def _meaning(record):
    return (record.value, record.function, record.storage, record.tariff, record.subunit, record.quantity,
            record.unit, record.modifiers, record.time_invalid, record.summer_time)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers, body=st.lists(records(), max_size=8), tail=st.none() | st.binary(max_size=20),
       more=st.booleans(), address=st.integers(0, 250))
def test_random_headers_and_records_round_trip_through_a_frame(header, body, tail, more, address):
    size = 13 + sum(len(r.raw) for r in body) + (0 if tail is None else 1 + len(tail)) + more
    if size > 252:
        body = body[:1]
    frame = encode(header, body, address=address, more_records_follow=more, manufacturer_data=tail)
    decoded = decode_response(frame)
    response = decoded.response
    assert decoded.frame.a == address
    assert response.header == header
    assert [_meaning(r) for r in response.records] == [_meaning(r) for r in body]
    assert response.more_records_follow == more
    assert response.manufacturer_data == (tail if tail is not None else (b"" if more else None))
    json.dumps(response_to_json(response, decoded.frame))


def _refit(frame: bytearray) -> bytes:
    """L fields and checksum made right for whatever the user data now is."""
    frame[1] = frame[2] = len(frame) - 6
    frame[-2] = sum(frame[4:-2]) & 0xFF
    return bytes(frame)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]), st.integers(0, 10_000), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def mutate(raw: bytes, steps) -> bytes:
    frame = bytearray(raw)
    for action, where, byte in steps:
        position = 7 + where % max(1, len(frame) - 9)  # inside the user data after the CI
        if action == "flip":
            frame[position] ^= 1 << (byte % 8)
        elif action == "set":
            frame[position] = byte
        elif action == "insert" and len(frame) < 261:
            frame.insert(position, byte)
        elif action == "delete" and len(frame) > 10:
            del frame[position]
    return _refit(frame)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(CORPUS) - 1), steps=mutations)
def test_mutated_corpus_frames_raise_nothing_but_mbus_errors(index, steps):
    frame = mutate(CORPUS[index], steps)
    try:
        decoded = decode_response(frame)
    except MBusError as exc:
        assert exc.reason and exc.offset is not None
    else:
        json.dumps(response_to_json(decoded.response, decoded.frame))


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=80), ci=st.sampled_from([0x70, 0x72, 0x73, 0x76, 0x77, 0x78, 0x7A, 0x51, 0x99]))
def test_arbitrary_user_data_raises_nothing_but_mbus_errors(data, ci):
    from gateway.codecs.mbus.application import decode_user_data

    try:
        decode_user_data(bytes([ci]) + data)
    except MBusError:
        pass


def test_struct_packing_of_reals_is_little_endian():
    assert struct.pack("<f", 1.0) == bytes.fromhex("0000803F")
    assert make_record(0x2B, Decimal(1), data_field=0x5).raw == bytes.fromhex("052B0000803F")


def test_time_records_keep_time_of_day_values():
    assert make_record(0x6D, time(1, 2, 3)).value == time(1, 2, 3)
