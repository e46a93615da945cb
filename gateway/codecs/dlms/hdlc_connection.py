"""The HDLC data link of IEC 62056-46 (DLMS UA 1000-2 8.4), sans-IO, client and server side.

Like h11: the caller moves bytes, the connection keeps the state. Methods that originate a
frame return its bytes (:meth:`HdlcConnection.connect`, ``send_apdu``, ``disconnect``,
``poll``); what arrives goes in with ``receive_data`` and comes out of ``next_event`` as the
events of :mod:`gateway.codecs.dlms.link_events`, including :class:`DataToSend` for frames the
link must send in answer (an RR asking for the next segment of a reply, the next window of
a segmented APDU, a UA to a SNRM).

What the link does (6.4.4.4):

* SNRM with the negotiation parameters, UA with the peer's values; what each side uses is
  the smaller of what it offers and what the peer accepts (defaults when absent);
* APDUs travel in I-frames behind the LLC header; an APDU longer than the negotiated
  ``max_info_tx`` is cut into segments with the S bit set on all but the last; at most
  ``window_tx`` I-frames are outstanding, the last of a window carries P/F;
* a segmented reply is reassembled, answering RR to every segment that carries P/F;
* N(S) and N(R) are checked: a frame out of sequence raises :class:`DLMSFrameError` and is
  discarded (when it carries P/F the link answers RR with V(R), asking the peer to send again);
  an exact repeat of the last frame (the peer missed our RR) is dropped quietly;
  an N(R) that acknowledges frames never sent breaks the link (state ``failed``);
* RR with P/F from the peer while frames are unacknowledged makes the link send them again
  (go-back-N); RNR is reported as :class:`PeerBusy`; FRMR as :class:`FrameRejected`.

After a :class:`DLMSFrameError` from ``next_event`` keep calling it: the parser has
resynchronised and queued events are still there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError
from gateway.codecs.dlms.hdlc import (
    CLIENT_PUBLIC,
    LLC_COMMAND,
    LLC_LENGTH,
    LLC_RESPONSE,
    SEQUENCE_MODULUS,
    SERVER_LOGICAL_MANAGEMENT,
    Control,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
    HdlcParser,
    physical_address_from_serial,
)
from gateway.codecs.dlms.link_events import (
    NEED_DATA,
    ApduReceived,
    Connected,
    DataToSend,
    Disconnected,
    FrameRejected,
    LinkEvent,
    PeerBusy,
)

# Link states (6.4.4.1: NDM, NRM, and the waits in between).
DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
DISCONNECTING = "disconnecting"
FAILED = "failed"  # FRMR condition: only SNRM or DISC help

#: Frames that carry N(R) and need a connected link.
NUMBERED_FRAMES = frozenset({"I", "RR", "RNR"})

# FRMR information field, ISO/IEC 13239 5.5.3.4.3: third byte, reason bits.
FRMR_REASON_BITS = {0x01: "W", 0x02: "X", 0x04: "Y", 0x08: "Z"}
FRMR_BIT = {name: bit for bit, name in FRMR_REASON_BITS.items()}


@dataclass(frozen=True, slots=True)
class HdlcSettings:
    """Who talks to whom and what the station offers in the negotiation.

    Defaults are the well-known addresses: public client 16, server logical device 1 (the
    management logical device) without a physical address. ``server_address_size`` is the
    size the meter expects (1, 2 or 4 bytes); ``None`` takes the shortest that fits."""

    client_sap: int = CLIENT_PUBLIC
    server_logical: int = SERVER_LOGICAL_MANAGEMENT
    server_physical: int | None = None
    server_address_size: int | None = None
    parameters: HdlcParameters = field(default_factory=HdlcParameters)

    @classmethod
    def for_serial_number(cls, serial_number: int, **kwargs) -> HdlcSettings:
        """Settings for a meter addressed by its serial number (4-byte server address, physical
        address ``SN mod 10000 + 1000``)."""
        return cls(server_physical=physical_address_from_serial(serial_number), server_address_size=4, **kwargs)

    @property
    def client_address(self) -> HdlcAddress:
        return HdlcAddress.client(self.client_sap)

    @property
    def server_address(self) -> HdlcAddress:
        return HdlcAddress.server(self.server_logical, self.server_physical, self.server_address_size)


class _HdlcStation(ABC):
    """What client and server share: I-frames, segmentation, windows, acknowledgements."""

    _llc_out: bytes
    _llc_in: bytes

    def __init__(self, settings: HdlcSettings | None = None) -> None:
        self.settings = settings or HdlcSettings()
        self.state = DISCONNECTED
        #: The negotiated parameters from this station's point of view (defaults until connected).
        self.parameters = HdlcParameters()
        self.ignored_frames = 0
        self.duplicate_frames = 0
        self._parser = HdlcParser()
        self._events: deque[LinkEvent] = deque()
        self._reset_link()

    # --- the caller's side ---------------------------------------------------------------

    @property
    def parser(self) -> HdlcParser:
        """The frame parser, for its counters (``skipped_bytes``, ``errors``, ``frames``)."""
        return self._parser

    @property
    def sending(self) -> bool:
        """True while segments of an APDU wait for acknowledgements."""
        return bool(self._pending)

    def receive_data(self, data: bytes) -> None:
        self._parser.receive_data(data)

    def clear(self) -> None:
        """Drop buffered bytes, queued events and a half-reassembled APDU (after a timeout,
        before retrying), so nothing stale is glued to the next reply."""
        self._parser.clear()
        self._events.clear()
        self._reassembly.clear()

    def next_event(self) -> LinkEvent:
        """The next event, or :data:`NEED_DATA` when more bytes are needed."""
        while not self._events:
            frame = self._parser.next_frame()
            if frame is None:
                return NEED_DATA
            try:
                self._on_frame(frame)
            except (ValueError, IndexError) as exc:
                raise DLMSFrameError(f"frame {frame.control} cannot be handled: {exc}", field="frame") from exc
        return self._events.popleft()

    def send_apdu(self, apdu: bytes) -> bytes:
        """Frames carrying ``apdu`` (LLC header added, segmented to ``max_info_tx``) that may be
        sent now; the rest of a long APDU comes as :class:`DataToSend` as the peer acknowledges.
        Empty when the window is full of unacknowledged frames (a request whose reply never
        came): :meth:`poll` makes the peer acknowledge, or reconnect."""
        self._require(CONNECTED, "send an APDU")
        info = self._llc_out + bytes(apdu)
        size = self.parameters.max_info_tx
        chunks = [info[i : i + size] for i in range(0, len(info), size)]
        self._pending.extend((chunk, n < len(chunks) - 1) for n, chunk in enumerate(chunks))
        return self._send_window()

    def poll(self) -> bytes:
        """RR with P/F set: asks the peer to answer (after a timeout or an RNR). The peer
        resends what we missed, or tells us with N(R) what it missed."""
        self._require(CONNECTED, "poll")
        return self._supervisory("RR")

    # --- frames out ----------------------------------------------------------------------

    @abstractmethod
    def _local(self) -> HdlcAddress:
        """This station's address."""

    @abstractmethod
    def _remote(self) -> HdlcAddress:
        """The peer's address."""

    def _frame(self, control: Control, info: bytes = b"", segmented: bool = False) -> bytes:
        return HdlcFrame(self._remote(), self._local(), control, info, segmented).to_bytes()

    def _supervisory(self, kind: str, poll_final: bool = True) -> bytes:
        return self._frame(Control.supervisory(kind, self._vr, poll_final))

    def _i_frames(self, frames: list[tuple[int, bytes, bool]]) -> bytes:
        last = len(frames) - 1
        return b"".join(
            self._frame(Control.information(ns, self._vr, n == last), chunk, more) for n, (ns, chunk, more) in enumerate(frames)
        )

    def _send_window(self) -> bytes:
        if self._busy:
            return b""
        batch = []
        while self._pending and len(self._unacked) < self.parameters.window_tx:
            chunk, more = self._pending.popleft()
            batch.append((self._vs, chunk, more))
            self._unacked.append(batch[-1])
            self._vs = (self._vs + 1) % SEQUENCE_MODULUS
        return self._i_frames(batch)

    def _emit(self, data: bytes) -> None:
        if data:
            self._events.append(DataToSend(data))

    # --- frames in -----------------------------------------------------------------------

    def _reset_link(self) -> None:
        self._vs = 0  # V(S): N(S) of our next I-frame
        self._vr = 0  # V(R): N(S) expected from the peer
        self._va = 0  # N(S) of our oldest frame the peer has not acknowledged
        self._last_ns: int | None = None
        self._busy = False
        self._unacked: deque[tuple[int, bytes, bool]] = deque()
        self._pending: deque[tuple[bytes, bool]] = deque()
        self._reassembly = bytearray()

    def _negotiate(self, offered: HdlcParameters) -> HdlcParameters:
        """Our parameters bounded by the peer's statement; refused if nothing could be sent."""
        negotiated = self.settings.parameters.negotiate(offered)
        if min(negotiated.max_info_tx, negotiated.max_info_rx, negotiated.window_tx, negotiated.window_rx) < 1:
            raise DLMSFrameError(f"negotiation leaves unusable parameters {negotiated}", field="parameters")
        return negotiated

    def _require(self, state: str, action: str) -> None:
        if self.state != state:
            raise DLMSError(f"cannot {action}: the link is {self.state}", field="state")

    def _on_frame(self, frame: HdlcFrame) -> None:
        if not self._accepts(frame):
            self.ignored_frames += 1
            return
        handler = self._handlers().get(frame.kind)
        if handler is None:
            self._unexpected(frame)
        elif frame.kind in NUMBERED_FRAMES:
            # I, RR and RNR only mean something on a connected link, and acknowledge with N(R).
            if self.state != CONNECTED:
                self._unexpected(frame)
                return
            self._acknowledge(frame)
            handler(frame)
        else:
            handler(frame)

    def _handlers(self):
        return {"I": self._on_i, "RR": self._on_rr, "RNR": self._on_rnr, "UI": self._on_ui}

    @abstractmethod
    def _accepts(self, frame: HdlcFrame) -> bool:
        """Whether ``frame`` is addressed to this station by its peer."""

    def _unexpected(self, frame: HdlcFrame) -> None:
        self.ignored_frames += 1

    def _acknowledge(self, frame: HdlcFrame) -> None:
        """Take N(R) as the acknowledgement of our I-frames up to N(R) - 1."""
        nr = frame.control.nr
        outstanding = (self._vs - self._va) % SEQUENCE_MODULUS
        acked = (nr - self._va) % SEQUENCE_MODULUS
        if acked > outstanding:
            raise self._broken(
                frame,
                f"N(R) {nr} acknowledges frames never sent (next N(S) {self._vs}, oldest unacknowledged {self._va})",
                "N(R)",
                "Z",
            )
        for _ in range(acked):
            self._unacked.popleft()
        self._va = nr

    def _broken(self, frame: HdlcFrame, reason: str, field_name: str, frmr_bit: str) -> DLMSFrameError:
        self.state = FAILED
        return DLMSFrameError(reason, field=field_name)

    def _on_i(self, frame: HdlcFrame) -> None:
        ns, poll_final = frame.control.ns, frame.control.poll_final
        if ns != self._vr:
            # Discard it; with P/F the peer waits for us: RR with V(R) says what to send again.
            if poll_final:
                self._emit(self._supervisory("RR"))
            if ns == self._last_ns:
                self.duplicate_frames += 1
                return
            raise DLMSFrameError(f"N(S) {ns} received, {self._vr} expected", field="N(S)")
        self._last_ns = ns
        self._vr = (ns + 1) % SEQUENCE_MODULUS
        self._reassembly += frame.info
        if frame.segmented:
            if poll_final:
                self._emit(self._supervisory("RR"))
            return
        info = bytes(self._reassembly)
        self._reassembly.clear()
        self._events.append(ApduReceived(self._strip_llc(info)))
        # The peer's I-frame acknowledged ours: more of a queued APDU may go now.
        self._emit(self._send_window())

    def _on_rr(self, frame: HdlcFrame) -> None:
        self._busy = False
        if frame.control.poll_final and self._unacked:
            # The peer is waiting and has not got everything: go back to N(R).
            self._emit(self._i_frames(list(self._unacked)))
        elif self._pending:
            self._emit(self._send_window())
        elif frame.control.poll_final:
            self._answer_poll()

    @abstractmethod
    def _answer_poll(self) -> None:
        """The peer polled (RR with P/F) and nothing is waiting to be sent."""

    def _on_rnr(self, frame: HdlcFrame) -> None:
        self._busy = True
        self._events.append(PeerBusy(frame.control.nr))

    def _on_ui(self, frame: HdlcFrame) -> None:
        self._events.append(ApduReceived(self._strip_llc(frame.info), unnumbered=True))

    def _strip_llc(self, info: bytes) -> bytes:
        if info[:LLC_LENGTH] != self._llc_in:
            raise DLMSFrameError(
                f"information field starts with {info[:LLC_LENGTH].hex(' ')}, expected the LLC header {self._llc_in.hex(' ')}",
                offset=0,
                field="LLC",
            )
        return info[LLC_LENGTH:]


