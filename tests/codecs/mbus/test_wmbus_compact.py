"""Compact frames: the format signature learned from a full frame, the rebuild checked by the
data CRC (a Kamstrup full/compact pair quoted in lvogt/wireless-mbus-parser, MIT)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.codecs.mbus.compact import FormatCache, format_of, split_compact
from gateway.codecs.mbus.crc import crc_en13757
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.telegram import decode_telegram

FULL = bytes.fromhex(
    "5C442D2C06357260190C8D207B70032F21271D7802F9FF15011104061765000004EEFF07BFA8000004EEFF08D24F0000"
    "0414B1FB000002FD170000026CE919426CFF184406F76400004414E8FA0000043B0B0000000259DB11025D1C0B"
)
COMPACT = bytes.fromhex(
    "3F442D2C06357260190C8D207C71032F21255C79DD829283011117650000BFA80000D24F0000B1FB00000000E919FF18"
    "F7640000E8FA00000B000000DB111C0B"
)
#: The full frame's records split by hand at their DIF/VIF boundaries: (header, data).
SPLIT = [
    ("02F9FF15", "0111"), ("0406", "17650000"), ("04EEFF07", "BFA80000"), ("04EEFF08", "D24F0000"),
    ("0414", "B1FB0000"), ("02FD17", "0000"), ("026C", "E919"), ("426C", "FF18"), ("4406", "F7640000"),
    ("4414", "E8FA0000"), ("043B", "0B000000"), ("0259", "DB11"), ("025D", "1C0B"),
]  # fmt: skip


@dataclass(frozen=True)
class Record:
    header_bytes: bytes
    raw: bytes


RECORDS = [Record(bytes.fromhex(h), bytes.fromhex(h + d)) for h, d in SPLIT]


def test_the_full_frame_is_the_records_it_was_split_into():
    full = decode_telegram(FULL, decrypted=True)
    assert full.content == "records"
    assert full.application_data == b"".join(r.raw for r in RECORDS)


def test_the_format_signature_is_the_crc_of_the_headers_and_matches_the_compact_frame():
    compact = split_compact(decode_telegram(COMPACT, decrypted=True).application_data)
    assert format_of(RECORDS).signature == crc_en13757(b"".join(r.header_bytes for r in RECORDS))
    assert format_of(RECORDS).signature == compact.format_signature == 0x82DD


def test_a_compact_frame_after_its_full_frame_rebuilds_the_full_application_data():
    cache = FormatCache()
    assert cache.learn(RECORDS) == 0x82DD and 0x82DD in cache
    compact = decode_telegram(COMPACT, decrypted=True)
    assert compact.content == "compact"
    rebuilt = cache.expand(split_compact(compact.application_data))
    assert rebuilt == decode_telegram(FULL, decrypted=True).application_data


def test_a_compact_frame_before_any_full_frame_is_an_error_naming_its_signature():
    with pytest.raises(MBusFrameError, match="0x82DD and no full frame"):
        FormatCache().expand(split_compact(decode_telegram(COMPACT, decrypted=True).application_data))


def test_a_rebuild_that_fails_the_data_crc_is_an_error_not_a_reading():
    cache = FormatCache()
    cache.learn(RECORDS)
    compact = split_compact(decode_telegram(COMPACT, decrypted=True).application_data)
    altered = type(compact)(compact.format_signature, compact.data_crc, compact.packed[:-1] + b"\x00")
    with pytest.raises(MBusFrameError, match="data CRC"):
        cache.expand(altered)
    with pytest.raises(MBusFrameError, match="needs 40"):
        cache.expand(type(compact)(compact.format_signature, compact.data_crc, compact.packed[:10]))


def test_variable_length_records_teach_no_format():
    assert format_of([Record(b"\x0d\x78", b"\x0d\x78\x02ab")]) is None
    assert format_of([]) is None
    assert FormatCache().learn([]) is None


def test_the_cache_forgets_the_least_recently_used_format():
    cache = FormatCache(max_formats=2)
    formats = [[Record(bytes([0x01, vif]), bytes([0x01, vif, 0]))] for vif in (0x13, 0x14, 0x15)]
    signatures = [cache.learn(f) for f in formats]
    assert len(cache) == 2 and signatures[0] not in cache and signatures[2] in cache


def test_a_compact_frame_too_short_for_its_header_is_an_error():
    with pytest.raises(MBusFrameError, match="needs 4 header bytes"):
        split_compact(b"\x01\x02")


def test_a_data_crc_naming_the_full_frame_last_heard_is_accepted_although_values_changed():
    # kamwater.xmq:506 is a full frame, :512 the compact frame that follows it: the flow went
    # from 0 to 0.035 m3/h, and the compact frame's data CRC is still the full frame's CRC.
    from gateway.codecs.mbus.wireless import WMBusDecoder

    from .wmbus_corpus import wireless

    pair = {t.record["id"].rsplit(":", 1)[-1]: t.data for t in wireless() if "kamwater.xmq:5" in t.record["id"]}
    decoder = WMBusDecoder()
    full = decoder.decode(pair["506"], decrypted=True)
    compact = decoder.decode(pair["512"], decrypted=True)
    assert compact.compact.data_crc == crc_en13757(full.telegram.application_data)
    assert [str(r.value) for r in compact.records if r.unit == "m^3/h"] == ["0.000", "0.035"]
    assert [str(r.value) for r in full.records if r.unit == "m^3/h"] == ["0.000", "0.000"]


def test_a_data_crc_that_names_no_full_frame_of_the_format_is_refused():
    cache = FormatCache()
    cache.learn(RECORDS, decode_telegram(FULL, decrypted=True).application_data)
    compact = split_compact(decode_telegram(COMPACT, decrypted=True).application_data)
    assert cache.expand(compact)
    with pytest.raises(MBusFrameError, match="names no full frame"):
        cache.expand(type(compact)(compact.format_signature, compact.data_crc ^ 1, compact.packed))
