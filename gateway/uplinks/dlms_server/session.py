"""One HES connection: wrapper messages in, associations, answers out.

A TCP connection may carry several associations (one per pair of client SAP and server SAP,
Green Book 7.3.3: the wPorts of each message say which); each has its own
:class:`~gateway.codecs.dlms.server.ServerAssociation`, hence its own ciphering state, and
nothing is shared between connections but the invocation counters (which belong to the keys).

Bounds: a message longer than the server's max PDU (plus ciphering overhead) is refused by
the wrapper parser, which then resynchronises; blocks are the client's PDU size at most, and a
streamed profile holds one block and one store page; :data:`MAX_ASSOCIATIONS` associations
per connection; a connection silent for ``idle_timeout_s`` (or not reading our answers for as
long) is closed.

Refusals: a request that cannot be decoded or fails a security check is answered with an
EXCEPTION-Response (the codec's ``refuse``) and the association goes on; on the management
association (the secured one) the security failures, refused AARQs and failed HLS are stored
as ``security.refused`` events (rate-limited, see :mod:`~gateway.uplinks.dlms_server.events`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.acse import AARE
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.axdr import decode_data
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError, DLMSSecurityError
from gateway.codecs.dlms.server import BlockWanted, Reply, ServerAssociation, ServerState
from gateway.codecs.dlms.services import (
    ActionRequestNormal,
    ActionRequestWithList,
    ActionResponseItem,
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    GetDataResult,
    GetRequestNormal,
    GetRequestWithList,
    MethodDescriptor,
    SelectiveAccess,
    SetRequestNormal,
    SetRequestWithList,
)
from gateway.codecs.dlms.wrapper import WrapperMessage, WrapperParser
from gateway.codecs.dlms.xdlms import ExceptionResponse
from gateway.errors import StoreError
from gateway.dlms_counters import SERVER_NEED
from gateway.uplinks.dlms_server import objects
from gateway.uplinks.dlms_server.objects import (
    ACTION_UNDEFINED,
    CLASS_INCONSISTENT,
    OBJECT_UNDEFINED,
    READ,
    READ_WRITE_DENIED,
    TEMPORARY_FAILURE,
    WRITE,
    CosemObject,
    LogicalDevice,
    ProfileObject,
    Request,
    Role,
)
from gateway.uplinks.dlms_server.profiles import BufferStream, open_stream, selection

if TYPE_CHECKING:
    from gateway.uplinks.dlms_server.server import DlmsServer

log = logging.getLogger(__name__)

READ_SIZE = 65536
#: Answers a slow reader may leave unsent before the session waits for it.
WRITE_BUFFER = 2 * READ_SIZE
MAX_ASSOCIATIONS = 16
#: The most a profile read inside a GET-with-list may encode (it is not streamed there).
LIST_BUFFER_LIMIT = 65536
#: A ciphered APDU may exceed the negotiated PDU size by its envelope (and some clients
#: forget to count it): the wrapper accepts this much more.
CIPHERING_SLACK = 64
_OTHER_REASON = DataAccessResult(250)
_AARQ_TAG = 0x60


class Association:
    """One association: a client SAP with a logical device (server SAP)."""

    def __init__(self, server: DlmsServer, role: Role, peer: str) -> None:
        self.server = server
        self.role = role
        self.peer = peer
        self.secured = role is Role.MANAGEMENT
        self.codec = ServerAssociation(server.settings_of(role), server.counters)
        self.stream: BufferStream | None = None

    @property
    def idle(self) -> bool:
        return self.codec.state is ServerState.IDLE

    async def handle(self, apdu: bytes, device: LogicalDevice) -> bytes:
        """The answer to one APDU."""
        if self.secured:
            await self.server.counters.reserve(self.server.system_title, SERVER_NEED)
        before = self.codec.state
        try:
            event = self.codec.receive_apdu(apdu)
        except DLMSError as error:
            await self.close()
            await self._refused(error, apdu)
            return self.codec.refuse(error)
        if isinstance(event, Reply):
            await self._replied(before, apdu, event.apdu)
            return event.apdu
        if isinstance(event, BlockWanted):
            return await self._next_block()
        await self.close()
        self.server.stats.requests += 1
        request = event.request
        try:
            return await self._serve(request, Request(self.role, device, self.codec))
        except StoreError as exc:
            log.warning("DLMS server: the store failed while answering %s: %s", type(request).__name__, exc)
            return self._failed(request)

    async def close(self) -> None:
        """Abandon a streamed answer (a new request, a refusal, the end of the connection)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.close()

    # --- refusals --------------------------------------------------------------------------

    async def _refused(self, error: DLMSError, apdu: bytes) -> None:
        stats = self.server.stats
        if isinstance(error, DLMSSecurityError):
            stats.security_refused += 1
            if self.secured:
                await self.server.security_event(error.field or "security", f"refused: {error.reason}", self.peer)
        elif isinstance(error, DLMSFrameError):
            stats.malformed += 1
        else:
            stats.refused += 1
        log.debug("DLMS server: %s refused %s: %s", self.peer, apdu[:1].hex(), error)

    async def _replied(self, before: ServerState, apdu: bytes, reply: bytes) -> None:
        """Notice associations made, refused and lost in the codec's own answers."""
        after = self.codec.state
        if after is ServerState.IDLE:
            await self.close()
        if apdu[:1] == bytes((_AARQ_TAG,)):
            answer = decode_apdu(reply)
            if isinstance(answer, AARE) and answer.accepted:
                self.server.stats.associations += after is ServerState.READY
                return
            self.server.stats.associations_refused += 1
            if self.secured:
                reason = answer.description if isinstance(answer, AARE) else "AARQ refused"
                await self.server.security_event("aarq", f"association refused: {reason}", self.peer)
        elif before is ServerState.AWAITING_HLS:
            if after is ServerState.READY:
                self.server.stats.associations += 1
            elif self.secured:
                self.server.stats.associations_refused += 1
                await self.server.security_event("hls", "HLS-GMAC pass 3 failed: the client does not hold the keys",
                                                 self.peer)

    # --- services ---------------------------------------------------------------------------

    async def _serve(self, request, context: Request) -> bytes:
        codec = self.codec
        if isinstance(request, GetRequestNormal):
            found = resolve(context, request.attribute, READ)
            if isinstance(found, ProfileObject) and request.attribute.attribute == 2:
                return await self._stream(found, request.access)
            return codec.answer_get(await _read(found, request.attribute, request.access, context))
        if isinstance(request, GetRequestWithList):
            return codec.answer_get_list([await self._get_in_list(item.attribute, item.access, context)
                                          for item in request.attributes])
        if self.secured:
            await self.server.counters.save()  # a replay must not repeat a change after a crash
        if isinstance(request, SetRequestNormal):
            return codec.answer_set(await self._write(context, request.attribute, request.value))
        if isinstance(request, SetRequestWithList):
            return codec.answer_set_list([await self._write(context, item.attribute, value)
                                          for item, value in zip(request.attributes, request.values, strict=True)])
        if isinstance(request, ActionRequestNormal):
            return codec.answer_action(*await self._act(context, request.method, request.parameters))
        assert isinstance(request, ActionRequestWithList)
        return codec.answer_action_list([ActionResponseItem(*await self._act(context, method, parameters))
                                         for method, parameters in zip(request.methods, request.parameters,
                                                                       strict=True)])

    async def _write(self, context: Request, attribute: AttributeDescriptor, value) -> DataAccessResult:
        """A SET: carried out on the meter itself on a meter's logical device (see
        :mod:`~gateway.uplinks.dlms_server.relay`), else by the object here."""
        relayed = await self.server.pass_through(context, attribute, value)
        return await _write(context, attribute, value) if relayed is None else relayed

    async def _act(self, context: Request, method: MethodDescriptor, parameters) -> tuple[ActionResult, object]:
        relayed = await self.server.pass_through(context, method, parameters)
        return await _act(context, method, parameters) if relayed is None else relayed

    def _failed(self, request) -> bytes:
        codec = self.codec
        if isinstance(request, GetRequestNormal):
            return codec.answer_get(TEMPORARY_FAILURE)
        if isinstance(request, GetRequestWithList):
            return codec.answer_get_list([TEMPORARY_FAILURE] * len(request.attributes))
        if isinstance(request, SetRequestNormal):
            return codec.answer_set(TEMPORARY_FAILURE)
        if isinstance(request, SetRequestWithList):
            return codec.answer_set_list([TEMPORARY_FAILURE] * len(request.attributes))
        if isinstance(request, ActionRequestNormal):
            return codec.answer_action(ActionResult(2))
        return codec.answer_action_list([ActionResponseItem(ActionResult(2))] * len(request.methods))

    async def _stream(self, profile: ProfileObject, access: SelectiveAccess | None) -> bytes:
        """Answer a profile buffer GET: its first block now, the rest as the client asks."""
        stream = await _open(profile, access, self.server.store)
        if isinstance(stream, DataAccessResult):
            return self.codec.answer_get(stream)
        result = await stream.chunk(self._room())
        if isinstance(result, DataAccessResult):
            return self.codec.answer_get(result)
        chunk, last = result
        reply = self.codec.answer_get_block(chunk, last)
        if last:
            return reply
        if self.codec.can_stream:
            self.stream = stream
        else:
            await stream.close()
        return reply

    async def _next_block(self) -> bytes:
        stream = self.stream
        if stream is None:
            return self.codec.next_get_block(DataAccessResult(15), True)  # long-get-aborted
        result = await stream.chunk(self._room())
        if isinstance(result, DataAccessResult):
            self.stream = None
            return self.codec.next_get_block(result, True)
        chunk, last = result
        if last:
            self.stream = None
        return self.codec.next_get_block(chunk, last)

    def _room(self) -> int:
        return min(self.codec.block_room, READ_SIZE)

    async def _get_in_list(self, attribute: AttributeDescriptor, access: SelectiveAccess | None,
                           context: Request) -> GetDataResult:
        found = resolve(context, attribute, READ)
        if not (isinstance(found, ProfileObject) and attribute.attribute == 2):
            return await _read(found, attribute, access, context)
        stream = await _open(found, access, self.server.store)
        if isinstance(stream, DataAccessResult):
            return stream
        encoded = bytearray()
        while True:
            result = await stream.chunk(LIST_BUFFER_LIMIT)
            if isinstance(result, DataAccessResult):
                return result
            encoded += result[0]
            if result[1]:
                return decode_data(bytes(encoded))
            if len(encoded) >= LIST_BUFFER_LIMIT:
                await stream.close()
                return _OTHER_REASON  # too long for a list: read it on its own, in blocks