class HdlcConnection(_HdlcStation):
    """The client (primary station) side of an HDLC link to one server (IEC 62056-46).

    ``connect()`` → bytes of SNRM; then ``next_event()`` gives :class:`Connected` with the
    negotiated parameters (or :class:`Disconnected` if the server answers DM).
    ``send_apdu(apdu)`` → bytes of the first I-frames; replies come as :class:`ApduReceived`.
    ``disconnect()`` → bytes of DISC; then :class:`Disconnected`.
    """

    _llc_out = LLC_COMMAND
    _llc_in = LLC_RESPONSE

    def connect(self) -> bytes:
        """SNRM with the proposed parameters (omitted when they are all defaults). Also resets
        a link that is up: sequence numbers start again at 0."""
        self._reset_link()
        self._events.clear()
        self.state = CONNECTING
        proposal = self.settings.parameters
        info = b"" if proposal.is_default else proposal.to_info()
        return self._frame(Control.unnumbered("SNRM"), info)

    def disconnect(self) -> bytes:
        """DISC; the server answers UA (or DM if it was not connected)."""
        self._reset_link()
        self.state = DISCONNECTING
        return self._frame(Control.unnumbered("DISC"))

    def _local(self) -> HdlcAddress:
        return self.settings.client_address

    def _remote(self) -> HdlcAddress:
        return self.settings.server_address

    def _accepts(self, frame: HdlcFrame) -> bool:
        # On a multi-drop bus (and with a half-duplex echo) frames for others go by.
        return frame.destination == self._local() and frame.source == self._remote()

    def _handlers(self):
        return {**super()._handlers(), "UA": self._on_ua, "DM": self._on_dm, "FRMR": self._on_frmr}

    def _answer_poll(self) -> None:
        """Nothing: a server does not poll its client (6.4.4.1, normal response mode)."""

    def _on_ua(self, frame: HdlcFrame) -> None:
        if self.state == CONNECTING:
            try:
                negotiated = self._negotiate(HdlcParameters.from_info(frame.info))
            except DLMSFrameError:
                self.state = FAILED
                raise
            self.parameters = negotiated
            self.state = CONNECTED
            self._events.append(Connected(negotiated, frame.source))
        elif self.state == DISCONNECTING:
            self.state = DISCONNECTED
            self._events.append(Disconnected("UA"))
        else:
            self._unexpected(frame)

    def _on_dm(self, frame: HdlcFrame) -> None:
        if self.state == DISCONNECTED:
            self._unexpected(frame)
            return
        self._reset_link()
        self.state = DISCONNECTED
        self._events.append(Disconnected("DM"))

    def _on_frmr(self, frame: HdlcFrame) -> None:
        self.state = FAILED
        info = frame.info
        reasons = tuple(name for bit, name in FRMR_REASON_BITS.items() if len(info) >= 3 and info[2] & bit)
        self._events.append(FrameRejected(info[0] if info else None, reasons, info))


