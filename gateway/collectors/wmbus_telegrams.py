"""What a wireless M-Bus receiver makes of each telegram a dongle hands it.

Shared by the receiver (:mod:`gateway.collectors.wmbus`) and ``gateway listen wmbus``:

* :func:`link_frame` checks the link layer (and its CRC blocks, where the dongle left them);
* :func:`meter_address` says which meter sent it: the long TPL header's address when the
  frame carries one right after the link layer (a radio adapter or repeater sending for a
  meter), else the link layer's;
* :func:`interpret` decodes it with the meter's key (or none) and sorts the outcome into
  decoded, refused for security (:class:`~gateway.codecs.mbus.errors.MBusSecurityError`),
  or undecodable;
* :func:`readings_of` turns a decoded telegram into Readings with the naming rule of wired
  M-Bus (:mod:`gateway.collectors.mbus_readings`): status = the TPL status byte in hex,
  raw = the telegram as the dongle delivered it;
* :class:`DuplicateFilter` remembers telegrams for a window: the same meter, access number
  and payload again is a repeat (meters send twice, repeaters relay, two dongles hear one);
* :func:`message_counter` is the AFL message counter of a mode 7 telegram, which must grow
  from telegram to telegram of a meter (OMS Vol. 2): :class:`ReplayedTelegram` refuses one
  that does not;
* :class:`Sightings` is the bounded table of meters heard (identity, RSSI, count, last
  heard, encrypted or not, decrypted or not).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.mbus.application import manufacturer_letters
from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.errors import MBusError, MBusFrameError, MBusPlaintextError, MBusSecurityError
from gateway.codecs.mbus.tables import medium_name
from gateway.codecs.mbus.telegram import MODE_NONE, Security
from gateway.codecs.mbus.tpl import LONG, TPL_CI, TransportHeader, decode_tpl
from gateway.codecs.mbus.wireless import DecodedTelegram, WMBusDecoder
from gateway.codecs.mbus.wireless_link import FIRST_BLOCK, WirelessFrame, decode_frame
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.collectors.base import Discovery
from gateway.collectors.mbus_readings import RecordSource, readings_from_sources
from gateway.model import Reading, mbus_device_id, utc_now


@dataclass(frozen=True, slots=True)
class MeterAddress:
    """A meter's identity as a telegram gives it (secondary address fields)."""

    identification: str
    manufacturer: str
    version: int
    device_type: int

    @property
    def device(self) -> str:
        """The device identity readings carry (:func:`gateway.model.mbus_device_id`)."""
        return mbus_device_id(self.manufacturer, self.identification, self.version, self.device_type)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.identification, "manufacturer": self.manufacturer, "version": self.version,
                "device_type": f"0x{self.device_type:02X}", "device_type_name": medium_name(self.device_type),
                "device": self.device}


def link_frame(received: ReceivedTelegram) -> WirelessFrame:
    """The link layer of a received telegram, CRC blocks checked and removed; a failed CRC
    or a malformed frame raises :class:`MBusFrameError`."""
    return decode_frame(received.frame, frame_format=received.frame_format)


def leading_tpl(frame: WirelessFrame) -> TransportHeader | None:
    """The TPL header right after the link layer, if the CI opens one and it is readable
    (the decoder reports a damaged one)."""
    if frame.ci not in TPL_CI:
        return None
    try:
        return decode_tpl(frame.to_bytes(), FIRST_BLOCK)
    except MBusFrameError:
        return None


def meter_address(frame: WirelessFrame) -> MeterAddress:
    """Who sent the frame (see the module docstring)."""
    tpl = leading_tpl(frame)
    if tpl is not None and tpl.kind == LONG and tpl.address is not None and tpl.manufacturer is not None:
        return MeterAddress(tpl.identification or "", manufacturer_letters(tpl.manufacturer), tpl.address[4],
                            tpl.address[5])
    return MeterAddress(frame.identification, frame.manufacturer_code, frame.version, frame.device_type)


def duplicate_key(frame: WirelessFrame) -> tuple[int, bytes, bytes]:
    """What makes two receptions one telegram: the sender's link address and everything
    from the CI on (access number and payload; the C-field and the CRCs may differ when a
    repeater relays it or another dongle hears it)."""
    return frame.manufacturer, frame.address, bytes([frame.ci if frame.ci is not None else 0]) + frame.data


class ReplayedTelegram(MBusSecurityError):
    """A telegram whose AFL message counter is not above the last one accepted from its
    meter: recorded and sent again (OMS Vol. 2, the message counter increases with every
    message a meter sends)."""


@dataclass(frozen=True, slots=True)
class Heard:
    """One telegram and what became of it: ``decoded`` (records, security), or ``refused``
    for security, or ``error`` (well-formed link layer, undecodable content)."""

    received: ReceivedTelegram
    frame: WirelessFrame
    address: MeterAddress
    decoded: DecodedTelegram | None = None
    refused: MBusSecurityError | None = None
    error: MBusError | None = None

    @property
    def encrypted(self) -> bool | None:
        """Whether the telegram was encrypted (None when its content could not be read)."""
        if self.decoded is not None:
            return self.decoded.telegram.security.encrypted
        if self.refused is not None:
            return not isinstance(self.refused, MBusPlaintextError)
        return None

    @property
    def decrypted(self) -> bool:
        return self.decoded is not None and self.decoded.telegram.security.decrypted_by is not None

    @property
    def access_number(self) -> int | None:
        """The TPL access number (also of a telegram that could not be decrypted)."""
        if self.decoded is not None:
            return self.decoded.header.access_number
        tpl = leading_tpl(self.frame)
        return None if tpl is None else tpl.access_number

    @property
    def problem(self) -> str | None:
        failure = self.refused or self.error
        return None if failure is None else failure.describe()


