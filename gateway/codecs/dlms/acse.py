"""ACSE APDUs of DLMS/COSEM: AARQ, AARE, RLRQ, RLRE (IEC 62056-5-3 / Green Book 9.4, BER).

The ACSE APDUs are BER encoded (ISO/IEC 8650-1 as profiled by the Green Book, 9.4.4). The
fields DLMS uses are typed here; anything else that arrives (called-AP-title, AE
qualifiers, invocation identifiers, implementation-information) is kept in ``other`` as
(tag, content) so re-encoding loses nothing. Fields are encoded in tag order.

Real meters are sloppy with BER lengths (the gurux server sends long-form lengths where the
short form would do): the decoder accepts every valid definite length form, 1 to 4 length
bytes, and the elements in any order; the encoder writes the shortest form.

The ``user-information`` holds the xDLMS APDU: InitiateRequest/InitiateResponse, a
ConfirmedServiceError, or their ciphered forms (glo-/ded-initiate-request ...); an APDU of
any other kind is kept as raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from gateway.codecs.dlms.axdr import decode_length, encode_length
from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.xdlms import (
    DECODERS as XDLMS_DECODERS,
)
from gateway.codecs.dlms.xdlms import (
    CIPHERED_TAGS,
    CONFIRMED_SERVICE_ERROR,
    INITIATE_REQUEST,
    INITIATE_RESPONSE,
    CipheredApdu,
    ConfirmedServiceError,
    InitiateRequest,
    InitiateResponse,
)

AARQ_TAG = 0x60
AARE_TAG = 0x61
RLRQ_TAG = 0x62
RLRE_TAG = 0x63

#: OID 2.16.756.5.8 (joint-iso-ccitt country(16) country-name(756) identified-
#: organization(5) DLMS-UA(8)), BER content bytes; application contexts add 1.x,
#: authentication mechanisms 2.x (Green Book 9.4.2.2 and 9.4.2.3).
_DLMS_UA_OID = bytes.fromhex("6085740508")
_CONTEXT_ARC = 0x01
_MECHANISM_ARC = 0x02

#: application_context_name ids (Green Book 9.4.2.2.2).
APPLICATION_CONTEXTS: dict[int, str] = {
    1: "logical-name",
    2: "short-name",
    3: "logical-name-with-ciphering",
    4: "short-name-with-ciphering",
}
LOGICAL_NAME = 1
LOGICAL_NAME_WITH_CIPHERING = 3

#: authentication mechanism_name ids (Green Book 9.4.2.2.3).
MECHANISMS: dict[int, str] = {
    0: "lowest-level",
    1: "low-level (LLS)",
    2: "high-level (HLS, manufacturer specific)",
    3: "HLS-MD5",
    4: "HLS-SHA1",
    5: "HLS-GMAC",
    6: "HLS-SHA256",
    7: "HLS-ECDSA",
}
MECHANISM_NONE = 0
MECHANISM_LLS = 1
MECHANISM_HLS_GMAC = 5

#: Association-result (ISO/IEC 8650-1, Green Book 9.4.4).
ASSOCIATION_RESULTS: dict[int, str] = {0: "accepted", 1: "rejected-permanent", 2: "rejected-transient"}
ACCEPTED = 0

#: result-source-diagnostic CHOICE: 1 acse-service-user, 2 acse-service-provider.
RESULT_SOURCES: dict[int, str] = {1: "acse-service-user", 2: "acse-service-provider"}
ACSE_SERVICE_USER = 1
ACSE_SERVICE_PROVIDER = 2
DIAGNOSTICS: dict[int, dict[int, str]] = {
    ACSE_SERVICE_USER: {
        0: "null",
        1: "no-reason-given",
        2: "application-context-name-not-supported",
        3: "calling-AP-title-not-recognized",
        4: "calling-AP-invocation-identifier-not-recognized",
        5: "calling-AE-qualifier-not-recognized",
        6: "calling-AE-invocation-identifier-not-recognized",
        7: "called-AP-title-not-recognized",
        8: "called-AP-invocation-identifier-not-recognized",
        9: "called-AE-qualifier-not-recognized",
        10: "called-AE-invocation-identifier-not-recognized",
        11: "authentication-mechanism-name-not-recognised",
        12: "authentication-mechanism-name-required",
        13: "authentication-failure",
        14: "authentication-required",
    },
    ACSE_SERVICE_PROVIDER: {0: "null", 1: "no-reason-given", 2: "no-common-acse-version"},
}
AUTHENTICATION_REQUIRED = 14

#: Release-request-reason and Release-response-reason (ISO/IEC 8650-1).
RELEASE_REQUEST_REASONS: dict[int, str] = {0: "normal", 1: "urgent", 30: "user-defined"}
RELEASE_RESPONSE_REASONS: dict[int, str] = {0: "normal", 1: "not-finished", 30: "user-defined"}

#: ACSE-requirements BIT STRING with the authentication bit (bit 0) set: 7 unused bits, 0x80.
ACSE_REQUIREMENTS_AUTHENTICATION = b"\x07\x80"

# Context-specific tags of the fields (Green Book 9.4.4, ASN.1 of the ACSE APDUs).
_PROTOCOL_VERSION = 0x80
_APPLICATION_CONTEXT = 0xA1
_AARQ_CALLING_AP_TITLE = 0xA6
_AARQ_ACSE_REQUIREMENTS = 0x8A
_AARQ_MECHANISM = 0x8B
_AARQ_AUTHENTICATION = 0xAC
_AARE_RESULT = 0xA2
_AARE_DIAGNOSTIC = 0xA3
_AARE_RESPONDING_AP_TITLE = 0xA4
_AARE_ACSE_REQUIREMENTS = 0x88
_AARE_MECHANISM = 0x89
_AARE_AUTHENTICATION = 0xAA
_RELEASE_REASON = 0x80
_USER_INFORMATION = 0xBE
_OCTET_STRING = 0x04
_INTEGER = 0x02
_OBJECT_IDENTIFIER = 0x06

#: What the user-information may carry, decoded.
UserInformation = Union[InitiateRequest, InitiateResponse, ConfirmedServiceError, CipheredApdu, bytes]


def application_context_name(context: int) -> bytes:
    """The BER content of an application context name OID (1 = LN, 3 = LN ciphered)."""
    return _DLMS_UA_OID + bytes((_CONTEXT_ARC, context))


def mechanism_name(mechanism: int) -> bytes:
    """The BER content of an authentication mechanism name OID (1 = LLS, 5 = HLS-GMAC)."""
    return _DLMS_UA_OID + bytes((_MECHANISM_ARC, mechanism))


def _oid_id(oid: bytes | None, arc: int) -> int | None:
    if oid is None or len(oid) != 7 or oid[:5] != _DLMS_UA_OID or oid[5] != arc:
        return None
    return oid[6]


# --- BER --------------------------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(content)) + content


def _integer(value: int) -> bytes:
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8  # shortest two's complement
    return value.to_bytes(size, "big", signed=True)


def _elements(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """The (tag, content start, content end) of each element from pos to end."""
    out = []
    while pos < end:
        tag = buf[pos]
        if tag & 0x1F == 0x1F:
            raise DLMSFrameError(f"multi-byte BER tag 0x{tag:02X} is not used by ACSE", offset=pos, field="tag")
        length, start = decode_length(buf[:end], pos + 1, f"length of 0x{tag:02X}")
        stop = start + length
        if stop > end:
            raise DLMSFrameError(f"element 0x{tag:02X} runs past its container", offset=pos, field=f"0x{tag:02X}")
        out.append((tag, start, stop))
        pos = stop
    return out


def _single(buf: bytes, start: int, end: int, expected: int, field: str) -> bytes:
    """The content of the one element (of tag ``expected``) inside an EXPLICIT tag."""
    inner = _elements(buf, start, end)
    if len(inner) != 1 or inner[0][0] != expected:
        raise DLMSFrameError(f"{field} does not hold one element of tag 0x{expected:02X}", offset=start, field=field)
    return buf[inner[0][1] : inner[0][2]]


def _read_integer(content: bytes, offset: int, field: str) -> int:
    if not content or len(content) > 4:
        raise DLMSFrameError(f"{field} INTEGER of {len(content)} bytes", offset=offset, field=field)
    return int.from_bytes(content, "big", signed=True)


@dataclass(frozen=True, slots=True)
class AuthenticationValue:
    """Authentication-value CHOICE: ``choice`` 0 charstring (the LLS password or HLS
    challenge), 1 bitstring, 2 external, 3 other; ``value`` is the content as sent."""

    value: bytes = field(repr=False)
    choice: int = 0

    def _element(self) -> bytes:
        constructed = 0x20 if self.choice >= 2 else 0
        return _tlv(0x80 | constructed | self.choice, self.value)


def _read_authentication(buf: bytes, start: int, end: int, field: str) -> AuthenticationValue:
    inner = _elements(buf, start, end)
    if len(inner) != 1 or inner[0][0] & 0xC0 != 0x80 or inner[0][0] & 0x1F > 3:
        raise DLMSFrameError(f"{field} is not an Authentication-value", offset=start, field=field)
    tag, a, b = inner[0]
    return AuthenticationValue(buf[a:b], tag & 0x1F)


def _read_user_information(buf: bytes, start: int, end: int) -> UserInformation:
    raw = _single(buf, start, end, _OCTET_STRING, "user-information")
    if not raw:
        raise DLMSFrameError("empty user-information", offset=start, field="user-information")
    decoder = XDLMS_DECODERS.get(raw[0]) if raw[0] in _USER_INFORMATION_TAGS else None
    if decoder is None:
        return raw
    try:
        apdu, pos = decoder(raw, 0)
    except DLMSFrameError as exc:
        raise DLMSFrameError(f"user-information: {exc.reason}", offset=start + 2 + (exc.offset or 0),
                             field=exc.field) from None
    if pos != len(raw):
        raise DLMSFrameError(f"{len(raw) - pos} trailing bytes in user-information", offset=start + pos,
                             field="user-information")
    return apdu


_USER_INFORMATION_TAGS = {INITIATE_REQUEST, INITIATE_RESPONSE, CONFIRMED_SERVICE_ERROR} | {
    tag for tag, (plain, _) in CIPHERED_TAGS.items() if plain in (INITIATE_REQUEST, INITIATE_RESPONSE,
                                                                   CONFIRMED_SERVICE_ERROR)
}


def _user_information_bytes(value: UserInformation) -> bytes:
    raw = value if isinstance(value, bytes) else value.to_bytes()
    return _tlv(_USER_INFORMATION, _tlv(_OCTET_STRING, raw))


class _Fields:
    """The elements of one ACSE APDU by tag, consumed as the decoder reads them."""

    def __init__(self, buf: bytes, start: int, end: int) -> None:
        self.buf = buf
        self.items: dict[int, tuple[int, int]] = {}
        for tag, a, b in _elements(buf, start, end):
            if tag in self.items:
                raise DLMSFrameError(f"element 0x{tag:02X} appears twice", offset=a, field=f"0x{tag:02X}")
            self.items[tag] = (a, b)

    def pop(self, tag: int) -> tuple[int, int] | None:
        return self.items.pop(tag, None)

    def content(self, tag: int) -> bytes | None:
        span = self.pop(tag)
        return None if span is None else self.buf[span[0] : span[1]]

    def explicit(self, tag: int, inner: int, field: str) -> bytes | None:
        span = self.pop(tag)
        return None if span is None else _single(self.buf, span[0], span[1], inner, field)

    def integer(self, tag: int, field: str) -> int | None:
        span = self.pop(tag)
        return None if span is None else _read_integer(self.buf[span[0] : span[1]], span[0], field)

    def authentication(self, tag: int, field: str) -> AuthenticationValue | None:
        span = self.pop(tag)
        return None if span is None else _read_authentication(self.buf, span[0], span[1], field)

    def user_information(self) -> UserInformation | None:
        span = self.pop(_USER_INFORMATION)
        return None if span is None else _read_user_information(self.buf, span[0], span[1])

    def other(self) -> tuple[tuple[int, bytes], ...]:
        return tuple((tag, self.buf[a:b]) for tag, (a, b) in self.items.items())


def _encode(apdu_tag: int, parts: list[tuple[int, bytes | None]], other: tuple[tuple[int, bytes], ...]) -> bytes:
    """Encode present (tag, element bytes) parts and the kept ``other`` elements in tag order."""
    elements = [(tag, element) for tag, element in parts if element is not None]
    elements += [(tag, _tlv(tag, content)) for tag, content in other]
    elements.sort(key=lambda item: item[0] & 0x1F)
    return _tlv(apdu_tag, b"".join(element for _, element in elements))


def _opt(tag: int, content: bytes | None) -> bytes | None:
    return None if content is None else _tlv(tag, content)


def _opt_explicit(tag: int, inner: int, content: bytes | None) -> bytes | None:
    return None if content is None else _tlv(tag, _tlv(inner, content))


# --- AARQ / AARE / RLRQ / RLRE ------------------------------------------------------------


class _Names:
    """The DLMS ids of an association APDU's application context and mechanism OIDs."""

    __slots__ = ()

    @property
    def context_id(self) -> int | None:
        """1 LN, 2 SN, 3 LN with ciphering, 4 SN with ciphering (None: not a DLMS UA OID)."""
        return _oid_id(self.application_context_name, _CONTEXT_ARC)

    @property
    def mechanism_id(self) -> int | None:
        """0..7 as in :data:`MECHANISMS` (None: absent or not a DLMS UA OID)."""
        return _oid_id(self.mechanism_name, _MECHANISM_ARC)


