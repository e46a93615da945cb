"""A tiny simulated DLMS/COSEM meter for what the gurux meter cannot do: a clock that is
off and can be set, a disconnect control that can be operated, an event log that grows.
Built on the codec's server association (gateway/codecs/dlms/server.py) behind the TCP
wrapper, in the test's event loop; and a TCP proxy that can tamper with a meter's replies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from gateway.codecs.dlms.axdr import Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.link_events import ApduReceived
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.selective import CLOCK_TIME, CaptureObject, RangeDescriptor
from gateway.codecs.dlms.server import Reply, ServerAssociation, ServerSettings
from gateway.codecs.dlms.services import (
    ActionRequestNormal,
    ActionResult,
    DataAccessResult,
    GetRequestNormal,
    SetRequestNormal,
)
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.wrapper import WrapperConnection, WrapperMessage, WrapperParser

LDN = Obis(0, 0, 42, 0, 0, 255)
CLOCK = Obis(0, 0, 1, 0, 0, 255)
ENERGY = Obis(1, 0, 1, 8, 0, 255)
DISCONNECT = Obis(0, 0, 96, 3, 10, 255)
EVENT_LOG = Obis(0, 0, 99, 98, 0, 255)
EVENT_CODE = Obis(0, 0, 96, 11, 0, 255)
NOT_FOUND = DataAccessResult(4)  # object-undefined


@dataclass
class SimMeter:
    """The meter's state; ``clock_offset_s`` is how far its clock is from real time."""

    name: bytes = b"SIM0000000000001"
    clock_offset_s: float = 0.0
    output_state: bool = True
    control_state: int = 1  # connected
    events: list[tuple[datetime, int]] = field(default_factory=list)
    sets: list[tuple[str, Data]] = field(default_factory=list)
    actions: list[tuple[int, int]] = field(default_factory=list)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.clock_offset_s)

    # -- services --

    def get(self, request: GetRequestNormal):
        a = request.attribute
        key = (a.class_id, a.instance, a.attribute)
        if key == (1, LDN, 2):
            return octet_string(self.name)
        if key == (8, CLOCK, 2):
            return octet_string(CosemDateTime.from_datetime(self.now()).to_bytes())
        if key == (3, ENERGY, 2):
            return Data(DataType.DOUBLE_LONG_UNSIGNED, 1234567)
        if key == (3, ENERGY, 3):
            return ScalerUnit(-1, 30).to_data()
        if key == (70, DISCONNECT, 2):
            return Data(DataType.BOOLEAN, self.output_state)
        if key == (70, DISCONNECT, 3):
            return Data(DataType.ENUM, self.control_state)
        if key == (7, EVENT_LOG, 3):
            return array(CLOCK_TIME.to_data(), CaptureObject(1, EVENT_CODE, 2).to_data())
        if key == (7, EVENT_LOG, 2):
            return self._event_rows(request)
        return NOT_FOUND

    def _event_rows(self, request: GetRequestNormal) -> Data:
        rows = self.events
        if request.access is not None:
            descriptor = RangeDescriptor.from_access(request.access)
            start = CosemDateTime.from_bytes(descriptor.from_value.value).to_datetime(timezone.utc)
            end = CosemDateTime.from_bytes(descriptor.to_value.value).to_datetime(timezone.utc)
            rows = [(t, code) for t, code in rows if start <= t <= end]
        return array(*(structure(octet_string(CosemDateTime.from_datetime(t).to_bytes()),
                                 Data(DataType.LONG_UNSIGNED, code)) for t, code in rows))

    def set(self, request: SetRequestNormal) -> DataAccessResult:
        a = request.attribute
        self.sets.append((f"{a.instance.dotted}:{a.class_id}:{a.attribute}", request.value))
        if (a.class_id, a.instance, a.attribute) == (8, CLOCK, 2):
            new = CosemDateTime.from_bytes(request.value.value).to_datetime(timezone.utc)
            self.clock_offset_s = (new - datetime.now(timezone.utc)).total_seconds()
            return DataAccessResult(0)
        return DataAccessResult(3)  # read-write-denied

    def action(self, request: ActionRequestNormal) -> ActionResult:
        m = request.method
        self.actions.append((m.class_id, m.method))
        if (m.class_id, m.instance) == (70, DISCONNECT) and m.method in (1, 2):
            self.output_state = m.method == 2
            self.control_state = 1 if m.method == 2 else 0
            return ActionResult(0)
        if (m.class_id, m.instance, m.method) == (8, CLOCK, 1):  # adjust_to_quarter (Blue Book 4.5.1)
            now = self.now()
            quarter = now.replace(minute=round(now.minute / 15) * 15 % 60, second=0, microsecond=0)
            self.clock_offset_s = (quarter - datetime.now(timezone.utc)).total_seconds()
            return ActionResult(0)
        return ActionResult(11)  # object-unavailable

    # -- the association over the wrapper --

    def association(self) -> ServerAssociation:
        """The association of a new connection (a subclass may demand security)."""
        return ServerAssociation(ServerSettings())

    def connection_closed(self) -> None:
        """A client's connection ended (a subclass may act on it)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = WrapperConnection(server_side=True)
        association = self.association()
        try:
            while data := await reader.read(4096):
                link.receive_data(data)
                while isinstance(event := link.next_event(), ApduReceived):
                    writer.write(link.send_apdu(self._answer(association, event.apdu)))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.connection_closed()

    def _answer(self, association: ServerAssociation, apdu: bytes) -> bytes:
        event = association.receive_apdu(apdu)
        if isinstance(event, Reply):
            return event.apdu
        request = event.request
        if isinstance(request, GetRequestNormal):
            return association.answer_get(self.get(request))
        if isinstance(request, SetRequestNormal):
            return association.answer_set(self.set(request))
        if isinstance(request, ActionRequestNormal):
            return association.answer_action(self.action(request))
        raise AssertionError(f"the simulated meter does not serve {type(request).__name__}")


@contextlib.asynccontextmanager
async def serving(meter: SimMeter) -> AsyncIterator[str]:
    """``HOST:PORT`` of ``meter`` on loopback for the duration of the block."""
    server = await asyncio.start_server(meter.serve, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from ``reader`` to ``writer`` unchanged until either side closes."""
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class RawBytes(bytes):
    """What a tamper function returns to put bytes on the wire as they are (no wrapper
    header added): a frame cut short, garbage."""


