"""A sans-IO DLMS/COSEM client association (Green Book 9.3 and 9.4; IEC 62056-5-3).

:class:`ClientAssociation` holds the state of one application association with a server
(a meter's logical device) and does no I/O: ``send_*`` methods return the bytes of one
APDU to transmit, :meth:`ClientAssociation.receive_apdu` takes the bytes of one received
APDU and returns one event. The transport (HDLC, wrapper) moves the bytes.

Some exchanges need more than one request: GET with block transfer (GET-next), HLS pass
3/4, SET/ACTION parameters split into blocks, general-block-transfer acknowledgements.
The association builds those requests itself and returns them as :class:`NextRequest`:
transmit ``event.apdu`` and feed the reply. A driver therefore loops::

    transport.send(association.send_get(AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 2)))
    while True:
        event = association.receive_apdu(transport.receive())
        if isinstance(event, NextRequest):
            transport.send(event.apdu)
        elif isinstance(event, Notification):
            handle_push(event)  # unsolicited; the answer is still to come
        else:
            break
    # event is GetResult (value or Data-Access-Result) or RequestFailed

Well-formed negative answers are events (:class:`AssociationRejected`, :class:`RequestFailed`,
a :class:`~gateway.codecs.dlms.services.DataAccessResult` in a result); bytes that cannot be
decoded raise :class:`DLMSFrameError`, failed security checks :class:`DLMSSecurityError`,
APDUs that do not fit the state :class:`DLMSStateError`. After an exception the pending
request is abandoned (the association is back to ready, or idle during establishment).

With ciphering every xDLMS APDU is wrapped (glo-/ded- service-specific, or
general-glo-/general-ded-ciphering) and every response unwrapped, its tag checked and its
invocation counter checked against :class:`~gateway.codecs.dlms.security.InvocationCounters`.

Requests never exceed the server's max receive PDU size (long SET values and ACTION
parameters go in blocks, with room for the ciphering overhead); answers a little over our
own announced size are accepted, as real servers (gurux) forget their ciphering overhead.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.acse import AARE, AARQ, RLRE, RLRQ, AuthenticationValue
from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.axdr import Data, DataType, decode_data, decode_data_at, decode_length, octet_string
from gateway.codecs.dlms.errors import DLMSFrameError, DLMSSecurityError, DLMSStateError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import (
    AUTHENTICATED_ENCRYPTION,
    SYSTEM_TITLE_SIZE,
    CipheringContext,
    InvocationCounters,
    MemoryInvocationCounters,
    SecurityKeys,
    check_hls_gmac,
    hls_gmac,
)
from gateway.codecs.dlms.services import (
    ActionRequestNormal,
    ActionRequestNextPblock,
    ActionRequestWithFirstPblock,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithPblock,
    ActionResult,
    AttributeDescriptor,
    AttributeWithSelection,
    DataAccessResult,
    DataBlock,
    DataNotification,
    EventNotificationRequest,
    GetDataResult,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InvokeIdAndPriority,
    MethodDescriptor,
    SelectiveAccess,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
)
from gateway.codecs.dlms.xdlms import (
    CipheredApdu,
    ConfirmedServiceError,
    ExceptionResponse,
    GeneralBlockTransfer,
    GeneralDedCiphering,
    GeneralGloCiphering,
    InitiateRequest,
    InitiateResponse,
    conformance,
)

#: Association LN object and its reply_to_HLS_authentication method (Blue Book 4.4.4,
#: class 15 method 1), used for HLS pass 3/4.
ASSOCIATION_LN_CLASS = 15
CURRENT_ASSOCIATION = Obis(0, 0, 40, 0, 0, 255)
REPLY_TO_HLS_AUTHENTICATION = 1

#: What a client proposes unless told otherwise (the usual LN client set, 0x007E1F).
DEFAULT_CONFORMANCE = conformance(
    "priority-mgmt-supported",
    "attribute0-supported-with-get",
    "block-transfer-with-get-or-read",
    "block-transfer-with-set-or-write",
    "block-transfer-with-action",
    "multiple-references",
    "get",
    "set",
    "selective-access",
    "event-notification",
    "action",
)
_BIT = {name: conformance(name) for name in ("general-protection", "general-block-transfer",
                                              "block-transfer-with-set-or-write", "block-transfer-with-action")}

#: A long GET or GBT transfer larger than this is refused (a runaway server).
MAX_REASSEMBLY = 16 * 1024 * 1024


class Authentication(enum.IntEnum):
    """The authentication mechanisms the client offers (mechanism_name ids)."""

    NONE = acse.MECHANISM_NONE
    LOW = acse.MECHANISM_LLS
    HIGH_GMAC = acse.MECHANISM_HLS_GMAC


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The client's security material for suite 0.

    ``security_control`` protects ciphered APDUs (0x30 authenticated and encrypted by
    default) and is also the protection demanded of responses; ``dedicated_key`` is proposed
    in the InitiateRequest and then used for ded- APDUs; ``general_protection`` uses
    general-glo/ded-ciphering instead of the service-specific glo-/ded- APDUs."""

    system_title: bytes
    keys: SecurityKeys
    security_control: int = AUTHENTICATED_ENCRYPTION
    dedicated_key: bytes | None = field(default=None, repr=False)
    general_protection: bool = False

    def __post_init__(self) -> None:
        if len(self.system_title) != SYSTEM_TITLE_SIZE:
            raise ValueError(f"system title must be {SYSTEM_TITLE_SIZE} bytes")
        if self.dedicated_key is not None and len(self.dedicated_key) != 16:
            raise ValueError("dedicated key must be 16 bytes (AES-128)")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How the client associates. ``ciphered`` asks for the LN-with-ciphering context (all
    xDLMS APDUs ciphered); HLS-GMAC and ciphering both need ``security``."""

    authentication: Authentication = Authentication.NONE
    password: bytes | None = field(default=None, repr=False)
    security: SecuritySettings | None = None
    ciphered: bool = False
    conformance: int = DEFAULT_CONFORMANCE
    max_receive_pdu_size: int = 0xFFFF
    dlms_version: int = 6
    high_priority: bool = True
    challenge_size: int = 16

    def __post_init__(self) -> None:
        check_settings(self)


def check_settings(settings) -> None:
    """What client and server settings both need: a password for LLS, keys for HLS-GMAC and
    ciphering, a challenge of 8..64 bytes (Green Book 9.2.7.4), a PDU size of 12..65535."""
    if settings.authentication is Authentication.LOW and not settings.password:
        raise ValueError("low level security (LLS) needs a password")
    if (settings.ciphered or settings.authentication is Authentication.HIGH_GMAC) and settings.security is None:
        raise ValueError("HLS-GMAC and ciphering need security settings (system title and keys)")
    if not 8 <= settings.challenge_size <= 64:
        raise ValueError("the HLS challenge is 8 to 64 bytes")
    if not 12 <= settings.max_receive_pdu_size <= 0xFFFF:
        raise ValueError("max receive PDU size must be 12..65535")


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NextRequest:
    """The exchange goes on: transmit ``apdu`` and feed the reply to ``receive_apdu``."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class Associated:
    """The association is established (and, with HLS, both sides authenticated)."""

    negotiated: InitiateResponse
    server_system_title: bytes | None
    aare: AARE


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """The server refused the association: ``reason`` in words; ``aare`` when it answered
    with one, ``service_error`` when the AARE carried a ConfirmedServiceError."""

    reason: str
    aare: AARE | None = None
    service_error: ConfirmedServiceError | None = None


