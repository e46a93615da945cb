"""Compact frames (EN 13757-3 Annex G / OMS Vol. 2: CI 0x79, 0x7B, 0x73) and the format cache.

A meter that sends the same records again and again may leave out their DIF/VIF headers.
It then sends a *compact frame*::

    format signature (2, LE) ‖ data CRC (2, LE) ‖ the records' data bytes, packed

The format signature is the EN 13757-4 CRC over the DIF…VIFE header bytes of all records of a
full frame (idle fillers 0x2F excluded). The data CRC ("full frame CRC") is the CRC over the
application data (headers and data) of a full frame: captured meters (Kamstrup flowIQ, in the
wmbusmeters corpus) give the CRC of the full frame they last sent, whose values may have
changed since; when they have not, it is also the CRC of the rebuilt frame. A receiver learns
the formats, and the CRCs of the full frames that carried them, from the full frames it hears
(:meth:`FormatCache.learn`) and rebuilds the full application data of later compact frames
(:meth:`FormatCache.expand`), which the record decoder then reads as usual. A data CRC that
names neither the rebuilt frame nor a full frame of that format seen is an error (a format
signature collision, or a full frame never heard), never a wrong reading.

The cache is sans-IO state, bounded (least recently used formats are forgotten).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from gateway.codecs.mbus.crc import crc_en13757
from gateway.codecs.mbus.errors import MBusFrameError

COMPACT_HEADER = 4
#: DIF data field 0x0D: variable length; such records cannot be packed (their length is in
#: the data), so a full frame with one teaches no format (EN 13757-3 table 4).
DIF_VARIABLE_LENGTH = 0x0D


class HasHeaderAndRaw(Protocol):
    """What the cache needs of a decoded record: its DIF…VIFE bytes and all its bytes."""

    header_bytes: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class CompactFrame:
    """The fixed part of a compact frame and its packed data."""

    format_signature: int
    data_crc: int
    packed: bytes


#: How many full-frame CRCs the cache keeps per format.
FULL_FRAME_CRCS = 8


@dataclass(frozen=True, slots=True)
class RecordFormat:
    """The headers of the records of one full frame and how many data bytes each carries;
    ``full_frame_crcs`` are the data CRCs of the latest full frames of this format."""

    headers: tuple[bytes, ...]
    data_lengths: tuple[int, ...]
    full_frame_crcs: tuple[int, ...] = ()

    @property
    def signature(self) -> int:
        return crc_en13757(b"".join(self.headers))

    @property
    def packed_length(self) -> int:
        return sum(self.data_lengths)


def split_compact(data: bytes, *, offset: int = 0) -> CompactFrame:
    """Split the application data of a compact frame (after its TPL header)."""
    if len(data) < COMPACT_HEADER:
        raise MBusFrameError(
            f"compact frame needs {COMPACT_HEADER} header bytes, has {len(data)}", offset=offset, field="signature"
        )
    return CompactFrame(
        int.from_bytes(data[0:2], "little"), int.from_bytes(data[2:4], "little"), bytes(data[COMPACT_HEADER:])
    )


def format_of(records: Iterable[HasHeaderAndRaw]) -> RecordFormat | None:
    """The format of a full frame's records, or ``None`` when it cannot be packed."""
    headers, lengths = [], []
    for record in records:
        header = bytes(record.header_bytes)
        if not header or (header[0] & 0x0F) == DIF_VARIABLE_LENGTH or not bytes(record.raw).startswith(header):
            return None
        headers.append(header)
        lengths.append(len(record.raw) - len(header))
    if not headers:
        return None
    return RecordFormat(tuple(headers), tuple(lengths))


class FormatCache:
    """Formats learned from full frames, by format signature (sans-IO, bounded LRU)."""

    def __init__(self, max_formats: int = 256) -> None:
        self._formats: OrderedDict[int, RecordFormat] = OrderedDict()
        self.max_formats = max_formats

    def __len__(self) -> int:
        return len(self._formats)

    def __contains__(self, signature: object) -> bool:
        return signature in self._formats

    def learn(self, records: Iterable[HasHeaderAndRaw], application_data: bytes | None = None) -> int | None:
        """Remember the format of a full frame and, given its application data, its CRC;
        returns the format signature (``None``: the records cannot be packed)."""
        fmt = format_of(records)
        if fmt is None:
            return None
        signature = fmt.signature
        known = self._formats.get(signature)
        crcs = known.full_frame_crcs if known is not None and known.headers == fmt.headers else ()
        if application_data is not None:
            crc = crc_en13757(application_data)
            crcs = (tuple(c for c in crcs if c != crc) + (crc,))[-FULL_FRAME_CRCS:]
        self._formats[signature] = RecordFormat(fmt.headers, fmt.data_lengths, crcs)
        self._formats.move_to_end(signature)
        while len(self._formats) > self.max_formats:
            self._formats.popitem(last=False)
        return signature

    def expand(self, compact: CompactFrame) -> bytes:
        """The full application data a compact frame stands for, checked by its data CRC.

        Raises :class:`MBusFrameError` when the format is unknown (no full frame seen yet),
        when the packed data do not fit it, or when the data CRC is neither that of the
        rebuilt data nor that of a full frame of this format seen.
        """
        fmt = self._formats.get(compact.format_signature)
        if fmt is None:
            raise MBusFrameError(
                f"compact frame with format signature 0x{compact.format_signature:04X} "
                "and no full frame of that format seen yet",
                offset=0,
                field="signature",
            )
        self._formats.move_to_end(compact.format_signature)
        packed = compact.packed
        if len(packed) < fmt.packed_length:
            raise MBusFrameError(
                f"compact frame has {len(packed)} data bytes, its format needs {fmt.packed_length}",
                offset=COMPACT_HEADER + len(packed),
                field="data",
            )
        out = bytearray()
        pos = 0
        for header, length in zip(fmt.headers, fmt.data_lengths):
            out += header + packed[pos : pos + length]
            pos += length
        out += packed[pos:]
        if compact.data_crc not in fmt.full_frame_crcs and crc_en13757(out) != compact.data_crc:
            raise MBusFrameError(
                f"data CRC 0x{compact.data_crc:04X} names no full frame of format 0x{compact.format_signature:04X} "
                f"seen, and the rebuilt frame's is 0x{crc_en13757(out):04X}",
                offset=2,
                field="data CRC",
            )
        return bytes(out)
