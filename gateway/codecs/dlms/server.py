"""A sans-IO DLMS/COSEM server association: the mirror of the client (Green Book 9.3, 9.4).

The gateway serves DLMS/COSEM to the Head-End System with it. :class:`ServerAssociation`
checks the AARQ (application context, authentication mechanism, LLS password or HLS-GMAC,
ciphering, DLMS version, conformance) and answers with the AARE, runs HLS pass 3/4, deciphers
and enciphers, and handles the block transfers itself; the application only sees whole
GET/SET/ACTION requests and answers them.

:meth:`ServerAssociation.receive_apdu` takes one received APDU and returns either
:class:`Reply` (bytes the server answers by itself: AARE, RLRE, HLS pass 4, the next GET
block, a SET/ACTION block acknowledgement, an EXCEPTION-Response to a request out of turn)
or :class:`ServiceRequest` (a GET, SET or ACTION for the application, answered with
:meth:`~ServerAssociation.answer_get`, :meth:`~ServerAssociation.answer_set` ...). Bytes
that cannot be decoded, fail a security check or ask for a service the association did not
negotiate (conformance, Green Book 9.4.6.1) raise the codec's error; answer those with
:meth:`ServerAssociation.refuse`.

A GET answer the application cannot (or will not) hold in memory, a long profile buffer
read from a database, is streamed: :meth:`ServerAssociation.answer_get_block` sends its first
encoded bytes, each GET-next of the client then comes out of ``receive_apdu`` as
:class:`BlockWanted`, answered with :meth:`ServerAssociation.next_get_block` (Green Book
9.3.6.2, GET with datablock: the encoded Data split into blocks of any size).
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.acse import AARE, AARQ, RLRE, RLRQ, AuthenticationValue
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.association import (
    ASSOCIATION_LN_CLASS,
    CURRENT_ASSOCIATION,
    REPLY_TO_HLS_AUTHENTICATION,
    Authentication,
    SecuritySettings,
    check_settings,
)
from gateway.codecs.dlms.axdr import Data, DataType, decode_data, encode_length, octet_string
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError, DLMSSecurityError, DLMSStateError
from gateway.codecs.dlms.security import (
    CipheringContext,
    InvocationCounters,
    MemoryInvocationCounters,
    check_hls_gmac,
    hls_gmac,
)
from gateway.codecs.dlms.services import (
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithPblock,
    ActionResponseItem,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    ActionResult,
    DataAccessResult,
    DataBlock,
    GetDataResult,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
)
from gateway.codecs.dlms.xdlms import (
    CipheredApdu,
    ConfirmedServiceError,
    ExceptionResponse,
    GeneralDedCiphering,
    GeneralGloCiphering,
    InitiateRequest,
    InitiateResponse,
    conformance,
    conformance_names,
)

#: What the server offers by default: LN GET/SET/ACTION with selective access, lists and
#: block transfer (Green Book 9.4.6.1).
SERVER_CONFORMANCE = conformance(
    "attribute0-supported-with-get",
    "block-transfer-with-get-or-read",
    "block-transfer-with-set-or-write",
    "block-transfer-with-action",
    "multiple-references",
    "get",
    "set",
    "selective-access",
    "action",
)
_BLOCK_TRANSFER_WITH_GET = conformance("block-transfer-with-get-or-read")
_BLOCK_TRANSFER_WITH_ACTION = conformance("block-transfer-with-action")
_BLOCK_TRANSFER_WITH_SET = conformance("block-transfer-with-set-or-write")
#: The conformance bits a request needs (Green Book 9.4.6.1): its service, and
#: multiple-references for the -with-list forms (selective access is checked per request). A
#: request for a service the association did not negotiate is refused: the public client's
#: association has no SET or ACTION. (Block transfer is checked with the blocks.)
_NEEDED_CONFORMANCE: dict[type, int] = {
    GetRequestNormal: conformance("get"),
    GetRequestWithList: conformance("get", "multiple-references"),
    SetRequestNormal: conformance("set"),
    SetRequestWithFirstDatablock: conformance("set"),
    SetRequestWithDatablock: conformance("set"),
    SetRequestWithList: conformance("set", "multiple-references"),
    ActionRequestNormal: conformance("action"),
    ActionRequestWithFirstPblock: conformance("action"),
    ActionRequestWithPblock: conformance("action"),
    ActionRequestWithList: conformance("action", "multiple-references"),
}
_SELECTIVE_ACCESS = conformance("selective-access")
MIN_DLMS_VERSION = 6
MIN_PDU_SIZE = 12
MAX_INCOMING_BLOCKS = 16 * 1024 * 1024

# ConfirmedServiceError initiate values and EXCEPTION-Response codes (Green Book 9.5).
_INITIATE_ERROR, _INITIATE = 1, 6
_DLMS_VERSION_TOO_LOW, _INCOMPATIBLE_CONFORMANCE, _PDU_SIZE_TOO_SHORT = 1, 2, 3
_SERVICE_NOT_ALLOWED, _SERVICE_UNKNOWN = 1, 2
_OPERATION_NOT_POSSIBLE, _SERVICE_NOT_SUPPORTED, _OTHER_REASON, _DECIPHERING_ERROR = 1, 2, 3, 5
_OTHER = 250


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the server demands of a client. ``authentication`` is the mechanism required;
    ``ciphered`` requires the LN-with-ciphering context (with ``security`` set, a client may
    choose it anyway)."""

    authentication: Authentication = Authentication.NONE
    password: bytes | None = field(default=None, repr=False)
    security: SecuritySettings | None = None
    ciphered: bool = False
    conformance: int = SERVER_CONFORMANCE
    max_receive_pdu_size: int = 0xFFFF
    challenge_size: int = 16
    #: The longest SET value or ACTION parameters taken in blocks (what one association may
    #: make the server hold).
    max_incoming_bytes: int = MAX_INCOMING_BLOCKS

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``apdu`` back: the server answered by itself."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    """A request for the application (block transfers already reassembled: a long SET or
    ACTION arrives as its normal form). Answer it with the matching ``answer_*`` method."""

    request: Union[GetRequestNormal, GetRequestWithList, SetRequestNormal, SetRequestWithList,
                   ActionRequestNormal, ActionRequestWithList]


@dataclass(frozen=True, slots=True)
class BlockWanted:
    """The client asks for block ``block_number`` of a GET answer the application streams;
    answer with :meth:`ServerAssociation.next_get_block`."""

    block_number: int


ServerEvent = Union[Reply, ServiceRequest, BlockWanted]


class ServerState(enum.Enum):
    IDLE = "idle"
    AWAITING_HLS = "awaiting HLS pass 3"
    READY = "ready"
    SERVING = "serving a request"


@dataclass(frozen=True, slots=True)
class _Encoded:
    """An APDU already encoded (a streamed answer that fitted one response after all)."""

    raw: bytes

    def to_bytes(self) -> bytes:
        return self.raw


@dataclass(slots=True)
class _Stream:
    """A GET answer the application streams: its invoke-id and the blocks sent so far."""

    invoke: object
    sent: int = 1


@dataclass(slots=True)
class _Outgoing:
    """A long answer being sent block by block, and how to build each block."""

    chunks: list[bytes]
    build: object  # (block number, last, chunk) -> APDU
    sent: int = 0


class ServerAssociation:
    """One server-side association (see the module docstring)."""

    def __init__(self, settings: ServerSettings, counters: InvocationCounters | None = None) -> None:
        self.settings = settings
        self.counters: InvocationCounters = counters if counters is not None else MemoryInvocationCounters()
        self.state = ServerState.IDLE
        self.negotiated: InitiateResponse | None = None
        self.client_max_pdu_size = 0xFFFF
        self.client_system_title: bytes | None = None
        self._ciphering: CipheringContext | None = None
        self._ciphered = False
        self._stoc = b""
        self._ctos = b""
        self._request = None  # the ServiceRequest's APDU while SERVING
        self._protection = None  # how the request came: None (plain), or (general, dedicated)
        self._incoming: bytearray | None = None
        self._incoming_first = None
        self._incoming_next = 1
        self._request_last_block: int | None = None  # the request came in blocks, ending with this one
        self._outgoing: _Outgoing | None = None
        self._stream: _Stream | None = None

    # --- receiving -----------------------------------------------------------------------

    def receive_apdu(self, data: bytes) -> ServerEvent:
        apdu = decode_apdu(data)
        if isinstance(apdu, AARQ):
            return Reply(self._on_aarq(apdu))
        if isinstance(apdu, RLRQ):
            return Reply(self._on_rlrq(apdu))
        if self.state is ServerState.IDLE:
            return Reply(ExceptionResponse(_SERVICE_NOT_ALLOWED, _OPERATION_NOT_POSSIBLE).to_bytes())
        self._protection = None
        if isinstance(apdu, (CipheredApdu, GeneralGloCiphering, GeneralDedCiphering)):
            if self._ciphering is None:
                raise DLMSSecurityError("ciphered APDU in an association without ciphering", field="tag")
            self._protection = (not isinstance(apdu, CipheredApdu), apdu.dedicated)
            apdu = decode_apdu(self._ciphering.decipher(apdu))
        elif self._ciphered:
            raise DLMSSecurityError(f"plaintext {type(apdu).__name__} in a ciphered association", field="tag")
        return self._on_request(apdu)

    def refuse(self, error: DLMSError) -> bytes:
        """The EXCEPTION-Response for a request that raised ``error`` (plaintext: the peer
        may not be able to decipher anything)."""
        if isinstance(error, DLMSSecurityError):
            service = _DECIPHERING_ERROR
        elif isinstance(error, DLMSStateError):
            service = _OPERATION_NOT_POSSIBLE
        else:
            service = _OTHER_REASON
        self._request = None
        if self.state is ServerState.SERVING:
            self.state = ServerState.READY
        return ExceptionResponse(_SERVICE_NOT_ALLOWED, service).to_bytes()

    # --- association ---------------------------------------------------------------------

    def _on_aarq(self, aarq: AARQ) -> bytes:
        self._reset()
        s = self.settings
        context = aarq.context_id
        allowed = {acse.LOGICAL_NAME_WITH_CIPHERING} if s.ciphered else (
            {acse.LOGICAL_NAME, acse.LOGICAL_NAME_WITH_CIPHERING} if s.security else {acse.LOGICAL_NAME})
        if context not in allowed:
            return self._reject(aarq, 2)  # application-context-name-not-supported
        self._ciphered = context == acse.LOGICAL_NAME_WITH_CIPHERING
        self.client_system_title = aarq.calling_ap_title
        if s.security is not None:
            sec = s.security
            self._ciphering = CipheringContext(sec.keys, sec.system_title, self.counters,
                                               security_control=sec.security_control)
            self._ciphering.peer_title = aarq.calling_ap_title
        diagnostic = self._check_authentication(aarq)
        if diagnostic:
            return self._reject(aarq, diagnostic)
        initiate = aarq.user_information
        if isinstance(initiate, CipheredApdu):
            if self._ciphering is None or self.client_system_title is None:
                return self._reject(aarq, 1)
            initiate = decode_apdu(self._ciphering.decipher(initiate))
        elif self._ciphered:
            raise DLMSSecurityError("plaintext InitiateRequest in a ciphered association", field="user-information")
        if not isinstance(initiate, InitiateRequest):
            return self._reject(aarq, 1)
        error = self._check_initiate(initiate)
        if error:
            return self._reject(aarq, 1, ConfirmedServiceError(_INITIATE_ERROR, _INITIATE, error))
        if self._ciphering is not None:
            self._ciphering.dedicated_key = initiate.dedicated_key
        self.client_max_pdu_size = initiate.client_max_receive_pdu_size
        self.negotiated = InitiateResponse(initiate.proposed_conformance & s.conformance, s.max_receive_pdu_size)
        user = self.negotiated
        if self._ciphered:
            user = self._ciphering.cipher(self.negotiated.to_bytes(), general=False)
        hls = s.authentication is Authentication.HIGH_GMAC
        if hls:
            self._stoc = os.urandom(s.challenge_size)
            self._ctos = aarq.calling_authentication_value.value
        self.state = ServerState.AWAITING_HLS if hls else ServerState.READY
        return AARE(
            acse.ACCEPTED,
            acse.ACSE_SERVICE_USER,
            acse.AUTHENTICATION_REQUIRED if hls else 0,
            aarq.application_context_name,
            user,
            responding_ap_title=s.security.system_title if s.security else None,
            mechanism_name=aarq.mechanism_name if s.authentication is not Authentication.NONE else None,
            responding_authentication_value=AuthenticationValue(self._stoc) if hls else None,
            responder_acse_requirements=acse.ACSE_REQUIREMENTS_AUTHENTICATION if hls else None,
        ).to_bytes()

    def _check_authentication(self, aarq: AARQ) -> int:
        """0, or the acse-service-user diagnostic that refuses the AARQ."""
        s = self.settings
        mechanism = aarq.mechanism_id or acse.MECHANISM_NONE
        if mechanism != s.authentication:
            return 12 if mechanism == acse.MECHANISM_NONE else 11  # required / not recognised
        value = aarq.calling_authentication_value
        if s.authentication is Authentication.LOW:
            if value is None or not hmac.compare_digest(value.value, s.password):
                return 13  # authentication-failure
        if s.authentication is Authentication.HIGH_GMAC:
            if value is None or not 8 <= len(value.value) <= 64 or self.client_system_title is None:
                return 13
        return 0

    def _check_initiate(self, initiate: InitiateRequest) -> int:
        if initiate.proposed_dlms_version_number < MIN_DLMS_VERSION:
            return _DLMS_VERSION_TOO_LOW
        if initiate.client_max_receive_pdu_size and initiate.client_max_receive_pdu_size < MIN_PDU_SIZE:
            return _PDU_SIZE_TOO_SHORT
        if not initiate.proposed_conformance & self.settings.conformance:
            return _INCOMPATIBLE_CONFORMANCE
        return 0

    def _reject(self, aarq: AARQ, diagnostic: int, error: ConfirmedServiceError | None = None) -> bytes:
        self._reset()
        return AARE(1, acse.ACSE_SERVICE_USER, diagnostic, aarq.application_context_name, error).to_bytes()

    def _hls_pass_3(self, request: ActionRequestNormal) -> bytes:
        reply = request.parameters
        try:
            if reply is None or reply.type is not DataType.OCTET_STRING:
                raise DLMSSecurityError("reply_to_HLS_authentication without f(StoC)", field="parameters")
            check_hls_gmac(reply.value, self._stoc, keys=self.settings.security.keys,
                           system_title=self.client_system_title)
        except DLMSSecurityError:
            self._reset()
            return self._protect(ActionResponseNormal(ActionResult(_OTHER), None, request.invoke))
        sec = self.settings.security
        f_ctos = hls_gmac(self._ctos, keys=sec.keys, system_title=sec.system_title,
                          invocation_counter=self.counters.next_outgoing(sec.system_title))
        self.state = ServerState.READY
        return self._protect(ActionResponseNormal(ActionResult(0), octet_string(f_ctos), request.invoke))

    def _on_rlrq(self, rlrq: RLRQ) -> bytes:
        user = None
        if isinstance(rlrq.user_information, CipheredApdu) and self._ciphering is not None:
            decode_apdu(self._ciphering.decipher(rlrq.user_information))
            user = self._ciphering.cipher(self.negotiated.to_bytes(), general=False) if self.negotiated else None
        self._reset()
        return RLRE(0, user).to_bytes()

    def _reset(self) -> None:
        self.state = ServerState.IDLE
        self.negotiated = None
        self._request = None
        self._incoming = None
        self._outgoing = None
        self._stream = None

    # --- requests ------------------------------------------------------------------------

    def _on_request(self, apdu) -> ServerEvent:
        if self.state is ServerState.AWAITING_HLS:
            if isinstance(apdu, ActionRequestNormal) and (apdu.method.class_id, apdu.method.instance,
                                                          apdu.method.method) == (
                    ASSOCIATION_LN_CLASS, CURRENT_ASSOCIATION, REPLY_TO_HLS_AUTHENTICATION):
                return Reply(self._hls_pass_3(apdu))
            return Reply(ExceptionResponse(_SERVICE_NOT_ALLOWED, _OPERATION_NOT_POSSIBLE).to_bytes())
        if isinstance(apdu, GetRequestNext) and self._stream is not None:
            if apdu.block_number != self._stream.sent:
                self._stream = None
                raise DLMSStateError(f"block {apdu.block_number + 1} asked for out of turn", field="block-number")
            return BlockWanted(apdu.block_number + 1)
        if isinstance(apdu, (GetRequestNext, ActionRequestNextPblock)):
            return Reply(self._next_outgoing(apdu))
        if self.state is not ServerState.READY:
            raise DLMSStateError(f"{type(apdu).__name__} while a request is being served", field="tag")
        self._check_negotiated(apdu)
        if isinstance(apdu, (SetRequestWithFirstDatablock, SetRequestWithDatablock, ActionRequestWithFirstPblock,
                             ActionRequestWithPblock)):
            return self._incoming_block(apdu)
        if isinstance(apdu, (GetRequestNormal, GetRequestWithList, SetRequestNormal, SetRequestWithList,
                             ActionRequestNormal, ActionRequestWithList)):
            return self._serve(apdu)
        return Reply(ExceptionResponse(_SERVICE_UNKNOWN, _SERVICE_NOT_SUPPORTED).to_bytes())

    def _check_negotiated(self, apdu) -> None:
        """Refuse a request whose service (or selective access) was not negotiated."""
        needed = _NEEDED_CONFORMANCE.get(type(apdu), 0)
        if any(getattr(item, "access", None) is not None for item in getattr(apdu, "attributes", (apdu,))):
            needed |= _SELECTIVE_ACCESS
        missing = needed & ~self.negotiated.negotiated_conformance
        if missing:
            raise DLMSStateError(f"{type(apdu).__name__} needs {', '.join(conformance_names(missing))}, which this "
                                 "association did not negotiate", field="conformance")

    def _serve(self, request, last_block: int | None = None) -> ServiceRequest:
        self._stream = None  # a new request abandons a streamed answer (and any long one)
        self._outgoing = None
        self._request = request
        self._request_last_block = last_block
        self.state = ServerState.SERVING
        return ServiceRequest(request)

    def _incoming_block(self, apdu) -> ServerEvent:
        block = apdu.block
        first = isinstance(apdu, (SetRequestWithFirstDatablock, ActionRequestWithFirstPblock))
        needed = _BLOCK_TRANSFER_WITH_SET if isinstance(apdu, (SetRequestWithFirstDatablock, SetRequestWithDatablock)) \
            else _BLOCK_TRANSFER_WITH_ACTION
        if not self.negotiated.negotiated_conformance & needed:
            raise DLMSStateError(f"{type(apdu).__name__} without block transfer negotiated", field="tag")
        if first:
            self._incoming, self._incoming_first, self._incoming_next = bytearray(), apdu, 1
        if self._incoming is None or block.block_number != self._incoming_next or \
                type(apdu) not in _FOLLOWING[type(self._incoming_first)]:
            raise DLMSStateError(f"block {block.block_number} out of order", field="block-number")
        if len(self._incoming) + len(block.raw_data) > self.settings.max_incoming_bytes:
            self._incoming = self._incoming_first = None
            raise DLMSFrameError("block transfer too long", field="raw-data")
        self._incoming += block.raw_data
        self._incoming_next += 1
        if not block.last_block:
            ack = SetResponseDatablock if isinstance(self._incoming_first, SetRequestWithFirstDatablock) else \
                ActionResponseNextPblock
            return Reply(self._protect(ack(block.block_number, apdu.invoke)))
        start, raw = self._incoming_first, bytes(self._incoming)
        self._incoming = self._incoming_first = None
        if isinstance(start, SetRequestWithFirstDatablock):
            whole = SetRequestNormal(start.attribute, decode_data(raw), start.access, apdu.invoke)
        else:
            whole = ActionRequestNormal(start.method, decode_data(raw), apdu.invoke)
        return self._serve(whole, block.block_number)

    # --- answers -------------------------------------------------------------------------

    def answer_get(self, result: GetDataResult) -> bytes:
        """Answer a GetRequestNormal: the value, or a Data-Access-Result. A value longer than
        the client's PDU goes in blocks (the client asks for them with GET-next)."""
        request = self._serving(GetRequestNormal)
        return self._long_answer(
            GetResponseNormal(result, request.invoke),
            result.to_bytes() if isinstance(result, Data) else None,
            lambda n, last, chunk: GetResponseWithDatablock(last, n, chunk, request.invoke),
            GetResponseNormal(DataAccessResult(_OTHER), request.invoke),
            _BLOCK_TRANSFER_WITH_GET,
        )

    @property
    def can_stream(self) -> bool:
        """Whether GET answers may come in blocks (block-transfer-with-get negotiated)."""
        return bool(self.negotiated and self.negotiated.negotiated_conformance & _BLOCK_TRANSFER_WITH_GET)

    @property
    def block_room(self) -> int:
        """How many bytes of an encoded answer one GET block carries, within the client's
        max receive PDU size and the ciphering overhead of the request being answered."""
        overhead = self._ciphering.overhead if self._protection else 0
        empty = GetResponseWithDatablock(False, 1, b"").to_bytes()
        return max(1, self.client_max_pdu_size - len(empty) - 4 - overhead)

    def answer_get_block(self, chunk: bytes, last: bool) -> bytes:
        """Answer the GetRequestNormal being served with the first ``chunk`` of the encoded
        value (at most :attr:`block_room` bytes); unless ``last``, the client asks for the
        rest and :class:`BlockWanted` events follow. A whole value that fits one response
        goes as a normal response."""
        request = self._serving(GetRequestNormal)
        self._done()
        if last:
            whole = _Encoded(bytes((GetResponseNormal.TAG, GetResponseNormal.CHOICE, request.invoke.value, 0)) + chunk)
            if self._fits(whole.to_bytes()):
                return self._protect(whole)
        if not self.can_stream:
            return self._protect(GetResponseNormal(DataAccessResult(_OTHER), request.invoke))
        if len(chunk) > self.block_room:
            raise ValueError(f"a block of {len(chunk)} bytes exceeds the room of {self.block_room}")
        self._stream = None if last else _Stream(request.invoke)
        return self._protect(GetResponseWithDatablock(last, 1, chunk, request.invoke))

    def next_get_block(self, chunk: bytes | DataAccessResult, last: bool) -> bytes:
        """Answer :class:`BlockWanted` with the next ``chunk``, or with a Data-Access-Result
        (e.g. long-get-aborted) that ends the transfer."""
        stream = self._stream
        if stream is None:
            raise DLMSStateError("no streamed GET answer is being sent", field="state")
        if isinstance(chunk, bytes) and len(chunk) > self.block_room:
            raise ValueError(f"a block of {len(chunk)} bytes exceeds the room of {self.block_room}")
        stream.sent += 1
        ended = last or isinstance(chunk, DataAccessResult)
        if ended:
            self._stream = None
        return self._protect(GetResponseWithDatablock(ended, stream.sent, chunk, stream.invoke))

    def answer_get_list(self, results: Sequence[GetDataResult]) -> bytes:
        """Answer a GetRequestWithList, one result per attribute."""
        request = self._serving(GetRequestWithList)
        if len(results) != len(request.attributes):
            raise ValueError(f"{len(results)} results for {len(request.attributes)} attributes")
        raw = encode_length(len(results)) + b"".join(
            bytes((1, r.code)) if isinstance(r, DataAccessResult) else b"\x00" + r.to_bytes() for r in results)
        return self._long_answer(
            GetResponseWithList(tuple(results), request.invoke),
            raw,
            lambda n, last, chunk: GetResponseWithDatablock(last, n, chunk, request.invoke),
            GetResponseWithList(tuple(DataAccessResult(_OTHER) for _ in results), request.invoke),
            _BLOCK_TRANSFER_WITH_GET,
        )

    def answer_set(self, result: DataAccessResult) -> bytes:
        """Answer a SetRequestNormal (also one that came in blocks)."""
        request = self._serving(SetRequestNormal)
        last_block = self._request_last_block
        self._done()
        if last_block is not None:
            return self._protect(SetResponseLastDatablock(result, last_block, request.invoke))
        return self._protect(SetResponseNormal(result, request.invoke))

    def answer_set_list(self, results: Sequence[DataAccessResult]) -> bytes:
        """Answer a SetRequestWithList, one result per attribute."""
        request = self._serving(SetRequestWithList)
        self._done()
        return self._protect(SetResponseWithList(tuple(results), request.invoke))

    def answer_action(self, result: ActionResult, return_data: GetDataResult | None = None) -> bytes:
        """Answer an ActionRequestNormal; return data longer than the client's PDU goes in
        blocks (the client asks for them with ACTION next-pblock)."""
        request = self._serving(ActionRequestNormal)
        return self._long_answer(
            ActionResponseNormal(result, return_data, request.invoke),
            return_data.to_bytes() if isinstance(return_data, Data) else None,
            lambda n, last, chunk: ActionResponseWithPblock(DataBlock(last, n, chunk), request.invoke),
            ActionResponseNormal(result, DataAccessResult(_OTHER), request.invoke),
            _BLOCK_TRANSFER_WITH_ACTION,
        )

    def answer_action_list(self, responses: Sequence[ActionResponseItem]) -> bytes:
        """Answer an ActionRequestWithList, one result (and return data) per method."""
        request = self._serving(ActionRequestWithList)
        self._done()
        return self._protect(ActionResponseWithList(tuple(responses), request.invoke))

    def _serving(self, kind):
        if self.state is not ServerState.SERVING or not isinstance(self._request, kind):
            raise DLMSStateError(f"no {kind.__name__} is being served", field="state")
        return self._request

    def _done(self) -> None:
        self._request = None
        self.state = ServerState.READY

    def _fits(self, apdu: bytes) -> bool:
        overhead = self._ciphering.overhead if self._protection else 0
        return len(apdu) + overhead <= self.client_max_pdu_size

    def _long_answer(self, whole, raw: bytes | None, build, too_long, needed: int) -> bytes:
        """``whole`` if it fits the client's PDU; else ``raw`` in blocks built by ``build``
        when block transfer was negotiated; else ``too_long`` (the reason it cannot be had)."""
        self._done()
        if self._fits(whole.to_bytes()):
            return self._protect(whole)
        if raw is None or not self.negotiated.negotiated_conformance & needed:
            return self._protect(too_long)
        overhead = self._ciphering.overhead if self._protection else 0
        room = max(1, self.client_max_pdu_size - len(build(1, False, b"").to_bytes()) - 4 - overhead)
        self._outgoing = _Outgoing([raw[i : i + room] for i in range(0, len(raw), room)], build)
        return self._send_block()

    def _send_block(self) -> bytes:
        out = self._outgoing
        number = out.sent + 1
        last = number == len(out.chunks)
        apdu = out.build(number, last, out.chunks[out.sent])
        out.sent = number
        if last:
            self._outgoing = None
        return self._protect(apdu)

    def _next_outgoing(self, request) -> bytes:
        out = self._outgoing
        if out is None or request.block_number != out.sent:
            raise DLMSStateError(f"block {request.block_number + 1} asked for out of turn", field="block-number")
        return self._send_block()

    def _protect(self, apdu) -> bytes:
        raw = apdu.to_bytes()
        if self._protection is None:
            return raw
        general, dedicated = self._protection
        return self._ciphering.cipher(raw, dedicated=dedicated, general=general).to_bytes()


_FOLLOWING = {
    SetRequestWithFirstDatablock: (SetRequestWithFirstDatablock, SetRequestWithDatablock),
    ActionRequestWithFirstPblock: (ActionRequestWithFirstPblock, ActionRequestWithPblock),
}