@dataclass(frozen=True, slots=True)
class GetResult:
    """The answer to a GET: the value, or the Data-Access-Result saying why not."""

    attribute: AttributeDescriptor
    result: GetDataResult


@dataclass(frozen=True, slots=True)
class GetListResult:
    """The answer to a GET-with-list, one result per requested attribute."""

    attributes: tuple[AttributeWithSelection, ...]
    results: tuple[GetDataResult, ...]


@dataclass(frozen=True, slots=True)
class SetResult:
    attribute: AttributeDescriptor
    result: DataAccessResult


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The answer to an ACTION: its result and the optional return data."""

    method: MethodDescriptor
    result: ActionResult
    return_data: GetDataResult | None = None


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The server answered a request with an EXCEPTION-Response or ConfirmedServiceError."""

    error: ExceptionResponse | ConfirmedServiceError


@dataclass(frozen=True, slots=True)
class Notification:
    """An unsolicited DataNotification or EventNotificationRequest (any state)."""

    apdu: DataNotification | EventNotificationRequest


@dataclass(frozen=True, slots=True)
class Released:
    rlre: RLRE


Event = Union[
    NextRequest, Associated, AssociationRejected, GetResult, GetListResult, SetResult, ActionOutcome,
    RequestFailed, Notification, Released,
]


