"""Decode one DLMS/COSEM APDU: xDLMS (Green Book 9.5) or ACSE (9.4), by its first byte.

:func:`decode_apdu` takes the bytes of exactly one APDU (what an HDLC I-frame after the
LLC header or a wrapper PDU carries) and returns the typed APDU; ``apdu.to_bytes()`` gives
the same bytes back. Truncated, malformed or trailing input raises
:class:`~gateway.codecs.dlms.errors.DLMSFrameError` with the offset and field.

APDUs of the standard that the gateway does not use (short-name services, ACCESS,
general-ciphering, general-signing) are returned as :class:`UnsupportedApdu` with their
bytes, never dropped; an unknown tag is an error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from gateway.codecs.dlms import acse, services, xdlms
from gateway.codecs.dlms.acse import AARE, AARQ, RLRE, RLRQ
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError
from gateway.codecs.dlms.services import (
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithListAndFirstPblock,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    DataNotification,
    EventNotificationRequest,
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
    SetRequestWithListAndFirstDatablock,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseLastDatablockWithList,
    SetResponseNormal,
    SetResponseWithList,
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
)

#: Tags of the standard's APDUs that are kept as bytes (Green Book 9.5).
UNSUPPORTED_APDUS: dict[int, str] = {
    0x05: "readRequest",
    0x06: "writeRequest",
    0x0C: "readResponse",
    0x0D: "writeResponse",
    0x16: "unconfirmedWriteRequest",
    0x18: "informationReportRequest",
    0xD9: "access-request",
    0xDA: "access-response",
    0xDD: "general-ciphering",
    0xDF: "general-signing",
}


@dataclass(frozen=True, slots=True)
class UnsupportedApdu:
    """An APDU of the standard this codec does not model; ``data`` is the whole APDU."""

    data: bytes

    @property
    def tag(self) -> int:
        return self.data[0]

    @property
    def name(self) -> str:
        return UNSUPPORTED_APDUS[self.data[0]]

    def to_bytes(self) -> bytes:
        return self.data


def _decode_unsupported(buf: bytes, pos: int):
    return UnsupportedApdu(buf[pos:]), len(buf)


_DECODERS = {
    **xdlms.DECODERS,
    **services.DECODERS,
    **acse.DECODERS,
    **{tag: _decode_unsupported for tag in UNSUPPORTED_APDUS},
}

Apdu = Union[
    AARQ, AARE, RLRQ, RLRE,
    InitiateRequest, InitiateResponse, ConfirmedServiceError, ExceptionResponse,
    CipheredApdu, GeneralGloCiphering, GeneralDedCiphering, GeneralBlockTransfer,
    GetRequestNormal, GetRequestNext, GetRequestWithList,
    GetResponseNormal, GetResponseWithDatablock, GetResponseWithList,
    SetRequestNormal, SetRequestWithFirstDatablock, SetRequestWithDatablock, SetRequestWithList,
    SetRequestWithListAndFirstDatablock,
    SetResponseNormal, SetResponseDatablock, SetResponseLastDatablock, SetResponseLastDatablockWithList,
    SetResponseWithList,
    ActionRequestNormal, ActionRequestNextPblock, ActionRequestWithList, ActionRequestWithFirstPblock,
    ActionRequestWithListAndFirstPblock, ActionRequestWithPblock,
    ActionResponseNormal, ActionResponseWithPblock, ActionResponseWithList, ActionResponseNextPblock,
    EventNotificationRequest, DataNotification, UnsupportedApdu,
]


def decode_apdu(data: bytes) -> Apdu:
    """Decode exactly one APDU; anything short, malformed or trailing raises DLMSFrameError."""
    buf = bytes(data)
    if not buf:
        raise DLMSFrameError("empty APDU", offset=0, field="tag")
    decoder = _DECODERS.get(buf[0])
    if decoder is None:
        raise DLMSFrameError(f"unknown APDU tag 0x{buf[0]:02X}", offset=0, field="tag")
    try:
        apdu, pos = decoder(buf, 0)
    except DLMSError:
        raise
    except RecursionError:
        raise DLMSFrameError("APDU nested too deeply", offset=0, field="APDU") from None
    except (ValueError, IndexError, KeyError, struct.error, OverflowError) as exc:
        raise DLMSFrameError(f"malformed APDU: {exc}", offset=0, field="APDU") from None
    if pos != len(buf):
        raise DLMSFrameError(f"{len(buf) - pos} trailing bytes after the APDU", offset=pos, field="APDU")
    return apdu
