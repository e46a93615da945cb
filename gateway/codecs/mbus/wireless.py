"""Wireless M-Bus from telegram bytes to EN 13757-3 data records, with the state a receiver
keeps: the compact-frame formats learned from full frames (sans-IO).

:class:`WMBusDecoder` is what a receiver (and ``gateway decode wmbus``) calls per telegram:
:func:`gateway.codecs.mbus.telegram.decode_telegram` for the layers and the security, then the
record decoder of :mod:`gateway.codecs.mbus.application` on the plaintext — directly for a
full frame (whose format it remembers), through :class:`FormatCache` for a compact frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.application import Header, decode_records, header_to_json, manufacturer_letters, record_to_json
from gateway.codecs.mbus.compact import CompactFrame, FormatCache, split_compact
from gateway.codecs.mbus.records import DataRecord
from gateway.codecs.mbus.telegram import WirelessTelegram, decode_telegram
from gateway.codecs.mbus.wireless_link import FrameFormat, WirelessFrame
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.model import mbus_device_id


@dataclass(frozen=True, slots=True)
class DecodedTelegram:
    """A wireless telegram with its data records (empty for content kept raw)."""

    telegram: WirelessTelegram
    records: tuple[DataRecord, ...] = ()
    more_records_follow: bool = False
    manufacturer_data: bytes | None = None
    compact: CompactFrame | None = None

    @property
    def header(self) -> Header:
        """The meter's identity and TPL header, in the shape of the wired data header."""
        telegram = self.telegram
        address = telegram.meter_address
        tpl = telegram.tpl
        access = tpl.access_number if tpl and tpl.access_number is not None else None
        if access is None and telegram.ell is not None:
            access = telegram.ell.access_number
        return Header(
            identification=address[:4][::-1].hex(),
            manufacturer=manufacturer_letters(telegram.meter_manufacturer),
            version=address[4],
            medium=address[5],
            access_number=access or 0,
            status=(tpl.status if tpl and tpl.status is not None else 0),
            signature=(tpl.configuration if tpl and tpl.configuration is not None else 0),
        )

    @property
    def device(self) -> str:
        """The stable device identity (:func:`gateway.model.mbus_device_id`) of the meter."""
        header = self.header
        return mbus_device_id(header.manufacturer, header.identification, header.version, header.medium)

    def as_dict(self) -> dict[str, object]:
        """The JSON object of ``gateway decode wmbus``: the shape of ``gateway decode mbus``
        (``link``, ``header``, ``records`` ...) with the wireless layers and security added."""
        telegram = self.telegram
        out = telegram.as_dict()
        out["header"] = header_to_json(self.header, telegram.ci if telegram.ci is not None else 0)
        if self.compact is not None:
            out["compact"] = {
                "format_signature": f"0x{self.compact.format_signature:04X}",
                "data_crc": f"0x{self.compact.data_crc:04X}",
            }
        out["records"] = [record_to_json(record) for record in self.records]
        out["more_records_follow"] = self.more_records_follow
        out["manufacturer_data"] = None if self.manufacturer_data is None else self.manufacturer_data.hex()
        if telegram.content not in ("records", "compact"):
            out["application_data"] = telegram.application_data.hex()
        return out


class WMBusDecoder:
    """Decodes telegrams to records and remembers compact-frame formats across telegrams."""

    def __init__(self, format_cache: FormatCache | None = None) -> None:
        self.formats = format_cache if format_cache is not None else FormatCache()

    def decode(
        self,
        data: bytes | WirelessFrame,
        *,
        key: AesKey | None = None,
        decrypted: bool = False,
        frame_format: FrameFormat | str = FrameFormat.STRIPPED,
        keep_trailing: bool = False,
    ) -> DecodedTelegram:
        """Decode one telegram (see :func:`decode_telegram` for the arguments and refusals).

        A compact frame whose format was not seen yet raises
        :class:`gateway.codecs.mbus.errors.MBusFrameError`; a full frame teaches its format.
        """
        telegram = decode_telegram(
            data, key=key, decrypted=decrypted, frame_format=frame_format, keep_trailing=keep_trailing
        )
        if telegram.content == "records":
            block = decode_records(telegram.application_data, offset=telegram.application_offset)
            self.formats.learn(block.records, telegram.application_data)
            return DecodedTelegram(telegram, block.records, block.more_records_follow, block.manufacturer_data)
        if telegram.content == "compact":
            compact = split_compact(telegram.application_data, offset=telegram.application_offset)
            block = decode_records(self.formats.expand(compact))
            return DecodedTelegram(telegram, block.records, block.more_records_follow, block.manufacturer_data, compact)
        return DecodedTelegram(telegram)