class State(enum.Enum):
    IDLE = "idle"
    AWAITING_AARE = "awaiting AARE"
    AWAITING_HLS = "awaiting HLS pass 4"
    READY = "ready"
    AWAITING_RESPONSE = "awaiting response"
    AWAITING_RLRE = "awaiting RLRE"


@dataclass(slots=True)
class _Pending:
    """The request in flight and what its continuation needs."""

    kind: str  # "get", "get-list", "set", "action"
    invoke: InvokeIdAndPriority
    target: object
    next_block: int = 1
    received: bytearray = field(default_factory=bytearray)
    outgoing: list[bytes] = field(default_factory=list)  # SET/ACTION blocks still to send


#: Blocks of a general-block-transfer we take before acknowledging (advertised in our acks).
_GBT_RECEIVE_WINDOW = 1


class ClientAssociation:
    """One client association with a server (see the module docstring for the loop).

    ``counters`` keeps the invocation counters (required when ``settings.security`` is
    set; an in-memory store starting at 0 is used when it is not given). ``challenge`` fixes
    the HLS client-to-server challenge (tests); by default it is random."""

    def __init__(
        self,
        settings: ClientSettings,
        counters: InvocationCounters | None = None,
        *,
        challenge: bytes | None = None,
    ) -> None:
        self.settings = settings
        self.counters: InvocationCounters = counters if counters is not None else MemoryInvocationCounters()
        self._fixed_challenge = challenge
        self._challenge: bytes | None = None
        self.state = State.IDLE
        self.negotiated: InitiateResponse | None = None
        self.server_system_title: bytes | None = None
        self._aare: AARE | None = None
        self._invoke_id = 0
        self._pending: _Pending | None = None
        self._gbt: bytearray | None = None
        self._gbt_next = 1
        self._gbt_own = 1
        self._ciphering = self._new_ciphering()

    @classmethod
    def pre_established(
        cls,
        settings: ClientSettings,
        negotiated: InitiateResponse,
        counters: InvocationCounters | None = None,
        *,
        server_system_title: bytes | None = None,
    ) -> ClientAssociation:
        """An association that exists without AARQ/AARE (Green Book 9.4.3.2, pre-established
        AA): ready at once with the parameters both sides know in advance."""
        association = cls(settings, counters)
        association.negotiated = negotiated
        association.server_system_title = server_system_title
        if association._ciphering is not None:
            association._ciphering.peer_title = server_system_title
        association.state = State.READY
        return association

    # --- establishing and releasing ----------------------------------------------------

    def send_aarq(self) -> bytes:
        """The AARQ that opens the association (idle state only)."""
        self._expect_state(State.IDLE, "send an AARQ")
        s = self.settings
        sec = s.security
        proposed = s.conformance
        if sec is not None and sec.general_protection:
            proposed |= _BIT["general-protection"]
        initiate = InitiateRequest(
            proposed_conformance=proposed,
            client_max_receive_pdu_size=s.max_receive_pdu_size,
            proposed_dlms_version_number=s.dlms_version,
            dedicated_key=sec.dedicated_key if (sec is not None and s.ciphered) else None,
        )
        user_information = initiate
        if s.ciphered:
            user_information = self._ciphering.cipher(initiate.to_bytes(), general=False)
        auth_value = None
        if s.authentication is Authentication.LOW:
            auth_value = AuthenticationValue(s.password)
        elif s.authentication is Authentication.HIGH_GMAC:
            # A fresh challenge for every association: it is what makes pass 4 fresh.
            self._challenge = self._fixed_challenge or os.urandom(s.challenge_size)
            auth_value = AuthenticationValue(self._challenge)
        authenticated = s.authentication is not Authentication.NONE
        aarq = AARQ(
            application_context_name=acse.application_context_name(
                acse.LOGICAL_NAME_WITH_CIPHERING if s.ciphered else acse.LOGICAL_NAME
            ),
            user_information=user_information,
            calling_ap_title=sec.system_title if sec is not None else None,
            mechanism_name=acse.mechanism_name(s.authentication) if authenticated else None,
            calling_authentication_value=auth_value,
            sender_acse_requirements=acse.ACSE_REQUIREMENTS_AUTHENTICATION if authenticated else None,
        )
        self.state = State.AWAITING_AARE
        return aarq.to_bytes()

    def send_release(self) -> bytes:
        """The RLRQ that ends the association (with ciphering it carries a ciphered
        InitiateRequest, authenticating the release)."""
        self._expect_state(State.READY, "release")
        user_information = None
        if self.settings.ciphered:
            s = self.settings
            initiate = InitiateRequest(s.conformance, s.max_receive_pdu_size, s.dlms_version)
            user_information = self._ciphering.cipher(initiate.to_bytes(), general=False)
        self.state = State.AWAITING_RLRE
        return RLRQ(0, user_information).to_bytes()

    def abort(self) -> None:
        """Forget the association (the transport was lost or the server went silent)."""
        self.state = State.IDLE
        self._pending = None
        self._gbt = None
        self.negotiated = None
        self._ciphering = self._new_ciphering()

    # --- services ----------------------------------------------------------------------

    def send_get(self, attribute: AttributeDescriptor, access: SelectiveAccess | None = None) -> bytes:
        """GET one attribute; the reply ends in :class:`GetResult` (blocks reassembled)."""
        invoke = self._start("get", attribute)
        return self._request(GetRequestNormal(attribute, access, invoke).to_bytes())

    def send_get_with_list(self, attributes: Sequence[AttributeDescriptor | AttributeWithSelection]) -> bytes:
        """GET several attributes at once; the reply ends in :class:`GetListResult`."""
        items = tuple(a if isinstance(a, AttributeWithSelection) else AttributeWithSelection(a) for a in attributes)
        if not items:
            raise ValueError("GET-with-list needs at least one attribute")
        invoke = self._start("get-list", items)
        return self._request(GetRequestWithList(items, invoke).to_bytes())

    def send_set(self, attribute: AttributeDescriptor, value: Data, access: SelectiveAccess | None = None) -> bytes:
        """SET one attribute; a value too long for the server's PDU goes in blocks."""
        invoke = self._start("set", attribute)
        apdu = SetRequestNormal(attribute, value, access, invoke).to_bytes()
        if self._fits(apdu):
            return self._request(apdu)
        return self._send_in_blocks(
            value.to_bytes(),
            lambda block: SetRequestWithFirstDatablock(attribute, block, access, invoke),
            lambda block: SetRequestWithDatablock(block, invoke),
            "block-transfer-with-set-or-write",
        )

    def send_action(self, method: MethodDescriptor, parameters: Data | None = None) -> bytes:
        """Invoke a method; parameters too long for the server's PDU go in blocks."""
        invoke = self._start("action", method)
        apdu = ActionRequestNormal(method, parameters, invoke).to_bytes()
        if self._fits(apdu) or parameters is None:
            return self._request(apdu)
        return self._send_in_blocks(
            parameters.to_bytes(),
            lambda block: ActionRequestWithFirstPblock(method, block, invoke),
            lambda block: ActionRequestWithPblock(block, invoke),
            "block-transfer-with-action",
        )

    def _send_in_blocks(self, raw: bytes, first, following, needed: str) -> bytes:
        """Split ``raw`` into DataBlock-SA blocks; ``first``/``following`` build the APDUs."""
        chunks = self._chunks(raw, first(DataBlock(False, 1, b"")).to_bytes(), needed)
        blocks = [DataBlock(n == len(chunks), n, chunk) for n, chunk in enumerate(chunks, 1)]
        self._pending.outgoing = [following(block).to_bytes() for block in blocks[1:]]
        return self._request(first(blocks[0]).to_bytes())

    # --- receiving ---------------------------------------------------------------------

    def receive_apdu(self, data: bytes) -> Event:
        """Process one received APDU and return what it means."""
        try:
            return self._receive(decode_apdu(data))
        except (DLMSFrameError, DLMSSecurityError, DLMSStateError):
            self._fail_pending()
            raise

    def _receive(self, apdu) -> Event:
        if isinstance(apdu, (DataNotification, EventNotificationRequest)):
            if self.settings.ciphered and self.state is not State.IDLE:
                raise DLMSSecurityError("plaintext notification in a ciphered association", field="tag")
            return Notification(apdu)
        if isinstance(apdu, AARE):
            return self._on_aare(apdu)
        if isinstance(apdu, RLRE):
            return self._on_rlre(apdu)
        if isinstance(apdu, GeneralBlockTransfer):
            return self._on_gbt(apdu)
        if isinstance(apdu, (CipheredApdu, GeneralGloCiphering, GeneralDedCiphering)):
            plain = self._decipher(apdu)
            inner = decode_apdu(plain)
            if isinstance(inner, (CipheredApdu, GeneralGloCiphering, GeneralDedCiphering)):
                raise DLMSFrameError("ciphered APDU inside a ciphered APDU", offset=0, field="tag")
            if isinstance(inner, (DataNotification, EventNotificationRequest)):
                return Notification(inner)
            if isinstance(inner, GeneralBlockTransfer):
                return self._on_gbt(inner)
            return self._on_response(inner)
        if self.settings.ciphered and not isinstance(apdu, (ExceptionResponse, ConfirmedServiceError)):
            raise DLMSSecurityError(f"plaintext {type(apdu).__name__} in a ciphered association", field="tag")
        return self._on_response(apdu)

    def _on_aare(self, aare: AARE) -> Event:
        self._expect_state(State.AWAITING_AARE, "accept an AARE")
        s = self.settings
        self.server_system_title = aare.responding_ap_title
        if self._ciphering is not None:
            self._ciphering.peer_title = aare.responding_ap_title
        user = aare.user_information
        if isinstance(user, CipheredApdu):
            user = decode_apdu(self._decipher(user))
        if not aare.accepted:
            self.state = State.IDLE
            error = user if isinstance(user, ConfirmedServiceError) else None
            reason = aare.description + (f"; {error.description}" if error else "")
            return AssociationRejected(reason, aare, error)
        if isinstance(user, ConfirmedServiceError):
            self.state = State.IDLE
            return AssociationRejected(f"accepted AARE carries {user.description}", aare, user)
        if not isinstance(user, InitiateResponse):
            self.state = State.IDLE
            raise DLMSFrameError("accepted AARE without an InitiateResponse", offset=0, field="user-information")
        if s.ciphered and not isinstance(aare.user_information, CipheredApdu):
            self.state = State.IDLE
            raise DLMSSecurityError("plaintext InitiateResponse in a ciphered association", field="user-information")
        self.negotiated = user
        self._aare = aare
        if s.authentication is not Authentication.HIGH_GMAC:
            self.state = State.READY
            return Associated(user, self.server_system_title, aare)
        return self._hls_pass_3(aare)

    def _hls_pass_3(self, aare: AARE) -> Event:
        s = self.settings
        stoc = aare.responding_authentication_value
        if aare.diagnostic != acse.AUTHENTICATION_REQUIRED or stoc is None:
            self.state = State.IDLE
            raise DLMSSecurityError("HLS-GMAC association accepted without a server challenge",
                                    field="responding-authentication-value")
        if self.server_system_title is None or len(self.server_system_title) != SYSTEM_TITLE_SIZE:
            self.state = State.IDLE
            raise DLMSSecurityError("HLS-GMAC needs the server system title (responding-AP-title)",
                                    field="responding-AP-title")
        sec = s.security
        f_stoc = hls_gmac(
            stoc.value,
            keys=sec.keys,
            system_title=sec.system_title,
            invocation_counter=self.counters.next_outgoing(sec.system_title),
        )
        method = MethodDescriptor(ASSOCIATION_LN_CLASS, CURRENT_ASSOCIATION, REPLY_TO_HLS_AUTHENTICATION)
        invoke = self._next_invoke()
        self._pending = _Pending("hls", invoke, method)
        self.state = State.AWAITING_HLS
        apdu = ActionRequestNormal(method, octet_string(f_stoc), invoke).to_bytes()
        return NextRequest(self._protect(apdu))

    def _on_hls_reply(self, apdu) -> Event:
        pending = self._pending
        self._pending = None
        if isinstance(apdu, (ExceptionResponse, ConfirmedServiceError)):
            self.state = State.IDLE
            return AssociationRejected(f"HLS pass 3 refused: {apdu.description}", self._aare)
        if not isinstance(apdu, ActionResponseNormal):
            self.state = State.IDLE
            raise DLMSStateError(f"{type(apdu).__name__} in answer to HLS pass 3", field="tag")
        self._check_invoke(pending, apdu.invoke)
        if not apdu.result.success:
            self.state = State.IDLE
            return AssociationRejected(f"HLS pass 3 refused: {apdu.result.name}", self._aare)
        reply = apdu.return_data
        if not isinstance(reply, Data) or reply.type is not DataType.OCTET_STRING:
            self.state = State.IDLE
            raise DLMSSecurityError("HLS pass 4 carries no f(CtoS)", field="return-parameters")
        # Freshness comes from our random challenge, so the counter inside f(CtoS) is not
        # checked against the APDU counters (a server may use it before the APDU's own).
        check_hls_gmac(reply.value, self._challenge, keys=self.settings.security.keys,
                       system_title=self.server_system_title)
        self.state = State.READY
        return Associated(self.negotiated, self.server_system_title, self._aare)

    def _on_rlre(self, rlre: RLRE) -> Event:
        self._expect_state(State.AWAITING_RLRE, "accept an RLRE")
        if isinstance(rlre.user_information, CipheredApdu):
            decode_apdu(self._decipher(rlre.user_information))
        self.abort()
        return Released(rlre)

    # --- responses to services ----------------------------------------------------------

    def _on_response(self, apdu) -> Event:
        if self.state is State.AWAITING_HLS:
            return self._on_hls_reply(apdu)
        if self.state is State.AWAITING_AARE and isinstance(apdu, (ExceptionResponse, ConfirmedServiceError)):
            self.state = State.IDLE
            return AssociationRejected(f"AARQ refused: {apdu.description}", None,
                                       apdu if isinstance(apdu, ConfirmedServiceError) else None)
        self._expect_state(State.AWAITING_RESPONSE, f"accept {type(apdu).__name__}")
        pending = self._pending
        if isinstance(apdu, (ExceptionResponse, ConfirmedServiceError)):
            self._done()
            return RequestFailed(apdu)
        handler = _HANDLERS.get((pending.kind, type(apdu)))
        if handler is None:
            raise DLMSStateError(f"{type(apdu).__name__} does not answer a {pending.kind} request", field="tag")
        self._check_invoke(pending, apdu.invoke)
        return handler(self, pending, apdu)

    def _get_normal(self, pending: _Pending, apdu: GetResponseNormal) -> Event:
        self._done()
        return GetResult(pending.target, apdu.result)

    def _get_block(self, pending: _Pending, apdu: GetResponseWithDatablock) -> Event:
        if apdu.block_number != pending.next_block:
            raise DLMSStateError(f"GET block {apdu.block_number} where block {pending.next_block} was expected",
                                 field="block-number")
        if isinstance(apdu.result, DataAccessResult):
            self._done()
            if pending.kind == "get":
                return GetResult(pending.target, apdu.result)
            return GetListResult(pending.target, tuple(apdu.result for _ in pending.target))
        self._collect(pending.received, apdu.result)
        if not apdu.last_block:
            pending.next_block += 1
            return NextRequest(self._protect(GetRequestNext(apdu.block_number, pending.invoke).to_bytes()))
        self._done()
        raw = bytes(pending.received)
        if pending.kind == "get":
            return GetResult(pending.target, decode_data(raw))
        return GetListResult(pending.target, _decode_result_list(raw, len(pending.target)))

    def _get_list(self, pending: _Pending, apdu: GetResponseWithList) -> Event:
        if len(apdu.results) != len(pending.target):
            raise DLMSStateError(f"{len(apdu.results)} results for {len(pending.target)} attributes",
                                 field="result")
        self._done()
        return GetListResult(pending.target, apdu.results)

    def _set_normal(self, pending: _Pending, apdu: SetResponseNormal) -> Event:
        self._done()
        return SetResult(pending.target, apdu.result)

    def _set_block(self, pending: _Pending, apdu: SetResponseDatablock) -> Event:
        if apdu.block_number != pending.next_block or not pending.outgoing:
            raise DLMSStateError(f"SET block {apdu.block_number} acknowledged out of turn", field="block-number")
        pending.next_block += 1
        return NextRequest(self._protect(pending.outgoing.pop(0)))

    def _set_last(self, pending: _Pending, apdu: SetResponseLastDatablock) -> Event:
        self._done()
        return SetResult(pending.target, apdu.result)

    def _action_normal(self, pending: _Pending, apdu: ActionResponseNormal) -> Event:
        self._done()
        return ActionOutcome(pending.target, apdu.result, apdu.return_data)

    def _action_next(self, pending: _Pending, apdu: ActionResponseNextPblock) -> Event:
        if apdu.block_number != pending.next_block or not pending.outgoing:
            raise DLMSStateError(f"ACTION block {apdu.block_number} acknowledged out of turn", field="block-number")
        pending.next_block += 1
        return NextRequest(self._protect(pending.outgoing.pop(0)))

    def _action_block(self, pending: _Pending, apdu: ActionResponseWithPblock) -> Event:
        # Long return parameters: the blocks carry the encoded Data (Green Book 9.3.10).
        block = apdu.block
        if pending.outgoing:
            raise DLMSStateError("ACTION return block while parameters are still being sent", field="tag")
        if pending.received and block.block_number != pending.next_block or \
                not pending.received and block.block_number != 1:
            raise DLMSStateError(f"ACTION return block {block.block_number} out of order", field="block-number")
        self._collect(pending.received, block.raw_data)
        pending.next_block = block.block_number + 1
        if not block.last_block:
            return NextRequest(self._protect(ActionRequestNextPblock(block.block_number, pending.invoke).to_bytes()))
        self._done()
        return ActionOutcome(pending.target, ActionResult(0), decode_data(bytes(pending.received)))

    # --- general-block-transfer ---------------------------------------------------------

    def _on_gbt(self, block: GeneralBlockTransfer) -> Event:
        if self.state not in (State.AWAITING_RESPONSE, State.AWAITING_HLS):
            raise DLMSStateError("general-block-transfer with no request in flight", field="tag")
        if self._gbt is None:
            if block.block_number != 1:
                raise DLMSStateError(f"GBT starts at block {block.block_number}", field="block-number")
            self._gbt = bytearray()
            self._gbt_next = 1
        if block.block_number != self._gbt_next:
            raise DLMSStateError(f"GBT block {block.block_number} where {self._gbt_next} was expected",
                                 field="block-number")
        self._collect(self._gbt, block.block_data)
        self._gbt_next += 1
        if block.last_block:
            whole = bytes(self._gbt)
            self._gbt = None
            return self._receive(decode_apdu(whole))
        # Our receive window is one block, so every block closes a window and is
        # acknowledged, whatever the sender's streaming bit says (Green Book 9.3.6.4).
        ack = GeneralBlockTransfer(self._gbt_own, block.block_number, b"", last_block=False, streaming=False,
                                   window=_GBT_RECEIVE_WINDOW)
        self._gbt_own += 1
        return NextRequest(ack.to_bytes())

    # --- helpers -----------------------------------------------------------------------

    def _expect_state(self, state: State, action: str) -> None:
        if self.state is not state:
            raise DLMSStateError(f"cannot {action} in state {self.state.value}", field="state")

    def _next_invoke(self) -> InvokeIdAndPriority:
        self._invoke_id = (self._invoke_id + 1) & 0x0F
        return InvokeIdAndPriority.of(self._invoke_id, high_priority=self.settings.high_priority)

    def _start(self, kind: str, target) -> InvokeIdAndPriority:
        self._expect_state(State.READY, f"send a {kind} request")
        invoke = self._next_invoke()
        self._pending = _Pending(kind, invoke, target)
        return invoke

    def _done(self) -> None:
        self._pending = None
        self._gbt = None
        self.state = State.READY

    def _fail_pending(self) -> None:
        if self.state in (State.AWAITING_RESPONSE,):
            self._done()
        elif self.state in (State.AWAITING_AARE, State.AWAITING_HLS):
            self.abort()

    @staticmethod
    def _check_invoke(pending: _Pending, invoke: InvokeIdAndPriority) -> None:
        if invoke.invoke_id != pending.invoke.invoke_id:
            raise DLMSStateError(f"response for invoke-id {invoke.invoke_id}, request had {pending.invoke.invoke_id}",
                                 field="invoke-id-and-priority")

    @staticmethod
    def _collect(buffer: bytearray, data: bytes) -> None:
        if len(buffer) + len(data) > MAX_REASSEMBLY:
            raise DLMSFrameError(f"block transfer exceeds {MAX_REASSEMBLY} bytes", field="raw-data")
        buffer += data

    @property
    def server_max_pdu_size(self) -> int | None:
        """The largest APDU the server accepts (from its InitiateResponse)."""
        return None if self.negotiated is None else self.negotiated.server_max_receive_pdu_size

    def _overhead(self) -> int:
        return self._ciphering.overhead if self.settings.ciphered else 0

    def _fits(self, apdu: bytes) -> bool:
        limit = self.server_max_pdu_size
        return not limit or len(apdu) + self._overhead() <= limit

    def _chunks(self, raw: bytes, empty_first: bytes, needed: str) -> list[bytes]:
        if not self.negotiated.negotiated_conformance & _BIT[needed]:
            self._done()
            raise ValueError(f"request too long for the server's {self.server_max_pdu_size}-byte PDU and "
                             f"{needed} was not negotiated")
        room = self.server_max_pdu_size - len(empty_first) - 4 - self._overhead()
        if room < 1:
            self._done()
            raise ValueError(f"the server's PDU size {self.server_max_pdu_size} leaves no room for a block")
        return [raw[i : i + room] for i in range(0, len(raw), room)]

    def _request(self, apdu: bytes) -> bytes:
        if not self._fits(apdu):
            self._done()
            raise ValueError(f"request of {len(apdu)} bytes exceeds the server's max PDU size "
                             f"{self.server_max_pdu_size}")
        protected = self._protect(apdu)
        self.state = State.AWAITING_RESPONSE
        return protected

    def _new_ciphering(self) -> CipheringContext | None:
        """Fresh per association: the peer's title and dedicated-key counter are forgotten."""
        sec = self.settings.security
        if sec is None:
            return None
        return CipheringContext(sec.keys, sec.system_title, self.counters, security_control=sec.security_control,
                                general=sec.general_protection, dedicated_key=sec.dedicated_key)

    def _protect(self, apdu: bytes) -> bytes:
        if not self.settings.ciphered:
            return apdu
        # The dedicated key serves once the association is established, not during it.
        dedicated = self.state not in (State.AWAITING_HLS, State.AWAITING_AARE)
        return self._ciphering.cipher(apdu, dedicated=dedicated).to_bytes()

    def _decipher(self, apdu: CipheredApdu | GeneralGloCiphering | GeneralDedCiphering) -> bytes:
        if self._ciphering is None:
            raise DLMSSecurityError("ciphered APDU but no keys are configured", field="tag")
        return self._ciphering.decipher(apdu)


