"""One DLMS/COSEM association over a byte transport: the I/O around the sans-IO codec.

:func:`dlms_session` holds the line (``transport.claim``) for the whole association and runs::

    [IEC 62056-21 mode E at 300 baud, switch]  →  HDLC SNRM/UA  (or the TCP wrapper)
    →  AARQ/AARE  [→ HLS-GMAC pass 3/4]  →  GET / SET / ACTION ...  →  RLRQ/RLRE  →  HDLC DISC

Every wait for the meter sits inside ``asyncio.timeout`` (the response timeout per reply,
and the session timeout around all of it): a silent meter is a
:class:`~gateway.errors.DeviceTimeout`, never a hang. On a timeout, a codec error
(:class:`~gateway.codecs.dlms.errors.DLMSError`) or any other failure the association is
aborted, the link buffers cleared and the HDLC link disconnected (best effort, bounded);
the error goes to the caller. A meter that refuses the association raises
:class:`AssociationRefused` (a security error when it refused the credentials).

Outgoing invocation counters are reserved durably before each request is built
(:mod:`gateway.dlms_counters`); incoming ones are saved when the session ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.association import (
    ActionOutcome,
    Associated,
    AssociationRejected,
    ClientAssociation,
    ClientSettings,
    GetResult,
    NextRequest,
    Notification,
    Released,
    RequestFailed,
    SetResult,
)
from gateway.codecs.dlms.axdr import Data
from gateway.codecs.dlms.errors import DLMSError, DLMSSecurityError
from gateway.codecs.dlms.hdlc_connection import HdlcConnection, HdlcSettings
from gateway.codecs.dlms.link_events import (
    ApduReceived,
    Connected,
    DataToSend,
    Disconnected,
    FrameRejected,
    LinkEvent,
    NeedData,
    PeerBusy,
)
from gateway.codecs.dlms.mode_e import OPENING_FORMAT, Identification, ModeEOpening
from gateway.codecs.dlms.services import (
    AttributeDescriptor,
    DataAccessResult,
    GetDataResult,
    MethodDescriptor,
    SelectiveAccess,
)
from gateway.codecs.dlms.wrapper import WrapperConnection
from gateway.dlms_counters import AssociationCounters
from gateway.errors import DeviceTimeout, GatewayError
from gateway.transports import LineSettings, Transport

log = logging.getLogger(__name__)

#: How long closing (RLRQ, DISC) may take after a failure before the link is given up.
CLOSE_TIMEOUT_S = 2.0
#: A meter that says RNR (busy) is polled again after this.
BUSY_POLL_S = 0.2
#: IEC 62056-21 6.3.3/annex E: the meter switches its rate after the acknowledgement; wait
#: for the characters to leave at 300 baud and for the meter's switch-over.
MODE_E_SWITCH_S = 0.3
#: AARE diagnostics (acse-service-user) that say the credentials were refused.
_CREDENTIAL_DIAGNOSTICS = {11, 12, 13, 14}


class AssociationRefused(DLMSSecurityError):
    """The meter refused the association (a rejected AARE, or HLS pass 3 refused): for
    the gateway a security refusal, whatever the meter's reason."""


class CredentialsRefused(AssociationRefused):
    """The meter said it refused the association for its credentials (password, keys,
    mechanism)."""


class DataAccessError(DLMSError):
    """The meter answered a request with a negative result (Data-Access-Result,
    Action-Result, EXCEPTION-Response or ConfirmedServiceError)."""

    def __init__(self, reason: str, *, result: object = None, field: str | None = None) -> None:
        self.result = result
        super().__init__(reason, field=field)


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """How to reach one logical device: the link (HDLC addresses or wrapper ports), the
    line, the timeouts and the association settings."""

    interface: str  # "hdlc" or "wrapper"
    client_settings: ClientSettings
    line: LineSettings
    hdlc: HdlcSettings | None = None
    client_wport: int = 16
    server_wport: int = 1
    mode_e: bool = False
    response_timeout_s: float = 3.0
    session_timeout_s: float = 120.0
    retries: int = 2
    name: str = "meter"

    def new_link(self) -> HdlcConnection | WrapperConnection:
        if self.interface == "wrapper":
            return WrapperConnection(self.client_wport, self.server_wport)
        return HdlcConnection(self.hdlc or HdlcSettings())