@dataclass(frozen=True, slots=True)
class AARQ(_Names):
    """A-ASSOCIATE request (Green Book 9.4.4, AARQ-apdu).

    ``application_context_name`` and ``mechanism_name`` are OID contents (see
    :func:`application_context_name`, :func:`mechanism_name`); ``calling_ap_title`` is the
    client's system title; the authentication value (LLS password, HLS challenge) is never
    shown in ``repr``."""

    application_context_name: bytes = field(default_factory=lambda: application_context_name(LOGICAL_NAME))
    user_information: UserInformation | None = None
    calling_ap_title: bytes | None = None
    mechanism_name: bytes | None = None
    calling_authentication_value: AuthenticationValue | None = field(default=None, repr=False)
    sender_acse_requirements: bytes | None = None
    protocol_version: bytes | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    TAG = AARQ_TAG

    def to_bytes(self) -> bytes:
        auth = self.calling_authentication_value
        return _encode(
            self.TAG,
            [
                (_PROTOCOL_VERSION, _opt(_PROTOCOL_VERSION, self.protocol_version)),
                (_APPLICATION_CONTEXT, _opt_explicit(_APPLICATION_CONTEXT, _OBJECT_IDENTIFIER,
                                                     self.application_context_name)),
                (_AARQ_CALLING_AP_TITLE, _opt_explicit(_AARQ_CALLING_AP_TITLE, _OCTET_STRING, self.calling_ap_title)),
                (_AARQ_ACSE_REQUIREMENTS, _opt(_AARQ_ACSE_REQUIREMENTS, self.sender_acse_requirements)),
                (_AARQ_MECHANISM, _opt(_AARQ_MECHANISM, self.mechanism_name)),
                (_AARQ_AUTHENTICATION, None if auth is None else _tlv(_AARQ_AUTHENTICATION, auth._element())),
                (_USER_INFORMATION, None if self.user_information is None
                 else _user_information_bytes(self.user_information)),
            ],
            self.other,
        )