#: (connection number, reply number within it, the reply's APDU) -> the APDU to send on
#: (framed anew), RawBytes to send as they are, or None to send nothing.
Tamper = Callable[[int, int, bytes], "bytes | None"]


@contextlib.asynccontextmanager
async def tampering_proxy(upstream: tuple[str, int], tamper: Tamper) -> AsyncIterator[str]:
    """``HOST:PORT`` of a wrapper proxy in front of ``upstream`` that passes every request
    and hands every reply APDU to ``tamper`` first (replay, flip, truncate, swallow)."""
    connections = 0
    tasks: set[asyncio.Task] = set()

    async def replies_of(reader, writer, transform) -> None:
        parser = WrapperParser()
        replies = 0
        try:
            while data := await reader.read(4096):
                parser.receive_data(data)
                while (message := parser.next_message()) is not None:
                    replies += 1
                    apdu = transform(replies, message.apdu)
                    if isinstance(apdu, RawBytes):
                        writer.write(apdu)
                    elif apdu is not None:
                        writer.write(WrapperMessage(message.source, message.destination, apdu).to_bytes())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer) -> None:
        nonlocal connections
        connections += 1
        number = connections
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        down = asyncio.ensure_future(replies_of(up_reader, client_writer, lambda n, apdu: tamper(number, n, apdu)))
        tasks.add(down)
        try:
            await _carry(client_reader, up_writer)
        finally:
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await down
            tasks.discard(down)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def mode_e_opening(upstream: tuple[str, int], identification: bytes = b"/GRX5\\2GXMETER\r\n",
                         heard: list[bytes] | None = None) -> AsyncIterator[str]:
    """``HOST:PORT`` of an IEC 62056-21 optical head in front of an HDLC meter: it answers
    the sign-on request with ``identification``, takes the acknowledgement (kept in
    ``heard``), then carries bytes both ways unchanged."""

    async def handle(reader, writer) -> None:
        try:
            request = await reader.readuntil(b"\r\n")
            if heard is not None:
                heard.append(request)
            writer.write(identification)
            ack = await reader.readuntil(b"\r\n")
            if heard is not None:
                heard.append(ack)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        back = asyncio.ensure_future(_carry(up_reader, writer))
        try:
            await _carry(reader, up_writer)
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await back

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()