class DlmsSession:
    """An established association; use it through :func:`dlms_session`."""

    def __init__(self, transport: Transport, target: SessionTarget, counters: AssociationCounters | None) -> None:
        self.transport = transport
        self.target = target
        self.counters = counters
        self.association = ClientAssociation(target.client_settings, counters)
        self.link = target.new_link()
        self._hdlc = isinstance(self.link, HdlcConnection)  # (an ABC: checked once, not per frame)
        self.identification: Identification | None = None
        self.associated: Associated | None = None
        self.notifications: list[Notification] = []
        self.requests = 0
        #: Requests the association built itself: GET-next blocks, HLS pass 3, GBT acks.
        self.continuations = 0
        #: The APDUs of the last request's answer as they arrived (ciphered as received;
        #: several for a block transfer): the raw frame of the readings taken from it.
        self.received: list[bytes] = []

    # -- services ---------------------------------------------------------------------------

    async def get_result(self, attribute: AttributeDescriptor, access: SelectiveAccess | None = None) -> GetDataResult:
        """The value, or the Data-Access-Result saying why not."""
        what = f"GET {_describe(attribute)}"
        return (await self._service(lambda: self.association.send_get(attribute, access), GetResult, what)).result

    async def get(self, attribute: AttributeDescriptor, access: SelectiveAccess | None = None) -> Data:
        """The value; a negative answer raises :class:`DataAccessError`."""
        result = await self.get_result(attribute, access)
        if isinstance(result, DataAccessResult):
            raise DataAccessError(f"GET {_describe(attribute)} refused: {result.name}", result=result, field="result")
        return result

    async def set(self, attribute: AttributeDescriptor, value: Data) -> None:
        """Write an attribute; a negative Data-Access-Result raises :class:`DataAccessError`."""
        what = f"SET {_describe(attribute)}"
        _succeeded(await self._service(lambda: self.association.send_set(attribute, value), SetResult, what), what)

    async def action(self, method: MethodDescriptor, parameters: Data | None = None) -> ActionOutcome:
        """Invoke a method; a negative Action-Result raises :class:`DataAccessError`."""
        what = f"ACTION {_describe(method)}"
        return _succeeded(
            await self._service(lambda: self.association.send_action(method, parameters), ActionOutcome, what), what)

    async def _service(self, build, answer: type, what: str):
        """Send the request ``build`` makes and return its answer, which must be an ``answer``."""
        await self._reserve()
        event = await self._request(_built(build))
        if not isinstance(event, answer):
            raise _failure(event, what)
        return event

    # -- opening and closing ------------------------------------------------------------------

    async def open(self) -> None:
        if self.target.mode_e:
            await self._mode_e()
        if self._hdlc:
            event = await self._link_retrying(self.link.connect)
            if not isinstance(event, Connected):
                raise AssociationRefused(f"{self.target.name}: the meter refused the HDLC link ({_link_text(event)})",
                                         field="SNRM")
        await self._reserve()
        event = await self._request(self.association.send_aarq())
        if isinstance(event, AssociationRejected):
            raise _refused(event, self.target.client_settings.ciphered)
        if not isinstance(event, Associated):
            raise AssociationRefused(f"{self.target.name}: unexpected answer to the AARQ: {type(event).__name__}")
        self.associated = event

    async def release(self) -> None:
        """RLRQ/RLRE, then DISC: the orderly end."""
        try:
            await self._reserve()
            event = await self._request(self.association.send_release())
            if not isinstance(event, Released):
                log.debug("%s: release answered with %s", self.target.name, type(event).__name__)
        finally:
            await self._disconnect()

    async def abort(self) -> None:
        """After a failure: forget the association, drop buffered bytes, disconnect the
        link (bounded; a dead meter does not hold the line)."""
        self.association.abort()
        self.link.clear()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._disconnect()
        except (TimeoutError, GatewayError) as exc:
            log.debug("%s: disconnect after a failure did not complete: %s", self.target.name, exc)

    async def _disconnect(self) -> None:
        if self._hdlc and self.link.state != "disconnected":
            self.link.clear()
            await self.transport.write(self.link.disconnect())
            event = await self._link(b"")
            if not isinstance(event, Disconnected):
                log.debug("%s: DISC answered with %s", self.target.name, _link_text(event))

    async def _mode_e(self) -> None:
        """IEC 62056-21 mode E: sign on at 300 baud 7E1, switch to the meter's rate, 8N1."""
        opening = ModeEOpening(max_baud_rate=self.target.line.baud)
        opening_line = LineSettings(OPENING_FORMAT.baud_rate, OPENING_FORMAT.data_bits, OPENING_FORMAT.parity,
                                    OPENING_FORMAT.stop_bits)
        await self.transport.set_line(opening_line)
        request = opening.sign_on()
        await self.transport.write(request)
        async with asyncio.timeout(self.target.response_timeout_s + opening_line.transmit_time(len(request))):
            while not isinstance(event := opening.next_event(), Identification):
                opening.receive_data(await self._read())
        self.identification = event
        ack = opening.acknowledge()
        await self.transport.write(ack)
        await asyncio.sleep(opening_line.transmit_time(len(ack)) + MODE_E_SWITCH_S)
        await self.transport.set_line(LineSettings(opening.baud_rate, 8, "N", 1))
        self.transport.reset_input()

    # -- moving APDUs -------------------------------------------------------------------------

    async def _reserve(self) -> None:
        settings = self.target.client_settings
        if self.counters is not None and settings.security is not None:
            await self.counters.reserve(settings.security.system_title)

    async def _request(self, apdu: bytes):
        """Send one APDU and run the association until it has an answer (block transfers
        and HLS pass 3 included; pushed notifications are kept aside)."""
        self.requests += 1
        self.received = []
        while True:
            received = await self._apdu_exchange(apdu)
            self.received.append(received)
            event = self.association.receive_apdu(received)
            if isinstance(event, Notification):
                self.notifications.append(event)
                apdu = b""
            elif isinstance(event, NextRequest):
                self.continuations += 1
                await self._reserve()
                apdu = event.apdu
            else:
                return event

    async def _apdu_exchange(self, apdu: bytes) -> bytes:
        if apdu:
            await self.transport.write(self.link.send_apdu(apdu))
        event = await self._link_polling(b"")
        if not isinstance(event, ApduReceived):
            raise DLMSError(f"{self.target.name}: the link answered {_link_text(event)} instead of an APDU",
                            field="link")
        return event.apdu

    async def _link_retrying(self, frame) -> LinkEvent:
        """Send an unnumbered command (SNRM) and wait for the answer, repeating it."""
        for attempt in range(self.target.retries + 1):
            try:
                return await self._link(frame())
            except DeviceTimeout:
                if attempt == self.target.retries:
                    raise
                self.link.clear()
        raise AssertionError("unreachable")

    async def _link_polling(self, data: bytes) -> LinkEvent:
        """Wait for the link's next event; over HDLC, a missing reply is asked for again
        with RR (poll) up to ``retries`` times (IEC 62056-46 6.4.4.4.3.4)."""
        attempts = self.target.retries if self._hdlc else 0
        for attempt in range(attempts + 1):
            try:
                return await self._link(data)
            except DeviceTimeout:
                if attempt == attempts or self.link.state != "connected":
                    raise
                data = self.link.poll()
        raise AssertionError("unreachable")

    async def _link(self, data: bytes) -> LinkEvent:
        if data:
            await self.transport.write(data)
        while True:
            event = self.link.next_event()
            if isinstance(event, NeedData):
                self.link.receive_data(await self._read())
            elif isinstance(event, DataToSend):
                await self.transport.write(event.data)
            elif isinstance(event, PeerBusy):
                await asyncio.sleep(BUSY_POLL_S)
                await self.transport.write(self.link.poll())
            elif isinstance(event, FrameRejected):
                raise DLMSError(f"{self.target.name}: the meter rejected a frame (FRMR {', '.join(event.reasons)})",
                                field="FRMR")
            else:
                return event

    async def _read(self) -> bytes:
        return await self.transport.read(timeout_s=self.target.response_timeout_s)


