"""xDLMS APDUs around the services: initiate, errors, ciphering envelopes, block transfer.

IEC 62056-5-3 (Green Book DLMS UA 1000-2 ed. 9, 9.5 "Abstract syntax of COSEM APDUs"):

* xDLMS-Initiate.request / .response (carried in the AARQ/AARE user-information) and the
  conformance block that negotiates the services;
* ConfirmedServiceError and EXCEPTION-Response: well-formed negative answers, data;
* the ciphered APDUs: service-specific ``glo-``/``ded-`` (tag, length, security header,
  ciphered content) and ``general-glo-ciphering``/``general-ded-ciphering`` (with the
  sender's system title); :mod:`~gateway.codecs.dlms.security` ciphers and deciphers them;
* general-block-transfer (GBT, 9.3.6.4).

Every class has ``to_bytes()``; :func:`gateway.codecs.dlms.apdu.decode_apdu` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.codecs.dlms.axdr import (
    counted,
    read_present,
    read_u8,
    read_u16,
    read_u32,
    take,
    take_counted,
)
from gateway.codecs.dlms.errors import DLMSFrameError

# --- conformance block ----------------------------------------------------------------

#: Conformance bit number -> name (Green Book 9.4.6.1, ``Conformance ::= [APPLICATION 31]
#: IMPLICIT BIT STRING (SIZE(24))``); bit 0 is the most significant bit of the first byte.
CONFORMANCE_BITS: dict[int, str] = {
    0: "reserved-zero",
    1: "general-protection",
    2: "general-block-transfer",
    3: "read",
    4: "write",
    5: "unconfirmed-write",
    6: "delta-value-encoding",
    7: "reserved-seven",
    8: "attribute0-supported-with-set",
    9: "priority-mgmt-supported",
    10: "attribute0-supported-with-get",
    11: "block-transfer-with-get-or-read",
    12: "block-transfer-with-set-or-write",
    13: "block-transfer-with-action",
    14: "multiple-references",
    15: "information-report",
    16: "data-notification",
    17: "access",
    18: "parameterized-access",
    19: "get",
    20: "set",
    21: "selective-access",
    22: "event-notification",
    23: "action",
}
CONFORMANCE_BY_NAME: dict[str, int] = {name: 1 << (23 - bit) for bit, name in CONFORMANCE_BITS.items()}

_CONFORMANCE_HEADER = bytes.fromhex("5F1F0400")  # [APPLICATION 31], length 4, 0 unused bits


def conformance(*names: str) -> int:
    """The 24-bit conformance block with the named bits set."""
    value = 0
    for name in names:
        if name not in CONFORMANCE_BY_NAME:
            raise ValueError(f"unknown conformance bit {name!r}")
        value |= CONFORMANCE_BY_NAME[name]
    return value


def conformance_names(value: int) -> tuple[str, ...]:
    """The names of the bits set in a 24-bit conformance block, in bit order."""
    return tuple(name for bit, name in CONFORMANCE_BITS.items() if value & (1 << (23 - bit)))


def _read_conformance(buf: bytes, pos: int) -> tuple[int, int]:
    header, pos = take(buf, pos, 4, "conformance")
    if header != _CONFORMANCE_HEADER:
        raise DLMSFrameError(f"conformance header {header.hex()} is not 5f1f0400", offset=pos - 4, field="conformance")
    raw, pos = take(buf, pos, 3, "conformance")
    return int.from_bytes(raw, "big"), pos


def _conformance_bytes(value: int) -> bytes:
    return _CONFORMANCE_HEADER + value.to_bytes(3, "big")


def _optional_u8(value: int | None, signed: bool = False) -> bytes:
    if value is None:
        return b"\x00"
    return bytes((1,)) + value.to_bytes(1, "big", signed=signed)


def _read_optional_u8(buf: bytes, pos: int, field: str, signed: bool = False) -> tuple[int | None, int]:
    present, pos = read_present(buf, pos, field)
    if not present:
        return None, pos
    raw, pos = take(buf, pos, 1, field)
    return int.from_bytes(raw, "big", signed=signed), pos


# --- initiate ---------------------------------------------------------------------------

INITIATE_REQUEST = 0x01
INITIATE_RESPONSE = 0x08
CONFIRMED_SERVICE_ERROR = 0x0E
EXCEPTION_RESPONSE = 0xD8
GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC
GENERAL_BLOCK_TRANSFER = 0xE0

#: The VAA name of a logical-name association (Green Book 9.4.6.1: 0x0007 for LN,
#: 0xFA00 for SN referencing).
VAA_NAME_LN = 0x0007
VAA_NAME_SN = 0xFA00


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    """xDLMS-Initiate.request (Green Book 9.5, ``InitiateRequest``).

    ``response_allowed`` ``None`` means the DEFAULT (TRUE) was used on the wire."""

    proposed_conformance: int
    client_max_receive_pdu_size: int
    proposed_dlms_version_number: int = 6
    dedicated_key: bytes | None = field(default=None, repr=False)
    response_allowed: bool | None = None
    proposed_quality_of_service: int | None = None

    TAG = INITIATE_REQUEST

    def to_bytes(self) -> bytes:
        out = bytearray((self.TAG,))
        out += b"\x00" if self.dedicated_key is None else b"\x01" + counted(self.dedicated_key)
        out += b"\x00" if self.response_allowed is None else bytes((1, 1 if self.response_allowed else 0))
        out += _optional_u8(self.proposed_quality_of_service, signed=True)
        out.append(self.proposed_dlms_version_number)
        out += _conformance_bytes(self.proposed_conformance)
        out += self.client_max_receive_pdu_size.to_bytes(2, "big")
        return bytes(out)


def _decode_initiate_request(buf: bytes, pos: int) -> tuple[InitiateRequest, int]:
    present, pos = read_present(buf, pos + 1, "dedicated-key")
    key = None
    if present:
        key, pos = take_counted(buf, pos, "dedicated-key")
    present, pos = read_present(buf, pos, "response-allowed")
    allowed = None
    if present:
        flag, pos = read_u8(buf, pos, "response-allowed")
        allowed = flag != 0
    qos, pos = _read_optional_u8(buf, pos, "proposed-quality-of-service", signed=True)
    version, pos = read_u8(buf, pos, "proposed-dlms-version-number")
    conf, pos = _read_conformance(buf, pos)
    size, pos = read_u16(buf, pos, "client-max-receive-pdu-size")
    return InitiateRequest(conf, size, version, key, allowed, qos), pos


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    """xDLMS-Initiate.response (Green Book 9.5, ``InitiateResponse``)."""

    negotiated_conformance: int
    server_max_receive_pdu_size: int
    negotiated_dlms_version_number: int = 6
    vaa_name: int = VAA_NAME_LN
    negotiated_quality_of_service: int | None = None

    TAG = INITIATE_RESPONSE

    def to_bytes(self) -> bytes:
        return (
            bytes((self.TAG,))
            + _optional_u8(self.negotiated_quality_of_service, signed=True)
            + bytes((self.negotiated_dlms_version_number,))
            + _conformance_bytes(self.negotiated_conformance)
            + self.server_max_receive_pdu_size.to_bytes(2, "big")
            + self.vaa_name.to_bytes(2, "big", signed=self.vaa_name < 0)
        )


def _decode_initiate_response(buf: bytes, pos: int) -> tuple[InitiateResponse, int]:
    qos, pos = _read_optional_u8(buf, pos + 1, "negotiated-quality-of-service", signed=True)
    version, pos = read_u8(buf, pos, "negotiated-dlms-version-number")
    conf, pos = _read_conformance(buf, pos)
    size, pos = read_u16(buf, pos, "server-max-receive-pdu-size")
    vaa, pos = read_u16(buf, pos, "vaa-name")
    return InitiateResponse(conf, size, version, vaa, qos), pos


# --- ConfirmedServiceError ---------------------------------------------------------------

#: ConfirmedServiceError CHOICE: which service failed (Green Book 9.5).
CONFIRMED_SERVICES: dict[int, str] = {
    1: "initiateError",
    2: "getStatus",
    3: "getNameList",
    4: "getVariableAttribute",
    5: "read",
    6: "write",
    7: "getDataSetAttribute",
    8: "getTIAttribute",
    9: "changeScope",
    10: "start",
    11: "stop",
    12: "resume",
    13: "makeUsable",
    14: "initiateLoad",
    15: "loadSegment",
    16: "terminateLoad",
    17: "initiateUpLoad",
    18: "upLoadSegment",
    19: "terminateUpLoad",
}

#: ServiceError CHOICE -> (class name, {value: name}) (Green Book 9.5, ``ServiceError``).
SERVICE_ERRORS: dict[int, tuple[str, dict[int, str]]] = {
    0: ("application-reference", {0: "other", 1: "time-elapsed", 2: "application-unreachable",
                                  3: "application-reference-invalid", 4: "application-context-unsupported",
                                  5: "provider-communication-error", 6: "deciphering-error"}),
    1: ("hardware-resource", {0: "other", 1: "memory-unavailable", 2: "processor-resource-unavailable",
                              3: "mass-storage-unavailable", 4: "other-resource-unavailable"}),
    2: ("vde-state-error", {0: "other", 1: "no-dlms-context", 2: "loading-data-set", 3: "status-nochange",
                            4: "status-inoperable"}),
    3: ("service", {0: "other", 1: "pdu-size", 2: "service-unsupported"}),
    4: ("definition", {0: "other", 1: "object-undefined", 2: "object-class-inconsistent",
                       3: "object-attribute-inconsistent"}),
    5: ("access", {0: "other", 1: "scope-of-access-violated", 2: "object-access-violated", 3: "hardware-fault",
                   4: "object-unavailable"}),
    6: ("initiate", {0: "other", 1: "dlms-version-too-low", 2: "incompatible-conformance",
                     3: "pdu-size-too-short", 4: "refused-by-the-VDE-Handler"}),
    7: ("load-data-set", {0: "other", 1: "primitive-out-of-sequence", 2: "not-loadable",
                          3: "dataset-size-too-large", 4: "not-awaited-segment", 5: "interpretation-failure",
                          6: "storage-failure", 7: "data-set-not-ready"}),
    8: ("task", {0: "other", 1: "no-remote-control", 2: "ti-stopped", 3: "ti-running", 4: "ti-unusable"}),
    9: ("other-error", {}),
}


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """ConfirmedServiceError (Green Book 9.5): ``service`` that failed, the ServiceError
    ``error_class`` and its ``error`` value; names from :data:`CONFIRMED_SERVICES` and
    :data:`SERVICE_ERRORS`. A well-formed negative answer: data, not an exception."""

    service: int
    error_class: int
    error: int

    TAG = CONFIRMED_SERVICE_ERROR

    @property
    def description(self) -> str:
        service = CONFIRMED_SERVICES.get(self.service, f"service-{self.service}")
        class_name, values = SERVICE_ERRORS.get(self.error_class, (f"class-{self.error_class}", {}))
        return f"{service}: {class_name} {values.get(self.error, self.error)}"

    def to_bytes(self) -> bytes:
        return bytes((self.TAG, self.service, self.error_class, self.error))


def _decode_confirmed_service_error(buf: bytes, pos: int) -> tuple[ConfirmedServiceError, int]:
    raw, pos = take(buf, pos + 1, 3, "ConfirmedServiceError")
    return ConfirmedServiceError(*raw), pos


# --- EXCEPTION-Response ------------------------------------------------------------------

#: EXCEPTION-Response state-error (Green Book 9.5).
STATE_ERRORS: dict[int, str] = {1: "service-not-allowed", 2: "service-unknown"}
#: EXCEPTION-Response service-error (Green Book 9.5).
EXCEPTION_SERVICE_ERRORS: dict[int, str] = {
    1: "operation-not-possible",
    2: "service-not-supported",
    3: "other-reason",
    4: "pdu-too-long",
    5: "deciphering-error",
    6: "invocation-counter-error",
}
#: The service-error that carries the server's expected invocation counter (Unsigned32).
INVOCATION_COUNTER_ERROR = 6


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """EXCEPTION-Response [216] (Green Book 9.5): the server could not process an APDU.
    ``invocation_counter`` is present only with service-error invocation-counter-error."""

    state_error: int
    service_error: int
    invocation_counter: int | None = None

    TAG = EXCEPTION_RESPONSE

    @property
    def description(self) -> str:
        state = STATE_ERRORS.get(self.state_error, f"state-error-{self.state_error}")
        service = EXCEPTION_SERVICE_ERRORS.get(self.service_error, f"service-error-{self.service_error}")
        return f"{state}, {service}"

    def to_bytes(self) -> bytes:
        out = bytes((self.TAG, self.state_error, self.service_error))
        if self.service_error == INVOCATION_COUNTER_ERROR:
            out += (self.invocation_counter or 0).to_bytes(4, "big")
        return out


def _decode_exception_response(buf: bytes, pos: int) -> tuple[ExceptionResponse, int]:
    raw, pos = take(buf, pos + 1, 2, "EXCEPTION-Response")
    counter = None
    if raw[1] == INVOCATION_COUNTER_ERROR:
        counter, pos = read_u32(buf, pos, "invocation-counter")
    return ExceptionResponse(raw[0], raw[1], counter), pos


# --- ciphered APDUs ----------------------------------------------------------------------

#: Plain APDU tag -> (glo tag, ded tag) of its service-specific ciphered form (Green Book
#: 9.5: glo-/ded- xDLMS APDUs). Both SN and LN services are listed.
CIPHERED_FORMS: dict[int, tuple[int, int]] = {
    0x01: (0x21, 0x41),  # initiateRequest
    0x05: (0x25, 0x45),  # readRequest
    0x06: (0x26, 0x46),  # writeRequest
    0x08: (0x28, 0x48),  # initiateResponse
    0x0C: (0x2C, 0x4C),  # readResponse
    0x0D: (0x2D, 0x4D),  # writeResponse
    0x0E: (0x2E, 0x4E),  # confirmedServiceError
    0x16: (0x36, 0x56),  # unconfirmedWriteRequest
    0x18: (0x38, 0x58),  # informationReportRequest
    0xC0: (0xC8, 0xD0),  # get-request
    0xC1: (0xC9, 0xD1),  # set-request
    0xC2: (0xCA, 0xD2),  # event-notification-request
    0xC3: (0xCB, 0xD3),  # action-request
    0xC4: (0xCC, 0xD4),  # get-response
    0xC5: (0xCD, 0xD5),  # set-response
    0xC7: (0xCF, 0xD7),  # action-response
}
#: Ciphered tag -> (plain tag, dedicated key?).
CIPHERED_TAGS: dict[int, tuple[int, bool]] = {}
for _plain, (_glo, _ded) in CIPHERED_FORMS.items():
    CIPHERED_TAGS[_glo] = (_plain, False)
    CIPHERED_TAGS[_ded] = (_plain, True)

#: Security header: security control byte + invocation counter (Green Book 9.2.7.2.4).
SECURITY_HEADER_SIZE = 5


@dataclass(frozen=True, slots=True)
class CipheredApdu:
    """A service-specific ciphered APDU (``glo-get-request`` ... ``ded-action-response``):
    ``tag`` then the ciphered content: security control, invocation counter and
    ``ciphertext`` (which ends with the authentication tag when the SC says so)."""

    tag: int
    security_control: int
    invocation_counter: int
    ciphertext: bytes

    @property
    def plain_tag(self) -> int:
        """The tag of the APDU inside (0xC0 for glo-get-request)."""
        return CIPHERED_TAGS[self.tag][0]

    @property
    def dedicated(self) -> bool:
        """True for ``ded-`` APDUs (ciphered with the dedicated key)."""
        return CIPHERED_TAGS[self.tag][1]

    @property
    def content(self) -> bytes:
        """The ciphered content: SC ‖ IC ‖ ciphertext (‖ tag)."""
        return bytes((self.security_control,)) + self.invocation_counter.to_bytes(4, "big") + self.ciphertext

    def to_bytes(self) -> bytes:
        return bytes((self.tag,)) + counted(self.content)


def _read_content(buf: bytes, pos: int) -> tuple[int, int, bytes, int]:
    content, end = take_counted(buf, pos, "ciphered-content")
    if len(content) < SECURITY_HEADER_SIZE:
        raise DLMSFrameError("ciphered content shorter than its security header", offset=pos, field="ciphered-content")
    return content[0], int.from_bytes(content[1:5], "big"), content[5:], end


def _decode_ciphered(buf: bytes, pos: int) -> tuple[CipheredApdu, int]:
    sc, ic, ciphertext, end = _read_content(buf, pos + 1)
    return CipheredApdu(buf[pos], sc, ic, ciphertext), end


@dataclass(frozen=True, slots=True)
class _GeneralCiphering:
    system_title: bytes
    security_control: int
    invocation_counter: int
    ciphertext: bytes

    TAG = 0
    dedicated = False

    @property
    def content(self) -> bytes:
        """The ciphered content: SC ‖ IC ‖ ciphertext (‖ tag)."""
        return bytes((self.security_control,)) + self.invocation_counter.to_bytes(4, "big") + self.ciphertext

    def to_bytes(self) -> bytes:
        return bytes((self.TAG,)) + counted(self.system_title) + counted(self.content)


@dataclass(frozen=True, slots=True)
class GeneralGloCiphering(_GeneralCiphering):
    """general-glo-ciphering [219] (Green Book 9.5): the sender's ``system_title`` and the
    ciphered content (any xDLMS APDU inside, global key)."""

    TAG = GENERAL_GLO_CIPHERING


@dataclass(frozen=True, slots=True)
class GeneralDedCiphering(_GeneralCiphering):
    """general-ded-ciphering [220]: as general-glo-ciphering, with the dedicated key."""

    TAG = GENERAL_DED_CIPHERING
    dedicated = True


def _decode_general(cls):
    def decode(buf: bytes, pos: int):
        title, pos = take_counted(buf, pos + 1, "system-title")
        sc, ic, ciphertext, pos = _read_content(buf, pos)
        return cls(title, sc, ic, ciphertext), pos

    return decode


# --- general-block-transfer ----------------------------------------------------------------

GBT_LAST_BLOCK = 0x80
GBT_STREAMING = 0x40
GBT_WINDOW = 0x3F


@dataclass(frozen=True, slots=True)
class GeneralBlockTransfer:
    """general-block-transfer [224] (Green Book 9.3.6.4 and 9.5): one block of a long APDU.

    The block-control byte carries ``last_block`` (bit 7), ``streaming`` (bit 6) and the
    sender's ``window`` size (bits 0-5)."""

    block_number: int
    block_number_ack: int
    block_data: bytes
    last_block: bool = True
    streaming: bool = False
    window: int = 1

    TAG = GENERAL_BLOCK_TRANSFER

    @property
    def block_control(self) -> int:
        return (GBT_LAST_BLOCK if self.last_block else 0) | (GBT_STREAMING if self.streaming else 0) | self.window

    def to_bytes(self) -> bytes:
        if not 0 <= self.window <= GBT_WINDOW:
            raise ValueError(f"GBT window {self.window} is not 0..63")
        return (
            bytes((self.TAG, self.block_control))
            + self.block_number.to_bytes(2, "big")
            + self.block_number_ack.to_bytes(2, "big")
            + counted(self.block_data)
        )


def _decode_gbt(buf: bytes, pos: int) -> tuple[GeneralBlockTransfer, int]:
    control, pos = read_u8(buf, pos + 1, "block-control")
    number, pos = read_u16(buf, pos, "block-number")
    ack, pos = read_u16(buf, pos, "block-number-ack")
    data, pos = take_counted(buf, pos, "block-data")
    return (
        GeneralBlockTransfer(number, ack, data, bool(control & GBT_LAST_BLOCK), bool(control & GBT_STREAMING),
                             control & GBT_WINDOW),
        pos,
    )


#: tag -> decoder(buf, pos) -> (APDU, position after it)
DECODERS = {
    INITIATE_REQUEST: _decode_initiate_request,
    INITIATE_RESPONSE: _decode_initiate_response,
    CONFIRMED_SERVICE_ERROR: _decode_confirmed_service_error,
    EXCEPTION_RESPONSE: _decode_exception_response,
    GENERAL_GLO_CIPHERING: _decode_general(GeneralGloCiphering),
    GENERAL_DED_CIPHERING: _decode_general(GeneralDedCiphering),
    GENERAL_BLOCK_TRANSFER: _decode_gbt,
    **{tag: _decode_ciphered for tag in CIPHERED_TAGS},
}