async def _open(profile: ProfileObject, access: SelectiveAccess | None, store) -> BufferStream | DataAccessResult:
    source = profile.source()
    chosen = selection(access, source.columns)
    if isinstance(chosen, DataAccessResult):
        return chosen
    return await open_stream(source, store, chosen)


def resolve(context: Request, target: AttributeDescriptor | MethodDescriptor,
            need: int) -> CosemObject | DataAccessResult:
    """The object an attribute or method descriptor names, or why the client cannot have it
    (see :mod:`~gateway.uplinks.dlms_server.objects` for the codes)."""
    found = context.device.objects.get(target.instance)
    if found is None:
        return OBJECT_UNDEFINED
    if found.class_id != target.class_id:
        return CLASS_INCONSISTENT
    if context.role is Role.PUBLIC and not found.public:
        return READ_WRITE_DENIED
    if isinstance(target, MethodDescriptor):
        if target.method not in found.methods:
            return OBJECT_UNDEFINED
        return found if found.method_access(context.role, target.method) else READ_WRITE_DENIED
    if not found.has_attribute(target.attribute):
        return OBJECT_UNDEFINED
    return found if found.access(context.role, target.attribute) & need else READ_WRITE_DENIED


async def _read(found: CosemObject | DataAccessResult, attribute: AttributeDescriptor,
                access: SelectiveAccess | None, context: Request) -> GetDataResult:
    if isinstance(found, DataAccessResult):
        return found
    if access is not None:
        return DataAccessResult(13)  # selective access where the attribute has none
    return await found.get(attribute.attribute, context)