@asynccontextmanager
async def dlms_session(transport: Transport, target: SessionTarget,
                       counters: AssociationCounters | None = None) -> AsyncIterator[DlmsSession]:
    """Hold the line, associate, yield the session, release; abort on any failure. The
    whole association is bounded by ``target.session_timeout_s``."""
    session = DlmsSession(transport, target, counters)
    if counters is not None:
        await counters.load()
    try:
        async with transport.claim(None if target.mode_e else target.line):
            try:
                async with asyncio.timeout(target.session_timeout_s):
                    await session.open()
                    yield session
                    await session.release()
            except BaseException as exc:
                await session.abort()
                if isinstance(exc, TimeoutError):
                    raise DeviceTimeout(f"{target.name}: the association took longer than "
                                        f"{target.session_timeout_s:g} s") from None
                raise
    finally:
        if counters is not None:
            await counters.save()


def _succeeded(event, what: str):
    if not event.result.success:
        raise DataAccessError(f"{what} refused: {event.result.name}", result=event.result, field="result")
    return event


def _built(build) -> bytes:
    """A request the association builds; one it cannot send (too long for the meter's PDU
    size without block transfer) is the codec's error, not a stray ValueError."""
    try:
        return build()
    except ValueError as exc:
        raise DLMSError(f"request cannot be sent: {exc}", field="request") from None


def _describe(descriptor: AttributeDescriptor | MethodDescriptor) -> str:
    index = descriptor.attribute if isinstance(descriptor, AttributeDescriptor) else descriptor.method
    return f"{descriptor.instance.dotted}:{descriptor.class_id}:{index}"


def _link_text(event: LinkEvent) -> str:
    if isinstance(event, Disconnected):
        return f"{event.response} (disconnected)"
    return type(event).__name__


def _failure(event, what: str) -> DLMSError:
    if isinstance(event, RequestFailed):
        return DataAccessError(f"{what} failed: {event.error.description}", result=event.error, field="service")
    return DLMSError(f"{what}: unexpected answer {type(event).__name__}", field="service")


def _refused(event: AssociationRejected, ciphered: bool) -> AssociationRefused:
    aare = event.aare
    reason = f"association refused: {event.reason}"
    if ciphered:
        # A meter that cannot decipher the AARQ's InitiateRequest rarely says so.
        reason += ("; with ciphering this usually means the meter could not decipher the AARQ "
                   "(check the keys, and that the invocation counters were not reset)")
    if aare is not None and aare.result_source == acse.ACSE_SERVICE_USER and aare.diagnostic in _CREDENTIAL_DIAGNOSTICS:
        return CredentialsRefused(reason, field="AARE")
    if aare is not None and "HLS" in event.reason:
        return CredentialsRefused(reason, field="HLS")
    return AssociationRefused(reason, field="AARE")