@dataclass(frozen=True, slots=True)
class AARE(_Names):
    """A-ASSOCIATE response (Green Book 9.4.4, AARE-apdu): ``result`` (see
    :data:`ASSOCIATION_RESULTS`), ``result_source`` and ``diagnostic`` (see
    :data:`DIAGNOSTICS`), the server's system title in ``responding_ap_title`` and, for
    HLS, its challenge in ``responding_authentication_value``."""

    result: int
    result_source: int
    diagnostic: int
    application_context_name: bytes = field(default_factory=lambda: application_context_name(LOGICAL_NAME))
    user_information: UserInformation | None = None
    responding_ap_title: bytes | None = None
    mechanism_name: bytes | None = None
    responding_authentication_value: AuthenticationValue | None = field(default=None, repr=False)
    responder_acse_requirements: bytes | None = None
    protocol_version: bytes | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    TAG = AARE_TAG

    @property
    def accepted(self) -> bool:
        return self.result == ACCEPTED

    @property
    def description(self) -> str:
        """``accepted`` or e.g. ``rejected-permanent (acse-service-user: authentication-failure)``."""
        result = ASSOCIATION_RESULTS.get(self.result, f"result-{self.result}")
        source = RESULT_SOURCES.get(self.result_source, f"source-{self.result_source}")
        reason = DIAGNOSTICS.get(self.result_source, {}).get(self.diagnostic, f"diagnostic-{self.diagnostic}")
        return f"{result} ({source}: {reason})"

    def to_bytes(self) -> bytes:
        auth = self.responding_authentication_value
        diagnostic = _tlv(0xA0 | self.result_source, _tlv(_INTEGER, _integer(self.diagnostic)))
        return _encode(
            self.TAG,
            [
                (_PROTOCOL_VERSION, _opt(_PROTOCOL_VERSION, self.protocol_version)),
                (_APPLICATION_CONTEXT, _opt_explicit(_APPLICATION_CONTEXT, _OBJECT_IDENTIFIER,
                                                     self.application_context_name)),
                (_AARE_RESULT, _opt_explicit(_AARE_RESULT, _INTEGER, _integer(self.result))),
                (_AARE_DIAGNOSTIC, _tlv(_AARE_DIAGNOSTIC, diagnostic)),
                (_AARE_RESPONDING_AP_TITLE, _opt_explicit(_AARE_RESPONDING_AP_TITLE, _OCTET_STRING,
                                                          self.responding_ap_title)),
                (_AARE_ACSE_REQUIREMENTS, _opt(_AARE_ACSE_REQUIREMENTS, self.responder_acse_requirements)),
                (_AARE_MECHANISM, _opt(_AARE_MECHANISM, self.mechanism_name)),
                (_AARE_AUTHENTICATION, None if auth is None else _tlv(_AARE_AUTHENTICATION, auth._element())),
                (_USER_INFORMATION, None if self.user_information is None
                 else _user_information_bytes(self.user_information)),
            ],
            self.other,
        )


