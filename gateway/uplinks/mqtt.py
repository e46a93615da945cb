"""The MQTT 5 uplink to the Head-End System: signed batches out, commands in.

Topics, with ``P`` the uplink's ``topic_prefix`` and ``G`` the gateway id:

=================  =====================================================================
``P/G/readings``   signed batches of readings, QoS 1 (see "payload" below)
``P/G/events``     signed batches of events, QoS 1
``P/G/status``     retained status JSON, ``"state": "online"``; the broker replaces it
                   with the last will ``"state": "offline"`` when the connection dies
``P/G/cmd/NAME``   commands from the HES (MQTT 5 request/response); answered on the
                   request's ResponseTopic with its CorrelationData, else on
                   ``P/G/responses/NAME``; ``P/G/cmd/NAME/IDENTITY`` the same with the
                   HES's identity, which the broker's ACL vouches for (the operations)
=================  =====================================================================

Payload of a data message: the flattened JWS JSON serialization (RFC 7515 §7.2.2,
ES256, ``kid`` in the protected header) of the UTF-8 JSON
``{"gateway", "first_seq", "last_seq", "records": [...]}``. ``seq`` is gateway-wide and
shared by readings and events: a readings message may skip the seqs that went to the
events topic. Delivery is at-least-once: after a reconnect the uplink resends from its
cursor, so the HES drops duplicates by ``(gateway, seq)``; a duplicate carries the same
seq and the same record.

The cursor moves only past records whose messages were all PUBACKed, in seq order; up to
:data:`MAX_IN_FLIGHT` messages travel at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time as monotonic_clock
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import __version__
from gateway.config import MqttUplink
from gateway.errors import GatewayError, UplinkError
from gateway.model import Reading, StoredRecord, utc_now
from gateway.payload import batch_head, batch_of_texts, batch_payload, record_json, record_text
from gateway.signing import SigningKey
from gateway.store import Store
from gateway.uplinks.backoff import Backoff
from gateway.uplinks.commands import CommandError, CommandRouter, Handler, dumps, int_argument, str_argument
from gateway.uplinks.mqtt_client import (
    MAX_IN_FLIGHT,
    BrokerLimits,
    ConnectionWatch,
    cancellable,
    client_log,
    close_socket,
    describe,
    disconnect_with_will,
)
from gateway.uplinks.mqtt_tls import credentials, tls_context

log = logging.getLogger(__name__)

#: Store batches read ahead of the one being signed and sent.
READ_AHEAD = 2
#: How often the retained status is refreshed while connected.
STATUS_INTERVAL_S = 60.0
#: Bound of the integrator's status callback.
STATUS_CALLBACK_TIMEOUT_S = 10.0
#: Commands served at once (a ``read`` may take the time of a meter read).
COMMAND_CONCURRENCY = 4
#: Bound of one command, including a replay of many records.
COMMAND_TIMEOUT_S = 300.0
#: Bound of the goodbye ("offline" status) on shutdown.
GOODBYE_TIMEOUT_S = 2.0
#: MQTT 5 content type of a data message (RFC 7515 §9.2.1).
JOSE_JSON = "application/jose+json"
#: Bytes of a data PUBLISH packet beside its topic and payload: fixed header, topic length,
#: packet id, properties (the content type).
PUBLISH_OVERHEAD = 64

StatusCallback = Callable[[], Awaitable[dict[str, Any]]]
ReadCallback = Callable[[str], Awaitable[list[Reading]]]
#: Told ``(connected, what)`` once per change of the connection's state, never per retry.
ConnectionCallback = Callable[[bool, str], None]


@dataclass
class UplinkCounters:
    """What the uplink did since the process started (for the status document)."""

    connected: bool = False
    connected_since: datetime | None = None
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    messages_published: int = 0
    records_published: int = 0
    messages_acked: int = 0
    records_acked: int = 0
    records_replayed: int = 0
    commands: int = 0
    command_errors: int = 0
    cursor: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One data message, built and signed, carrying ``count`` records."""

    topic: str
    payload: bytes
    count: int