class HdlcServerConnection(_HdlcStation):
    """The server (secondary station) side of an HDLC link (IEC 62056-46): answers SNRM with
    UA and the negotiated parameters, DISC with UA (DM when not connected), reassembles
    requests, and sends replies with :meth:`send_apdu`, segment by segment as the client
    asks with RR. Frames to other server addresses are ignored. After a broken N(R) it
    queues an FRMR and keeps answering FRMR until the client sends SNRM or DISC."""

    _llc_out = LLC_RESPONSE
    _llc_in = LLC_COMMAND

    def __init__(self, settings: HdlcSettings | None = None) -> None:
        super().__init__(settings)
        self._client: HdlcAddress | None = None
        self._frmr = b""

    def _local(self) -> HdlcAddress:
        return self.settings.server_address

    def _remote(self) -> HdlcAddress:
        return self._client or self.settings.client_address

    def _accepts(self, frame: HdlcFrame) -> bool:
        if frame.destination != self._local():
            return False
        # While connected, only the connected client may talk; anyone may open a link.
        return self.state == DISCONNECTED or frame.kind == "SNRM" or frame.source == self._client

    def _handlers(self):
        return {**super()._handlers(), "SNRM": self._on_snrm, "DISC": self._on_disc}

    def _on_frame(self, frame: HdlcFrame) -> None:
        if self.state == FAILED and frame.kind not in ("SNRM", "DISC") and self._accepts(frame):
            if frame.control.poll_final:
                self._emit(self._frmr)
            return
        super()._on_frame(frame)

    def _on_snrm(self, frame: HdlcFrame) -> None:
        try:
            negotiated = self._negotiate(HdlcParameters.from_info(frame.info))
        except DLMSFrameError:
            # Parameters it cannot work with: the server stays disconnected (6.4.4.4.3.2).
            self._client = frame.source
            self._emit(self._frame(Control.unnumbered("DM")))
            raise
        self._reset_link()
        self._client = frame.source
        self.parameters = negotiated
        self.state = CONNECTED
        self._emit(self._frame(Control.unnumbered("UA"), negotiated.to_info()))
        self._events.append(Connected(negotiated, frame.source))

    def _on_disc(self, frame: HdlcFrame) -> None:
        if self.state == DISCONNECTED:
            self._emit(self._frame(Control.unnumbered("DM")))
            return
        self._reset_link()
        self.state = DISCONNECTED
        self._emit(self._frame(Control.unnumbered("UA")))
        self._events.append(Disconnected("DISC"))

    def _unexpected(self, frame: HdlcFrame) -> None:
        super()._unexpected(frame)
        # In the disconnected mode a server answers every command that polls it with DM.
        if self.state == DISCONNECTED and frame.control.poll_final:
            self._client = frame.source
            self._emit(self._frame(Control.unnumbered("DM")))
        elif frame.kind == "unknown" and frame.control.poll_final:
            self._emit(self._frame_reject(frame, "W"))

    def _answer_poll(self) -> None:
        self._emit(self._supervisory("RR"))

    def _broken(self, frame: HdlcFrame, reason: str, field_name: str, frmr_bit: str) -> DLMSFrameError:
        error = super()._broken(frame, reason, field_name, frmr_bit)
        self._frmr = self._frame_reject(frame, frmr_bit)
        self._emit(self._frmr)
        return error

    def _frame_reject(self, frame: HdlcFrame, reason: str) -> bytes:
        """FRMR with the rejected control, our V(S)/V(R) and the reason bit (ISO/IEC 13239)."""
        state = (self._vr << 5) | (self._vs << 1)
        info = bytes([frame.control.value, state, FRMR_BIT[reason]])
        return self._frame(Control.unnumbered("FRMR"), info)