@dataclass(frozen=True, slots=True)
class RLRQ:
    """A-RELEASE request (Green Book 9.4.4): ``reason`` (see :data:`RELEASE_REQUEST_REASONS`);
    with ciphering the user-information may carry a ciphered InitiateRequest."""

    reason: int | None = 0
    user_information: UserInformation | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    TAG = RLRQ_TAG

    def to_bytes(self) -> bytes:
        return _release_bytes(self)


@dataclass(frozen=True, slots=True)
class RLRE:
    """A-RELEASE response (Green Book 9.4.4): ``reason`` (see :data:`RELEASE_RESPONSE_REASONS`)."""

    reason: int | None = 0
    user_information: UserInformation | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    TAG = RLRE_TAG

    def to_bytes(self) -> bytes:
        return _release_bytes(self)


def _release_bytes(apdu: RLRQ | RLRE) -> bytes:
    reason = None if apdu.reason is None else _tlv(_RELEASE_REASON, _integer(apdu.reason))
    user = None if apdu.user_information is None else _user_information_bytes(apdu.user_information)
    return _encode(apdu.TAG, [(_RELEASE_REASON, reason), (_USER_INFORMATION, user)], apdu.other)


def _decode_aarq(f: _Fields) -> AARQ:
    context = f.explicit(_APPLICATION_CONTEXT, _OBJECT_IDENTIFIER, "application-context-name")
    if context is None:
        raise DLMSFrameError("AARQ without application-context-name", offset=0, field="application-context-name")
    return AARQ(
        application_context_name=context,
        protocol_version=f.content(_PROTOCOL_VERSION),
        calling_ap_title=f.explicit(_AARQ_CALLING_AP_TITLE, _OCTET_STRING, "calling-AP-title"),
        sender_acse_requirements=f.content(_AARQ_ACSE_REQUIREMENTS),
        mechanism_name=f.content(_AARQ_MECHANISM),
        calling_authentication_value=f.authentication(_AARQ_AUTHENTICATION, "calling-authentication-value"),
        user_information=f.user_information(),
        other=f.other(),
    )