def _decode_result_list(raw: bytes, expected: int) -> tuple[GetDataResult, ...]:
    """The reassembled blocks of a GET-with-list: SEQUENCE OF Get-Data-Result."""
    count, pos = decode_length(raw, 0, "result")
    if count != expected:
        raise DLMSStateError(f"{count} results for {expected} attributes", field="result")
    results = []
    for _ in range(count):
        if pos >= len(raw):
            raise DLMSFrameError("truncated GET-with-list result", offset=pos, field="result")
        choice = raw[pos]
        if choice == 0:
            value, pos = decode_data_at(raw, pos + 1)
            results.append(value)
        elif choice == 1 and pos + 1 < len(raw):
            results.append(DataAccessResult(raw[pos + 1]))
            pos += 2
        else:
            raise DLMSFrameError("malformed Get-Data-Result in GET-with-list blocks", offset=pos, field="result")
    if pos != len(raw):
        raise DLMSFrameError(f"{len(raw) - pos} trailing bytes after GET-with-list results", offset=pos,
                             field="result")
    return tuple(results)


_HANDLERS = {
    ("get", GetResponseNormal): ClientAssociation._get_normal,
    ("get", GetResponseWithDatablock): ClientAssociation._get_block,
    ("get-list", GetResponseWithList): ClientAssociation._get_list,
    ("get-list", GetResponseWithDatablock): ClientAssociation._get_block,
    ("set", SetResponseNormal): ClientAssociation._set_normal,
    ("set", SetResponseDatablock): ClientAssociation._set_block,
    ("set", SetResponseLastDatablock): ClientAssociation._set_last,
    ("action", ActionResponseNormal): ClientAssociation._action_normal,
    ("action", ActionResponseNextPblock): ClientAssociation._action_next,
    ("action", ActionResponseWithPblock): ClientAssociation._action_block,
}
