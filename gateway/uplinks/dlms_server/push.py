"""The push client: DataNotifications of the store's records to the HES (Green Book 9.3.12,
Blue Book 4.4.8 Push setup), over TCP with the IEC 62056-47 wrapper.

What is pushed: every record after the push cursor (the store's, ``store.cursor(NAME)``), in
seq order, :attr:`~gateway.config.DlmsPush.batch_size` records per DataNotification at most
(fewer when the APDU would exceed ``max_apdu_bytes``). A DataNotification carries the values
of the Push setup's push_object_list::

    structure {
      octet-string  push setup logical name (0-0:25.9.0*255),
      octet-string  the gateway's logical device name,
      array of structure {                  -- one per record (object 0-0:129.2.0*255)
        long64-unsigned  seq (gateway-wide, as on every uplink),
        octet-string     capture time / event time (COSEM date-time, UTC),
        long-unsigned    SAP of the logical device (an event without a meter: 1),
        octet-string     logical name: the register's OBIS code in that device; the event
                         log 0-0:99.98.0*255 for an event,
        value            the register's value (mantissa, as GET gives it); for an event
                         structure {code, severity, message} (visible-string, or
                         utf8-string for text that is not printable ASCII),
        scaler_unit      structure {integer, enum} for a numeric reading, else null-data
      }
    }

ciphered as general-glo-ciphering (security control 0x30, the management keys, the server's
system title and its next invocation counter), its long-invoke-id the low 24 bits of the first
seq, its date-time the time of sending.

When: every ``interval_s`` (after a random delay up to the randomisation_start_interval),
at once when an event is stored (``on_event``), when the HES invokes the Push setup's method 1,
and at start when records wait. A failed push is tried again ``retries`` times, ``retry_delay_s``
apart; then the next occasion tries again, from the cursor.

Acknowledgement: a DataNotification is unconfirmed, so "accepted" is TCP's: the cursor moves
past a notification once the HES's TCP stack has acknowledged every byte of it (the socket's
send queue, SIOCOUTQ, is empty), within ``connect_timeout_s``. A notification sent but not
acknowledged in time is sent again next time: delivery is at-least-once and in order; the HES
drops duplicates by seq. Its application may still lose what its kernel acknowledged (a crash
right then); it sees the gap in the seqs and can read the records back from the event log and
the profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import random
import struct
import termios
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from gateway.codecs.dlms.axdr import Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.security import cipher_apdu
from gateway.codecs.dlms.services import DataAccessResult, DataNotification
from gateway.codecs.dlms.wrapper import WrapperMessage
from gateway.config import DlmsPush, is_loopback
from gateway.errors import GatewayError
from gateway.model import Event, Reading, StoredRecord
from gateway.dlms_counters import SERVER_NEED
from gateway.uplinks.dlms_server import mapping
from gateway.uplinks.dlms_server.objects import PUSH_SETUP, SUCCESS, TYPE_UNMATCHED
from gateway.uplinks.dlms_server.profiles import EVENT_LOG
from gateway.uplinks.dlms_server.registry import MANAGEMENT_SAP

if TYPE_CHECKING:
    from gateway.uplinks.dlms_server.server import DlmsServer

log = logging.getLogger(__name__)

STATE_PREFIX = "dlms-server.push."
#: Room for the wrapper header, the notification's header and the ciphering envelope.
ENVELOPE = 64
ACK_POLL_S = 0.005
#: A record larger than this goes without its value (a wrapper message holds 65535 bytes).
MAX_ROW = 60_000
_NULL = Data(DataType.NULL_DATA)


@dataclass
class PushSettings:
    """What the HES may change through the Push setup (attributes 3, 5, 6, 7); kept in the
    store with the configured destination they replaced, so a new destination in the
    configuration wins over an older change by the HES."""

    destination: str
    randomisation_s: int = 0
    retries: int = 3
    retry_delay_s: int = 30


@dataclass
class PushCounters:
    connected: bool = False
    pushes: int = 0
    failures: int = 0
    notifications: int = 0
    records: int = 0
    cursor: int = 0
    last_push_at: datetime | None = None
    last_error: str | None = None


class Pusher:
    """Pushes the store's records to the HES for ``server`` (see the module docstring);
    plaintext with ``security = "none"``."""

    def __init__(self, config: DlmsPush, server: DlmsServer) -> None:
        self.config = config
        self.server = server
        self.name = server.name
        self.store = server.store
        self.registry = server.registry
        self.counters = server.counters
        self.keys = None if config.security == "none" else server.keys
        self.settings = PushSettings(config.destination, 0, config.retries, config.retry_delay_s)
        self.status = PushCounters()
        self._wanted = asyncio.Event()

    # --- the HES's side -------------------------------------------------------------------

    def trigger(self) -> None:
        """Push soon (the Push setup's method 1)."""
        self._wanted.set()

    async def change(self, attribute: int, value: Data) -> DataAccessResult:
        """SET of a Push setup attribute (3 destination, 5 randomisation, 6 retries, 7 delay)."""
        changed = _changed(self.settings, attribute, value, self.config.security == "none")
        if changed is None:
            return TYPE_UNMATCHED
        self.settings = changed
        await self.store.set_state(STATE_PREFIX + self.name,
                                   json.dumps({"config": self.config.destination, **asdict(changed)}))
        log.info("DLMS push %s: the HES set %s", self.name, asdict(changed))
        return SUCCESS

    async def pending(self) -> Data:
        """The records the next push carries."""
        await self.registry.sync()
        batch = await self.store.read_after(await self.store.cursor(self.name), self.config.batch_size)
        return array(*(self._record(stored) for stored in batch))

    # --- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Push until cancelled (call :meth:`load` first)."""
        self.status.cursor = await self.store.cursor(self.name)
        if self.store.last_seq > self.status.cursor:
            self._wanted.set()  # what waited while we were away goes first
        async with asyncio.TaskGroup() as group:
            if self.config.on_event:
                group.create_task(self._watch_events())
            group.create_task(self._schedule())

    async def load(self) -> None:
        """The settings the HES changed, unless the configuration changed since."""
        stored = await self.store.get_state(STATE_PREFIX + self.name)
        if stored is None:
            return
        try:
            saved = json.loads(stored)
            if saved.pop("config") == self.config.destination:
                self.settings = PushSettings(**saved)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("DLMS push %s: ignoring unreadable saved settings: %s", self.name, exc)

    async def _watch_events(self) -> None:
        seen = self.store.last_seq
        while True:
            await self.store.wait_for_records(seen)
            upto = self.store.last_seq
            if await self.store.has_events_after(seen):
                self._wanted.set()
            seen = upto

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.interval_s
        due = loop.time() + interval if interval else None
        while True:
            scheduled = False
            try:
                async with asyncio.timeout(None if due is None else max(0.0, due - loop.time())):
                    await self._wanted.wait()
            except TimeoutError:
                scheduled = True
            self._wanted.clear()
            if scheduled:
                due = loop.time() + interval
                if self.settings.randomisation_s:
                    await asyncio.sleep(random.uniform(0, self.settings.randomisation_s))
            await self._push_with_retries()

    async def _push_with_retries(self) -> None:
        for attempt in range(self.settings.retries + 1):
            try:
                await self.push()
                return
            except (OSError, TimeoutError, GatewayError) as exc:  # the network, the HES, the store
                self.status.failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.log(logging.DEBUG if attempt else logging.WARNING, "DLMS push %s to %s failed: %s",
                        self.name, self.settings.destination, self.status.last_error)
            if attempt < self.settings.retries:
                await asyncio.sleep(self.settings.retry_delay_s)

    async def push(self) -> int:
        """Push everything after the cursor now; returns how many records went."""
        await self.registry.sync()
        cursor = await self.store.cursor(self.name)
        if self.store.last_seq <= cursor:
            return 0
        host, _, port = self.settings.destination.rpartition(":")
        timeout = self.config.connect_timeout_s
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))  # the HES says nothing
        pushed = 0
        self.status.connected = True
        try:
            while batch := await self.store.read_after(cursor, self.config.batch_size):
                for records in self._split(batch):
                    await self.counters.reserve(self.server.system_title, SERVER_NEED)
                    writer.write(WrapperMessage(MANAGEMENT_SAP, self.config.client_sap,
                                                self._notification(records)).to_bytes())
                    async with asyncio.timeout(timeout):
                        await writer.drain()
                        await _acknowledged(writer)
                    cursor = records[-1][0].seq
                    await self.store.advance_cursor(self.name, cursor)
                    self.status.cursor = cursor
                    self.status.notifications += 1
                    self.status.records += len(records)
                    pushed += len(records)
        finally:
            self.status.connected = False
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
        self.status.pushes += 1
        self.status.last_push_at = self.server.clock()
        self.status.last_error = None
        return pushed

    # --- encoding ---------------------------------------------------------------------------

    def _split(self, batch: list[StoredRecord]) -> list[list[tuple[StoredRecord, Data]]]:
        """The batch in notifications of at most ``max_apdu_bytes`` (a record alone may be
        larger; it goes alone)."""
        room = self.config.max_apdu_bytes - ENVELOPE - len(self.server.management_name)
        groups: list[list[tuple[StoredRecord, Data]]] = [[]]
        size = 0
        for stored in batch:
            row = self._record(stored)
            length = len(row.to_bytes())
            if length > MAX_ROW:  # a huge value (a text or frame of a meter): the row without it
                items = list(row.value)
                items[4] = _NULL
                row = structure(*items)
                length = len(row.to_bytes())
            if groups[-1] and size + length > room:
                groups.append([])
                size = 0
            groups[-1].append((stored, row))
            size += length
        return groups

    def _notification(self, records: list[tuple[StoredRecord, Data]]) -> bytes:
        body = structure(octet_string(PUSH_SETUP.to_bytes()), octet_string(self.server.management_name),
                         array(*(row for _, row in records)))
        now = CosemDateTime.from_datetime(self.server.clock().astimezone(timezone.utc))
        plain = DataNotification(records[0][0].seq & 0xFFFFFF, body, now).to_bytes()
        if self.keys is None:
            return plain
        counter = self.counters.next_outgoing(self.server.system_title)
        return cipher_apdu(plain, keys=self.keys, system_title=self.server.system_title, invocation_counter=counter,
                           general=True).to_bytes()

    def _record(self, stored: StoredRecord) -> Data:
        record = stored.record
        if isinstance(record, Reading):
            meter = self.registry.meter_of(record.device)
            quantity = meter.quantities.get(record.quantity) if meter else None
            if meter is None or quantity is None:  # not registered (cannot happen after sync)
                return _row(stored.seq, record.captured_at, 0, bytes(6), mapping.value_data(record.value), _NULL)
            scaler_unit = quantity.scaler_unit if quantity.numeric else _NULL
            return _row(stored.seq, record.captured_at, meter.sap, quantity.obis.to_bytes(),
                        quantity.data(record.value, record.unit), scaler_unit)
        assert isinstance(record, Event)
        meter = self.registry.meter_of(record.device) if record.device else None
        value = structure(mapping.text_data(record.code), mapping.text_data(record.severity.value),
                          mapping.text_data(record.message))
        return _row(stored.seq, record.occurred_at, meter.sap if meter else MANAGEMENT_SAP, EVENT_LOG.to_bytes(),
                    value, _NULL)

    def status_dict(self) -> dict[str, Any]:
        return {**asdict(self.status), "destination": self.settings.destination,
                "pending": max(0, self.store.last_seq - self.status.cursor)}