def _decode_aare(f: _Fields) -> AARE:
    context = f.explicit(_APPLICATION_CONTEXT, _OBJECT_IDENTIFIER, "application-context-name")
    result = f.explicit(_AARE_RESULT, _INTEGER, "result")
    span = f.pop(_AARE_DIAGNOSTIC)
    if context is None or result is None or span is None:
        raise DLMSFrameError("AARE without application-context-name, result or result-source-diagnostic",
                             offset=0, field="AARE")
    inner = _elements(f.buf, span[0], span[1])
    if len(inner) != 1 or inner[0][0] not in (0xA1, 0xA2):
        raise DLMSFrameError("result-source-diagnostic is not acse-service-user or -provider", offset=span[0],
                             field="result-source-diagnostic")
    source, a, b = inner[0]
    diagnostic = _read_integer(_single(f.buf, a, b, _INTEGER, "result-source-diagnostic"), a,
                               "result-source-diagnostic")
    return AARE(
        result=_read_integer(result, 0, "result"),
        result_source=source & 0x1F,
        diagnostic=diagnostic,
        application_context_name=context,
        protocol_version=f.content(_PROTOCOL_VERSION),
        responding_ap_title=f.explicit(_AARE_RESPONDING_AP_TITLE, _OCTET_STRING, "responding-AP-title"),
        responder_acse_requirements=f.content(_AARE_ACSE_REQUIREMENTS),
        mechanism_name=f.content(_AARE_MECHANISM),
        responding_authentication_value=f.authentication(_AARE_AUTHENTICATION, "responding-authentication-value"),
        user_information=f.user_information(),
        other=f.other(),
    )


def _decode_release(cls):
    def decode(f: _Fields):
        reason = f.integer(_RELEASE_REASON, "reason")
        return cls(reason, f.user_information(), f.other())

    return decode


_ACSE = {
    AARQ_TAG: _decode_aarq,
    AARE_TAG: _decode_aare,
    RLRQ_TAG: _decode_release(RLRQ),
    RLRE_TAG: _decode_release(RLRE),
}


def _decode_acse(buf: bytes, pos: int):
    tag = buf[pos]
    length, start = decode_length(buf, pos + 1, "ACSE length")
    end = start + length
    if end > len(buf):
        raise DLMSFrameError(f"ACSE APDU announces {length} bytes, {len(buf) - start} present", offset=pos + 1,
                             field="length")
    return _ACSE[tag](_Fields(buf, start, end)), end


#: tag -> decoder(buf, pos) -> (APDU, position after it)
DECODERS = {tag: _decode_acse for tag in _ACSE}