async def _write(context: Request, attribute: AttributeDescriptor, value) -> DataAccessResult:
    found = resolve(context, attribute, WRITE)
    if isinstance(found, DataAccessResult):
        return found
    return await found.set(attribute.attribute, value, context)


async def _act(context: Request, method: MethodDescriptor, parameters) -> tuple[ActionResult, object]:
    found = resolve(context, method, objects.METHOD_ACCESS)
    if isinstance(found, DataAccessResult):
        return (ACTION_UNDEFINED if found == OBJECT_UNDEFINED else ActionResult(found.code)), None
    return await found.action(method.method, parameters, context)


class Session:
    """One TCP connection of an HES (see the module docstring)."""

    def __init__(self, server: DlmsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.parser = WrapperParser(server.config.max_pdu_size + CIPHERING_SLACK)
        self.associations: dict[tuple[int, int], Association] = {}

    def stop(self) -> None:
        """Drop the connection now (shutdown): :meth:`serve` then ends."""
        self.writer.transport.abort()

    async def serve(self) -> None:
        idle = self.server.config.idle_timeout_s
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        data = await self.reader.read(READ_SIZE)
                except TimeoutError:
                    log.debug("DLMS server: %s idle for %g s, closing", self.peer, idle)
                    self.server.stats.idle_closed += 1
                    return
                if not data:
                    return
                self.parser.receive_data(data)
                answers = [answer for message in self._messages() if (answer := await self._answer(message))]
                if answers:
                    self.writer.write(b"".join(answers))
                    if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER:
                        async with asyncio.timeout(idle):  # a client that does not read
                            await self.writer.drain()
        except (ConnectionError, TimeoutError) as exc:
            log.debug("DLMS server: %s: %s", self.peer, exc)
        finally:
            for association in self.associations.values():
                await association.close()
            self.writer.close()

    def _messages(self):
        while True:
            try:
                message = self.parser.next_message()
            except DLMSFrameError as exc:
                self.server.stats.malformed += 1
                log.debug("DLMS server: %s: broken wrapper header: %s", self.peer, exc)
                continue
            if message is None:
                return
            yield message

    async def _answer(self, message: WrapperMessage) -> bytes | None:
        device = self.server.logical_device(message.destination)
        if device is None:
            self.server.stats.ignored += 1  # no such logical device: the wrapper says discard
            return None
        key = (message.source, message.destination)
        association = self.associations.get(key)
        if association is None:
            role = self.server.role_of(message.source)
            if role is None or not self._room_for_one():
                reply = _refusal(message.apdu)
                return WrapperMessage(message.destination, message.source, reply).to_bytes() if reply else None
            association = self.associations[key] = Association(self.server, role, self.peer)
        reply = await association.handle(message.apdu, device)
        return WrapperMessage(message.destination, message.source, reply).to_bytes()

    def _room_for_one(self) -> bool:
        if len(self.associations) < MAX_ASSOCIATIONS:
            return True
        for key, association in list(self.associations.items()):
            if association.idle and association.stream is None:
                del self.associations[key]
                return True
        return False


def _refusal(apdu: bytes) -> bytes | None:
    """The answer to a client that has no association here (an unknown client SAP, or too
    many associations on the connection): an AARQ is rejected, anything else ignored."""
    try:
        aarq = decode_apdu(apdu)
    except DLMSError:
        return None
    if not isinstance(aarq, acse.AARQ):
        return ExceptionResponse(1, 1).to_bytes()  # service-not-allowed, operation-not-possible
    return AARE(1, acse.ACSE_SERVICE_USER, 1, aarq.application_context_name).to_bytes()  # no-reason-given
