"""The DLMS/COSEM codec's exceptions (IEC 62056-46 HDLC, -47 wrapper, -21 mode E, -5-3/-6-2 APDUs).

One family for the whole protocol: callers catch :class:`DLMSError`. Bytes that cannot be
decoded raise :class:`DLMSFrameError`; a message refused for security (failed GCM tag or
GMAC, replayed invocation counter, plaintext where ciphering is required) raises
:class:`DLMSSecurityError`; a message that is well formed but not allowed in the current
state of an association raises :class:`DLMSStateError`.

A *well-formed* negative answer from the peer (a data-access-result other than success, an
EXCEPTION-Response, a ConfirmedServiceError, a rejected AARE) is data, not an exception:
the APDU decoders and the association return it as a typed value.
"""

from __future__ import annotations

from gateway.errors import FrameError, ProtocolError, SecurityError


class DLMSError(ProtocolError):
    """Base of every DLMS/COSEM codec error."""


class DLMSFrameError(DLMSError, FrameError):
    """A frame, wrapper message, APDU or A-XDR/BER structure that is malformed: truncated,
    trailing bytes, unknown tag, bad length, bad check sequence."""


class DLMSSecurityError(DLMSError, SecurityError):
    """Refused for security: GCM tag or HLS-GMAC check failed, invocation counter replayed,
    plaintext where the association requires ciphering, no key for the security header."""


class DLMSStateError(DLMSError):
    """An APDU that is valid on its own but not in the association's current state (a
    response nobody asked for, a wrong invoke-id, a request before the association is
    established)."""