def _row(seq: int, when: datetime, sap: int, logical_name: bytes, value: Data, scaler_unit: Data) -> Data:
    return structure(Data(DataType.LONG64_UNSIGNED, seq), mapping.date_time_data(when),
                     Data(DataType.LONG_UNSIGNED, sap), octet_string(logical_name), value, scaler_unit)


def _changed(settings: PushSettings, attribute: int, value: Data, plaintext: bool) -> PushSettings | None:
    """The settings after a SET, None when the value is not acceptable."""
    if attribute == 3:
        items = value.value if value.type is DataType.STRUCTURE else ()
        if len(items) != 3 or [i.type for i in items] != [DataType.ENUM, DataType.OCTET_STRING, DataType.ENUM] \
                or items[0].value != 0 or items[2].value != 0:  # TCP, A-XDR encoded xDLMS APDU
            return None
        try:
            destination = items[1].value.decode("ascii")
            host, sep, port = destination.rpartition(":")
            if not sep or not host or not 0 < int(port) < 65536:
                return None
        except (UnicodeDecodeError, ValueError):
            return None
        if plaintext and not is_loopback(host.strip("[]")):
            return None
        return PushSettings(destination, settings.randomisation_s, settings.retries, settings.retry_delay_s)
    expected = {5: DataType.LONG_UNSIGNED, 6: DataType.UNSIGNED, 7: DataType.LONG_UNSIGNED}.get(attribute)
    if expected is None or value.type is not expected:
        return None
    field = {5: "randomisation_s", 6: "retries", 7: "retry_delay_s"}[attribute]
    return PushSettings(**{**asdict(settings), field: value.value})


async def _acknowledged(writer: asyncio.StreamWriter) -> None:
    """Wait until the peer's TCP has acknowledged everything written (Linux: SIOCOUTQ)."""
    sock = writer.get_extra_info("socket")
    while True:
        try:
            unacknowledged = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return  # no such ioctl here: drain() is all we can know
        if unacknowledged == 0:
            return
        if writer.transport.is_closing():
            raise ConnectionResetError("the HES closed the connection before acknowledging")
        await asyncio.sleep(ACK_POLL_S)