def message_counter(heard: Heard) -> int | None:
    """The AFL message counter (MCR) of a decoded telegram, if it carries one (mode 7)."""
    afl = heard.decoded.telegram.afl if heard.decoded is not None else None
    return None if afl is None else afl.counter


def replayed(heard: Heard, last: int) -> Heard:
    """``heard`` refused as a replay (its message counter is not above ``last``)."""
    counter = message_counter(heard)
    return replace(heard, decoded=None, refused=ReplayedTelegram(
        f"message counter {counter} is not above {last}, the last accepted from this meter: a replayed telegram",
        field="AFL.MCR"))


def interpret(received: ReceivedTelegram, frame: WirelessFrame, decoder: WMBusDecoder,
              key: AesKey | None) -> Heard:
    """Decode one telegram with ``key`` (None: the meter has no key configured)."""
    address = meter_address(frame)
    try:
        decoded = decoder.decode(frame, key=key)
    except MBusSecurityError as exc:
        return Heard(received, frame, address, refused=exc)
    except MBusError as exc:
        return Heard(received, frame, address, error=exc)
    return Heard(received, frame, address, decoded=decoded)


def protection_of(security: Security) -> str:
    """What protected a decoded telegram, as ``Reading.protection`` says it
    (``model.PROTECTIONS``): mode 7's AFL MAC authenticates, mode 5 and the ELL only encrypt."""
    if security.mac_verified:
        return f"authenticated+encrypted:wmbus-mode{security.mode}"
    if security.mode != MODE_NONE:
        return f"encrypted:wmbus-mode{security.mode}"
    return "encrypted:wmbus-ell" if security.ell_encrypted else "none"


def readings_of(heard: Heard, tz: ZoneInfo, captured_at: datetime, flags: tuple[str, ...] = ()) -> list[Reading]:
    """The decoded telegram's records as Readings (empty for content kept raw), with
    ``flags`` (``previous_key``: decrypted with the key the meter had before a key change)."""
    decoded = heard.decoded
    if decoded is None or not decoded.records:
        return []
    source = RecordSource(decoded.records, f"{decoded.header.status:02X}", heard.received.frame,
                          protection_of(decoded.telegram.security))
    readings = readings_from_sources(heard.address.device, [source], tz, captured_at)
    return [replace(reading, flags=flags) for reading in readings] if flags else readings


class DuplicateFilter:
    """Keys seen within a window (times in seconds of one monotonic clock).

    :meth:`seen` says whether a key was seen within its window and, if not, remembers it;
    entries expire in the order they were made, so memory stays bounded by the telegrams
    heard within one window.
    """

    def __init__(self) -> None:
        self._expiry: OrderedDict[Any, float] = OrderedDict()

    def seen(self, key: Any, now: float, window_s: float) -> bool:
        self._expire(now)
        expiry = self._expiry.pop(key, None)
        if expiry is not None and expiry > now:
            self._expiry[key] = expiry
            return True
        if window_s > 0:
            self._expiry[key] = now + window_s
        return False

    def forget(self, key: Any) -> None:
        self._expiry.pop(key, None)

    def _expire(self, now: float) -> None:
        # Expiries grow in insertion order when all windows are equal; behind a longer
        # window an expired entry may wait, and :meth:`seen` checks each expiry itself.
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[key]

    def __len__(self) -> int:
        return len(self._expiry)


@dataclass
class Sighting:
    """A meter heard on the air."""

    address: MeterAddress
    telegrams: int = 0
    rssi_dbm: int | None = None
    last_heard: datetime | None = None
    encrypted: bool | None = None
    decrypted: bool = False
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.address.as_dict(), "rssi_dbm": self.rssi_dbm, "telegrams": self.telegrams,
                "last_heard": self.last_heard.isoformat() if self.last_heard else None,
                "encrypted": self.encrypted, "decrypted": self.decrypted, "problem": self.problem}


class Sightings:
    """The meters heard, most recent last, at most ``limit`` (the longest unheard drops
    out: a gateway in a dense street must not grow without bound)."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self._table: OrderedDict[MeterAddress, Sighting] = OrderedDict()

    def note(self, heard: Heard, at: datetime) -> Sighting:
        sighting = self._table.pop(heard.address, None) or Sighting(heard.address)
        self._table[heard.address] = sighting
        while len(self._table) > self.limit:
            self._table.popitem(last=False)
        sighting.telegrams += 1
        sighting.last_heard = at
        if heard.received.rssi_dbm is not None:
            sighting.rssi_dbm = heard.received.rssi_dbm
        if heard.encrypted is not None:
            sighting.encrypted = heard.encrypted
        sighting.decrypted = heard.decrypted
        sighting.problem = heard.problem
        return sighting

    def __iter__(self):
        return iter(list(self._table.values()))

    def __len__(self) -> int:
        return len(self._table)

    def as_list(self) -> list[dict[str, Any]]:
        return [sighting.as_dict() for sighting in self]


def discovery_of(sighting: Sighting) -> Discovery:
    """A meter heard and not configured, for the lifecycle (``[[meters]]`` table so far:
    its identity)."""
    address = sighting.address
    table = {"protocol": "wmbus", "id": address.identification, "manufacturer": address.manufacturer,
             "version": address.version, "device_type": address.device_type}
    return Discovery(address.device, address.as_dict(), table, sighting.last_heard or utc_now())
