"""Events of the DLMS/COSEM lower layers (HDLC, TCP/UDP wrapper, IEC 62056-21 opening).

A sans-IO connection returns these from ``next_event()``: one set for every link, so a
collector drives HDLC over a serial line and the wrapper over TCP with the same loop::

    transport.write(conn.send_apdu(apdu))
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            conn.receive_data(await transport.read())   # inside asyncio.timeout(...)
        elif isinstance(event, DataToSend):
            transport.write(event.data)                  # e.g. HDLC RR asking for the next segment
        elif isinstance(event, ApduReceived):
            return event.apdu
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.dlms.hdlc import HdlcAddress, HdlcParameters


@dataclass(frozen=True, slots=True)
class NeedData:
    """Nothing more can be decoded from what was received: read more bytes."""


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class DataToSend:
    """Bytes the link must send now because of what it received: an HDLC RR asking for the
    next segment (IEC 62056-46 6.4.4.4.3.4), the next window of a segmented APDU, a UA to a
    SNRM or DISC (server side), a DM."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Connected:
    """The data link is up (HDLC: UA received for our SNRM, or SNRM accepted by a server).

    ``parameters`` are the negotiated values from this station's point of view (6.4.4.4.3.2):
    ``max_info_tx`` is the largest information field it may send, ``window_tx`` how many
    I-frames it may send before waiting for an acknowledgement. ``peer`` is the other station."""

    parameters: HdlcParameters
    peer: HdlcAddress


@dataclass(frozen=True, slots=True)
class ApduReceived:
    """A complete APDU, reassembled from its segments, LLC header removed. ``unnumbered`` is
    True when it came in a UI frame (a push such as DataNotification, not a reply)."""

    apdu: bytes
    unnumbered: bool = False


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The data link is down. ``response`` names the frame that said so: ``UA`` (our DISC was
    accepted), ``DM`` (the peer was not connected, or refused our SNRM), ``DISC`` (the peer
    disconnected us; server side)."""

    response: str


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """The peer sent FRMR (IEC 62056-46 6.4.3.4, ISO/IEC 13239 5.5.3.4.3): it cannot accept a
    frame we sent. The link must be reset (SNRM) or disconnected. ``reasons`` name the bits set
    (``W`` invalid control, ``X`` information not permitted, ``Y`` information too long, ``Z``
    invalid N(R)); ``info`` keeps the whole FRMR information field."""

    rejected_control: int | None
    reasons: tuple[str, ...]
    info: bytes


@dataclass(frozen=True, slots=True)
class PeerBusy:
    """The peer sent RNR: it acknowledged up to ``nr`` but cannot take more I-frames now.
    Poll it later (``poll()``) to resume."""

    nr: int


LinkEvent = NeedData | DataToSend | Connected | ApduReceived | Disconnected | FrameRejected | PeerBusy