class MqttPublisher:
    """One MQTT uplink: relays the store to the broker and answers the HES's commands.

    ``status`` is awaited for the status document (version, uptime, queue depth, buses and
    meters, as the integrator sees them); ``on_demand_read(meter)`` serves the ``read``
    command (``None``: the command answers that reads are unavailable). Nothing is
    published before :meth:`run` is awaited; ``run`` never returns on its own.
    """

    def __init__(
        self,
        config: MqttUplink,
        *,
        gateway_id: str,
        store: Store,
        signer: SigningKey,
        status: StatusCallback,
        on_demand_read: ReadCallback | None = None,
        backoff: Backoff | None = None,
        on_connection: ConnectionCallback | None = None,
        commands: Mapping[str, Handler] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.gateway_id = gateway_id
        self.store = store
        self.signer = signer
        self.status_callback = status
        self.on_demand_read = on_demand_read
        self.on_connection = on_connection
        #: More commands from the integrator (``config`` ...), beside the uplink's own.
        self.extra_commands = dict(commands or {})
        self._reported_connected: bool | None = None
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.counters = UplinkCounters()
        base = f"{config.topic_prefix}/{gateway_id}"
        self.topic_readings = f"{base}/readings"
        self.topic_events = f"{base}/events"
        self.topic_status = f"{base}/status"
        self.topic_commands = f"{base}/cmd/+"
        #: Commands with the requester's identity as the last topic level (cmd/op/hes-a).
        self.topic_identified_commands = f"{base}/cmd/+/+"
        self.topic_responses = f"{base}/responses"
        self.client_id = config.client_id or f"{gateway_id}-{config.name}"
        self._status_wanted = asyncio.Event()
        self.broker_limits = BrokerLimits()
        self._data_properties = Properties(PacketTypes.PUBLISH)
        self._data_properties.ContentType = JOSE_JSON
        self._last_logged_error: str | None = None

    # --- public ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, deliver, serve commands; reconnect with back-off forever.

        Cancel to stop: the uplink publishes its retained status as offline (bounded),
        disconnects, and lets ``CancelledError`` through.
        """
        self.counters.cursor = await self.store.cursor(self.name)  # for the backlog in status()
        while True:
            started = monotonic_clock.monotonic()
            try:
                await self._session()
            except Exception as exc:  # noqa: BLE001  (whatever broke, the uplink tries again)
                self._failed(exc)
            if monotonic_clock.monotonic() - started > self.backoff.cap_s:
                self.backoff.reset()  # that connection worked for a while: start afresh
            delay = self.backoff.next_delay()
            log.debug("uplink %s: next connection attempt in %.1f s", self.name, delay)
            await asyncio.sleep(delay)
            self.counters.reconnects += 1

    def request_status(self) -> None:
        """Publish the retained status soon (e.g. after a meter changed state)."""
        self._status_wanted.set()

    # --- connection -----------------------------------------------------------------------

    async def _session(self) -> None:
        client, watch = await self._client()
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(close_socket, client)  # runs last: no socket outlives a session
            try:
                # paho bounds the TCP connect and the TLS handshake by connect_timeout_s
                # each, aiomqtt bounds the wait for CONNACK; this bounds all of them.
                async with asyncio.timeout(3 * self.config.connect_timeout_s + 1):
                    await cancellable(stack.enter_async_context(client))
            except (aiomqtt.MqttError, TimeoutError) as exc:
                self.counters.connect_failures += 1
                raise UplinkError(f"cannot connect to {self._where()}: {watch.failure(exc)}") from None
            await self._subscribe_commands(client)
            self._connected()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._deliver(client))
                    group.create_task(self._serve_commands(client))
                    group.create_task(self._keep_status(client))
            except asyncio.CancelledError:
                await self._goodbye(client)
                raise
            finally:
                self.counters.connected = False
                self.counters.connected_since = None

    async def _client(self) -> tuple[aiomqtt.Client, ConnectionWatch]:
        # Reading the TLS material and the password touches files: off the event loop.
        context = await asyncio.to_thread(tls_context, self.config)
        username, password = await asyncio.to_thread(credentials, self.config)
        will = aiomqtt.Will(self.topic_status, dumps(self._offline("connection lost")), qos=1, retain=True)
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            # A clean start on every connection: undelivered data is resent from the
            # store's cursor (a broker session would only duplicate it), and commands
            # queued while the gateway was away are stale by the time it returns.
            clean_start=True,
            username=username,
            password=password,
            will=will,
            keepalive=self.config.keepalive_s,
            timeout=self.config.connect_timeout_s,
            tls_context=context,
            max_inflight_messages=MAX_IN_FLIGHT,
            logger=client_log,
        )
        # Our window bounds what is pending; aiomqtt would otherwise log a WARNING for
        # every publish beyond ten outstanding ones.
        client.pending_calls_threshold = 1 << 30
        client._client.connect_timeout = self.config.connect_timeout_s  # noqa: SLF001  (not in aiomqtt's API)
        watch = ConnectionWatch(client)
        self.broker_limits = watch.limits
        return client, watch

    def _connected(self) -> None:
        self.counters.connected = True
        self.counters.connected_since = utc_now()
        self.counters.connects += 1
        if self._last_logged_error is not None or self.counters.connects == 1:
            log.info("uplink %s: connected to %s as %s", self.name, self._where(), self.client_id)
        self._last_logged_error = None
        self._report_connection(True, f"connected to {self._where()}")

    def _report_connection(self, connected: bool, what: str) -> None:
        """Tell ``on_connection`` when the state changed (the first failure to connect
        counts as a change: from unknown to disconnected)."""
        if self.on_connection is None or self._reported_connected is connected:
            return
        self._reported_connected = connected
        self.on_connection(connected, what)

    def _failed(self, exc: Exception) -> None:
        """Count and log a failed connection; the same failure again only at DEBUG, so a
        broker that stays away does not fill the log. An error that is not about the
        network, the broker or the configuration is a defect: logged with its traceback."""
        text = describe(exc)
        self.counters.last_error = text
        self.counters.last_error_at = utc_now()
        self._report_connection(False, text)
        if not _expected(exc):
            log.error("uplink %s: unexpected error: %s", self.name, text, exc_info=exc)
        elif text != self._last_logged_error:
            log.warning("uplink %s: %s", self.name, text)
        else:
            log.debug("uplink %s: %s", self.name, text)
        self._last_logged_error = text

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """On shutdown: say "offline" (retained) ourselves, since a clean DISCONNECT
        suppresses the last will. If that does not get through in time (a slow link with
        data still queued ahead of it), disconnect asking the broker to publish the will
        instead (MQTT 5 reason code 0x04): either way the status ends offline."""
        try:
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await client.publish(self.topic_status, dumps(self._offline("shutdown")), qos=1, retain=True,
                                     timeout=GOODBYE_TIMEOUT_S)
        except (aiomqtt.MqttError, TimeoutError, OSError):
            disconnect_with_will(client)

    # --- delivery -------------------------------------------------------------------------

    async def _deliver(self, client: aiomqtt.Client) -> None:
        """Publish everything after the cursor, then whatever the store receives."""
        next_seq = await self.store.cursor(self.name)
        self.counters.cursor = next_seq
        window = asyncio.Semaphore(MAX_IN_FLIGHT)
        in_flight: deque[tuple[int, list[asyncio.Task[None]]]] = deque()
        sent = asyncio.Event()
        batches: asyncio.Queue[list[StoredRecord]] = asyncio.Queue(maxsize=READ_AHEAD)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read_ahead(next_seq, batches))
            group.create_task(self._advance_cursor(in_flight, sent))
            while True:
                batch = await batches.get()
                tasks: list[asyncio.Task[None]] = []
                for message in await self._build(batch):
                    await window.acquire()
                    tasks.append(group.create_task(self._publish_data(client, message, window)))
                in_flight.append((batch[-1].seq, tasks))
                sent.set()

    async def _read_ahead(self, after: int, batches: asyncio.Queue[list[StoredRecord]]) -> None:
        """Read the store's next batches while the current one is signed and sent (the
        store reads on its own thread). Waits for new records, never polls."""
        while True:
            if self.store.last_seq <= after:
                await self.store.wait_for_records(after)
            batch = await self.store.read_after(after, self.config.batch_size)
            if not batch:
                # Retention removed what was announced; wait for what comes next.
                await self.store.wait_for_records(max(after, self.store.last_seq))
                continue
            await batches.put(batch)
            after = batch[-1].seq

    async def _publish_data(self, client: aiomqtt.Client, message: Outgoing, window: asyncio.Semaphore) -> None:
        try:
            self.counters.messages_published += 1
            self.counters.records_published += message.count
            await client.publish(message.topic, message.payload, qos=1, properties=self._data_properties,
                                 timeout=self.config.publish_timeout_s)
            self.counters.messages_acked += 1
            self.counters.records_acked += message.count
        finally:
            window.release()

    async def _advance_cursor(self, in_flight: deque[tuple[int, list[asyncio.Task[None]]]],
                              sent: asyncio.Event) -> None:
        """Move the cursor past each batch once all its messages were PUBACKed, in order.

        While one cursor write runs, later acknowledgements accumulate and the next write
        covers them all: the store sees at most one write at a time, however fast the
        broker acknowledges.
        """
        while True:
            while not in_flight:
                sent.clear()
                await sent.wait()
            seq, tasks = in_flight[0]
            if tasks:
                await asyncio.wait(tasks)
            if not all(_succeeded(task) for task in tasks):
                return  # the session is ending; the resend starts from the stored cursor
            in_flight.popleft()
            while in_flight and all(_succeeded(task) for task in in_flight[0][1]):
                seq = in_flight.popleft()[0]
            await self.store.advance_cursor(self.name, seq)
            self.counters.cursor = seq

    async def _build(self, batch: Sequence[StoredRecord]) -> list[Outgoing]:
        """:meth:`_messages` on a worker thread: encoding and signing a batch takes
        milliseconds (5-10 times more on a Pi) that would otherwise stall the event loop,
        and with it the serial timing of the buses. The caller awaits each batch before the
        next, so messages keep their order."""
        return await asyncio.to_thread(self._messages, batch)

    def _messages(self, batch: Sequence[StoredRecord]) -> list[Outgoing]:
        """The signed messages of one store batch: its readings, then its events."""
        readings = [stored for stored in batch if isinstance(stored.record, Reading)]
        if len(readings) == len(batch):
            return self._signed(self.topic_readings, batch)
        events = [stored for stored in batch if not isinstance(stored.record, Reading)]
        return [*self._signed(self.topic_readings, readings), *self._signed(self.topic_events, events)]

    def _signed(self, topic: str, records: Sequence[StoredRecord]) -> list[Outgoing]:
        """One message for ``records``, or several if the broker's Maximum Packet Size
        would refuse one (a poison message would otherwise be retried forever). The size of
        the signed message is known before signing; a batch too large is split by its
        records' encoded sizes (:meth:`_split`)."""
        if not records:
            return []
        signer = self.signer
        payload = batch_payload(self.gateway_id, records)
        room = self.broker_limits.maximum_packet_size - len(topic) - PUBLISH_OVERHEAD
        if len(records) == 1 or signer.envelope_size(len(payload)) <= room:
            return [Outgoing(topic, jws_json(signer.sign(payload)), len(records))]
        return self._split(signer, topic, records, room)

    def _split(self, signer: SigningKey, topic: str, records: Sequence[StoredRecord], room: int) -> list[Outgoing]:
        """Messages of as many records each as fit ``room`` bytes, in order; each record is
        encoded once (a record too large alone still goes alone)."""
        texts = [record_text(stored) for stored in records]
        # The head with the widest seqs of the list bounds the head of any part of it.
        head = len(batch_head(self.gateway_id, records[-1].seq, records[-1].seq)) + len("]}")
        messages: list[Outgoing] = []
        start, size = 0, head
        for index, text in enumerate(texts):
            grown = size + len(text) + (index > start)  # and a comma after the part's first record
            if index > start and signer.envelope_size(grown) > room:
                messages.append(self._message(signer, topic, records, texts, start, index))
                start, grown = index, head + len(text)
            size = grown
        messages.append(self._message(signer, topic, records, texts, start, len(records)))
        return messages

    def _message(self, signer: SigningKey, topic: str, records: Sequence[StoredRecord], texts: list[bytes],
                 start: int, end: int) -> Outgoing:
        payload = batch_of_texts(self.gateway_id, records[start].seq, records[end - 1].seq, texts[start:end])
        return Outgoing(topic, jws_json(signer.sign(payload)), end - start)

    # --- status ---------------------------------------------------------------------------

    async def _keep_status(self, client: aiomqtt.Client) -> None:
        """Publish the retained status now, every STATUS_INTERVAL_S, and on request."""
        while True:
            self._status_wanted.clear()
            document = await self.status_document()
            await cancellable(client.publish(self.topic_status, dumps(document), qos=1, retain=True,
                                             timeout=self.config.publish_timeout_s))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_INTERVAL_S):
                    await self._status_wanted.wait()

    def status(self) -> dict[str, Any]:
        """This uplink's counters, backlog and broker limits (JSON-ready but for times)."""
        return {**self.counters.as_dict(), "pending": max(0, self.store.last_seq - self.counters.cursor),
                "broker": asdict(self.broker_limits)}

    async def status_document(self) -> dict[str, Any]:
        """The status JSON: the integrator's part, this uplink's counters and queue."""
        document: dict[str, Any] = {"state": "online", "gateway": self.gateway_id, "time": utc_now(),
                                    "version": __version__}
        try:
            async with asyncio.timeout(STATUS_CALLBACK_TIMEOUT_S):
                document.update(await self.status_callback())
        except TimeoutError:
            log.warning("uplink %s: status callback did not answer within %g s", self.name, STATUS_CALLBACK_TIMEOUT_S)
            document["status_error"] = f"status callback did not answer within {STATUS_CALLBACK_TIMEOUT_S:g} s"
        except Exception as exc:  # the status must still go out: it is how the HES sees us
            log.warning("uplink %s: status callback failed: %s", self.name, describe(exc))
            document["status_error"] = describe(exc)
        uplinks = dict(document.get("uplinks") or {})
        uplinks[self.name] = self.status()
        document["uplinks"] = uplinks
        return document

    def _offline(self, reason: str) -> dict[str, Any]:
        return {"state": "offline", "gateway": self.gateway_id, "reason": reason, "version": __version__}

    # --- commands -------------------------------------------------------------------------

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        """Subscribe before anything is published: once the HES sees "online", commands
        are heard. No Local: our own responses never come back as requests. Retain
        Handling 2: a retained request is not executed again at every reconnect."""
        options = SubscribeOptions(qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        for topic in (self.topic_commands, self.topic_identified_commands):
            try:
                await cancellable(client.subscribe(topic, options=options, timeout=self.config.publish_timeout_s))
            except aiomqtt.MqttError as exc:
                raise UplinkError(f"cannot subscribe to {topic}: {describe(exc)}") from None

    async def _serve_commands(self, client: aiomqtt.Client) -> None:
        """Answer requests on ``P/G/cmd/NAME``, each in its own task, so that a slow
        command holds neither delivery nor the other commands."""
        router = CommandRouter(
            {
                "ping": self._ping,
                "status": self._status_command,
                "read": self._read,
                "replay": functools.partial(self._replay, client),
                **self.extra_commands,
            },
            timeout_s=COMMAND_TIMEOUT_S,
        )
        busy = asyncio.Semaphore(COMMAND_CONCURRENCY)
        prefix = self.topic_commands.removesuffix("+")
        async with asyncio.TaskGroup() as group:
            async for message in client.messages:
                topic = message.topic.value
                if message.retain or not topic.startswith(prefix):
                    continue
                await busy.acquire()
                group.create_task(self._answer(client, router, topic.removeprefix(prefix), message, busy))

    async def _answer(self, client: aiomqtt.Client, router: CommandRouter, name: str,
                      message: aiomqtt.Message, busy: asyncio.Semaphore) -> None:
        try:
            self.counters.commands += 1
            command, _, identity = name.partition("/")  # cmd/NAME or cmd/NAME/IDENTITY
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
            ok, response = await router.answer(command, payload, identity=identity or None)
            if not ok:
                self.counters.command_errors += 1
            request = message.properties
            topic = getattr(request, "ResponseTopic", None) or f"{self.topic_responses}/{command}"
            if "+" in topic or "#" in topic:
                log.debug("uplink %s: response topic %r has wildcards; no answer", self.name, topic)
                return
            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = "application/json"
            correlation = getattr(request, "CorrelationData", None)
            if correlation is not None:
                properties.CorrelationData = correlation
            log.debug("uplink %s: command %s answered ok=%s", self.name, command, ok)
            await client.publish(topic, response, qos=1, properties=properties, timeout=self.config.publish_timeout_s)
        finally:
            busy.release()

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "time": utc_now(), "version": __version__, "gateway": self.gateway_id}

    async def _status_command(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.status_document()

    async def _read(self, args: dict[str, Any]) -> dict[str, Any]:
        meter = str_argument(args, "meter")
        if self.on_demand_read is None:
            raise CommandError("on-demand reads are not available on this gateway")
        try:
            readings = await self.on_demand_read(meter)
        except LookupError as exc:  # the integrator's "no such meter"
            raise CommandError(str(exc.args[0]) if exc.args else f"no meter is named {meter!r}") from None
        return {"meter": meter, "readings": [reading_json(reading) for reading in readings]}

    async def _replay(self, client: aiomqtt.Client, args: dict[str, Any]) -> dict[str, Any]:
        """Publish the stored records ``from_seq..to_seq`` again, signed, to the usual
        topics; the cursor does not move."""
        from_seq = int_argument(args, "from_seq", minimum=1)
        last_seq = self.store.last_seq
        if from_seq > last_seq:
            raise CommandError(f"nothing stored from seq {from_seq}: the last seq is {last_seq}")
        to_seq = min(last_seq, int_argument(args, "to_seq", default=last_seq, minimum=from_seq))
        first = await self.store.read_after(from_seq - 1, 1)
        if not first:
            raise CommandError(f"seq {from_seq} is no longer stored (retention); nothing is stored now")
        if first[0].seq > from_seq:
            # Retention drops the oldest records first, so the first one after from_seq
            # is the oldest still stored.
            raise CommandError(
                f"seq {from_seq} is no longer stored (retention); the oldest stored seq is {first[0].seq}"
            )
        records = messages = 0
        after = from_seq - 1
        while after < to_seq:
            batch = [s for s in await self.store.read_after(after, self.config.batch_size) if s.seq <= to_seq]
            if not batch:
                break
            outgoing = await self._build(batch)
            async with asyncio.TaskGroup() as group:
                for message in outgoing:
                    group.create_task(client.publish(message.topic, message.payload, qos=1,
                                                     properties=self._data_properties,
                                                     timeout=self.config.publish_timeout_s))
            records += len(batch)
            messages += len(outgoing)
            self.counters.records_replayed += len(batch)
            after = batch[-1].seq
        return {"from_seq": from_seq, "to_seq": to_seq, "records": records, "messages": messages}


def jws_json(jws: dict[str, str]) -> bytes:
    """A flattened JWS as compact JSON. Its members are base64url text, which JSON never
    escapes, so they are joined as they are: ``json.dumps`` would scan every byte of a
    payload hundreds of kilobytes long only to find nothing to escape."""
    return b'{"protected":"%s","payload":"%s","signature":"%s"}' % (
        jws["protected"].encode("ascii"), jws["payload"].encode("ascii"), jws["signature"].encode("ascii"))


def reading_json(reading: Reading) -> dict[str, Any]:
    """A reading of an on-demand read as record JSON. It has no seq here (``null``): the
    same reading reaches the HES through the store, with its seq, like any other."""
    return {**record_json(StoredRecord(seq=0, record=reading, stored_at=reading.captured_at)), "seq": None}


def _succeeded(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _expected(exc: BaseException) -> bool:
    """A failure of the network, the broker, the store or the configuration (as opposed
    to a defect in the code)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_expected(inner) for inner in exc.exceptions)
    return isinstance(exc, (aiomqtt.MqttError, OSError, TimeoutError, GatewayError))
