"""xDLMS logical-name services: GET, SET, ACTION, event and data notification APDUs.

IEC 62056-5-3 (Green Book DLMS UA 1000-2 ed. 9, 9.3.6-9.3.10 for the services, 9.5 for the
abstract syntax). Every CHOICE alternative is a frozen dataclass with ``to_bytes()``;
:func:`gateway.codecs.dlms.apdu.decode_apdu` decodes them all, so requests and responses
are symmetric (a client encodes requests and decodes responses, a server the reverse).

A result that is an error code (:class:`DataAccessResult`, :class:`ActionResult` other than
success) is a well-formed answer: data, never an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Union

from gateway.codecs.dlms.axdr import (
    Data,
    counted,
    decode_data_at,
    decode_length,
    encode_length,
    read_boolean,
    read_present,
    read_u8,
    read_u32,
    take_counted,
    truncated,
)
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.obis import Obis

GET_REQUEST = 0xC0
SET_REQUEST = 0xC1
EVENT_NOTIFICATION_REQUEST = 0xC2
ACTION_REQUEST = 0xC3
GET_RESPONSE = 0xC4
SET_RESPONSE = 0xC5
ACTION_RESPONSE = 0xC7
DATA_NOTIFICATION = 0x0F

# --- result codes ------------------------------------------------------------------------

#: Data-Access-Result (Green Book 9.5).
DATA_ACCESS_RESULTS: dict[int, str] = {
    0: "success",
    1: "hardware-fault",
    2: "temporary-failure",
    3: "read-write-denied",
    4: "object-undefined",
    9: "object-class-inconsistent",
    11: "object-unavailable",
    12: "type-unmatched",
    13: "scope-of-access-violated",
    14: "data-block-unavailable",
    15: "long-get-aborted",
    16: "no-long-get-in-progress",
    17: "long-set-aborted",
    18: "no-long-set-in-progress",
    19: "data-block-number-invalid",
    250: "other-reason",
}

#: Action-Result (Green Book 9.5).
ACTION_RESULTS: dict[int, str] = {
    0: "success",
    1: "hardware-fault",
    2: "temporary-failure",
    3: "read-write-denied",
    4: "object-undefined",
    9: "object-class-inconsistent",
    11: "object-unavailable",
    12: "type-unmatched",
    13: "scope-of-access-violated",
    14: "data-block-unavailable",
    15: "long-action-aborted",
    16: "no-long-action-in-progress",
    250: "other-reason",
}


@dataclass(frozen=True, slots=True)
class _ResultCode:
    code: int

    NAMES: ClassVar[dict[int, str]] = {}

    @property
    def name(self) -> str:
        return self.NAMES.get(self.code, f"result-{self.code}")

    @property
    def success(self) -> bool:
        return self.code == 0


@dataclass(frozen=True, slots=True)
class DataAccessResult(_ResultCode):
    """A Data-Access-Result code; ``name`` from :data:`DATA_ACCESS_RESULTS`."""

    NAMES = DATA_ACCESS_RESULTS


@dataclass(frozen=True, slots=True)
class ActionResult(_ResultCode):
    """An Action-Result code; ``name`` from :data:`ACTION_RESULTS`."""

    NAMES = ACTION_RESULTS


SUCCESS = DataAccessResult(0)

#: A Get-Data-Result: the value, or why there is none.
GetDataResult = Union[Data, DataAccessResult]

# --- invoke-id-and-priority --------------------------------------------------------------

PRIORITY_HIGH = 0x80
SERVICE_CLASS_CONFIRMED = 0x40
INVOKE_ID_MASK = 0x0F


@dataclass(frozen=True, slots=True)
class InvokeIdAndPriority:
    """Invoke-Id-And-Priority (Green Book 9.5): bits 0-3 invoke-id, bit 6 service-class
    (1 = confirmed), bit 7 priority (1 = high); bits 4-5 are reserved and kept."""

    value: int

    @classmethod
    def of(cls, invoke_id: int, *, confirmed: bool = True, high_priority: bool = True) -> InvokeIdAndPriority:
        if not 0 <= invoke_id <= INVOKE_ID_MASK:
            raise ValueError(f"invoke-id {invoke_id} is not 0..15")
        return cls(
            invoke_id | (SERVICE_CLASS_CONFIRMED if confirmed else 0) | (PRIORITY_HIGH if high_priority else 0)
        )

    @property
    def invoke_id(self) -> int:
        return self.value & INVOKE_ID_MASK

    @property
    def confirmed(self) -> bool:
        return bool(self.value & SERVICE_CLASS_CONFIRMED)

    @property
    def high_priority(self) -> bool:
        return bool(self.value & PRIORITY_HIGH)


_IIP = [InvokeIdAndPriority(v) for v in range(256)]
DEFAULT_INVOKE = InvokeIdAndPriority.of(1)


def _read_iip(buf: bytes, pos: int) -> tuple[InvokeIdAndPriority, int]:
    value, pos = read_u8(buf, pos, "invoke-id-and-priority")
    return _IIP[value], pos


# --- descriptors -------------------------------------------------------------------------

_DESCRIPTOR = struct.Struct(">H6sb")


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """Cosem-Attribute-Descriptor: class-id, instance-id (logical name), attribute-id
    (Integer8: negative ids are manufacturer-specific)."""

    class_id: int
    instance: Obis
    attribute: int

    def to_bytes(self) -> bytes:
        return _DESCRIPTOR.pack(self.class_id, self.instance.to_bytes(), self.attribute)


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    """Cosem-Method-Descriptor: class-id, instance-id, method-id (Integer8)."""

    class_id: int
    instance: Obis
    method: int

    def to_bytes(self) -> bytes:
        return _DESCRIPTOR.pack(self.class_id, self.instance.to_bytes(), self.method)


def _read_descriptor(buf: bytes, pos: int, cls):
    if pos + 9 > len(buf):
        raise truncated(buf, pos, 9, cls.__name__)
    class_id, instance, member = _DESCRIPTOR.unpack_from(buf, pos)
    return cls(class_id, Obis(*instance), member), pos + 9


@dataclass(frozen=True, slots=True)
class SelectiveAccess:
    """Selective-Access-Descriptor: ``selector`` (1 = by range, 2 = by entry for Profile
    generic; see :mod:`gateway.codecs.dlms.selective`) and its ``parameters``."""

    selector: int
    parameters: Data

    def to_bytes(self) -> bytes:
        return bytes((self.selector,)) + self.parameters.to_bytes()


def _access_bytes(access: SelectiveAccess | None) -> bytes:
    return b"\x00" if access is None else b"\x01" + access.to_bytes()


def _read_access(buf: bytes, pos: int) -> tuple[SelectiveAccess | None, int]:
    present, pos = read_present(buf, pos, "access-selection")
    if not present:
        return None, pos
    selector, pos = read_u8(buf, pos, "access-selector")
    parameters, pos = decode_data_at(buf, pos)
    return SelectiveAccess(selector, parameters), pos


@dataclass(frozen=True, slots=True)
class AttributeWithSelection:
    """Cosem-Attribute-Descriptor-With-Selection: one item of a with-list request."""

    attribute: AttributeDescriptor
    access: SelectiveAccess | None = None

    def to_bytes(self) -> bytes:
        return self.attribute.to_bytes() + _access_bytes(self.access)


def _read_with_selection(buf: bytes, pos: int) -> tuple[AttributeWithSelection, int]:
    attribute, pos = _read_descriptor(buf, pos, AttributeDescriptor)
    access, pos = _read_access(buf, pos)
    return AttributeWithSelection(attribute, access), pos


def _read_list(buf: bytes, pos: int, read, field: str) -> tuple[tuple, int]:
    count, pos = decode_length(buf, pos, field)
    if count > len(buf) - pos:
        raise DLMSFrameError(f"{field} announces {count} items, only {len(buf) - pos} bytes left", offset=pos,
                             field=field)
    items = []
    for _ in range(count):
        item, pos = read(buf, pos)
        items.append(item)
    return tuple(items), pos


def _read_counterparts(buf: bytes, pos: int, read, field: str, items: tuple) -> tuple[tuple, int]:
    """A list with one entry per item of ``items`` (SET values, ACTION parameters)."""
    start = pos
    values, pos = _read_list(buf, pos, read, field)
    if len(values) != len(items):
        raise DLMSFrameError(f"{field} has {len(values)} entries for {len(items)} descriptors", offset=start,
                             field=field)
    return values, pos


def _check_paired(descriptors: tuple, values: tuple, name: str) -> None:
    if len(descriptors) != len(values):
        raise ValueError(f"{len(values)} {name} for {len(descriptors)} descriptors: one each")


def _list_bytes(items) -> bytes:
    return encode_length(len(items)) + b"".join(item.to_bytes() for item in items)


def _get_data_result_bytes(result: GetDataResult) -> bytes:
    if isinstance(result, DataAccessResult):
        return bytes((1, result.code))
    return b"\x00" + result.to_bytes()


def _read_get_data_result(buf: bytes, pos: int) -> tuple[GetDataResult, int]:
    choice, pos = read_u8(buf, pos, "Get-Data-Result")
    if choice == 0:
        return decode_data_at(buf, pos)
    if choice == 1:
        code, pos = read_u8(buf, pos, "data-access-result")
        return DataAccessResult(code), pos
    raise DLMSFrameError(f"Get-Data-Result choice {choice} is not 0 (data) or 1 (data-access-result)",
                         offset=pos - 1, field="Get-Data-Result")


def _read_access_result(buf: bytes, pos: int) -> tuple[DataAccessResult, int]:
    code, pos = read_u8(buf, pos, "data-access-result")
    return DataAccessResult(code), pos


def _results_bytes(results) -> bytes:
    return encode_length(len(results)) + bytes(r.code for r in results)


@dataclass(frozen=True, slots=True)
class DataBlock:
    """DataBlock-SA: one block of a long SET value or ACTION parameter (or ACTION return)."""

    last_block: bool
    block_number: int
    raw_data: bytes

    def to_bytes(self) -> bytes:
        return bytes((1 if self.last_block else 0,)) + self.block_number.to_bytes(4, "big") + counted(self.raw_data)


def _read_block(buf: bytes, pos: int) -> tuple[DataBlock, int]:
    last, pos = read_boolean(buf, pos, "last-block")
    number, pos = read_u32(buf, pos, "block-number")
    raw, pos = take_counted(buf, pos, "raw-data")
    return DataBlock(last, number, raw), pos


def _header(tag: int, choice: int, invoke: InvokeIdAndPriority) -> bytes:
    return bytes((tag, choice, invoke.value))


@dataclass(frozen=True, slots=True)
class _BlockNumberApdu:
    """The APDUs that carry only a block number (acknowledge or ask for a block)."""

    block_number: int
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = 0, 0

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + self.block_number.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class _BlockApdu:
    """The APDUs that carry only a DataBlock-SA."""

    block: DataBlock
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = 0, 0

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + self.block.to_bytes()


# --- GET ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    """Get-Request-Normal: read one attribute, optionally with selective access."""

    attribute: AttributeDescriptor
    access: SelectiveAccess | None = None
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = GET_REQUEST, 1

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + self.attribute.to_bytes() + _access_bytes(self.access)


@dataclass(frozen=True, slots=True)
class GetRequestNext(_BlockNumberApdu):
    """Get-Request-Next: ask for the block after ``block_number`` of a long GET."""

    TAG, CHOICE = GET_REQUEST, 2


@dataclass(frozen=True, slots=True)
class GetRequestWithList:
    """Get-Request-With-List: read several attributes in one request."""

    attributes: tuple[AttributeWithSelection, ...]
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = GET_REQUEST, 3

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _list_bytes(self.attributes)


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    """Get-Response-Normal: the value, or the Data-Access-Result saying why not."""

    result: GetDataResult
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = GET_RESPONSE, 1

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _get_data_result_bytes(self.result)


@dataclass(frozen=True, slots=True)
class GetResponseWithDatablock:
    """Get-Response-With-Datablock (DataBlock-G): one block of the encoded result; ``result``
    is the raw block data, or a Data-Access-Result when the server gave up."""

    last_block: bool
    block_number: int
    result: bytes | DataAccessResult
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = GET_RESPONSE, 2

    def to_bytes(self) -> bytes:
        head = _header(self.TAG, self.CHOICE, self.invoke) + bytes((1 if self.last_block else 0,))
        head += self.block_number.to_bytes(4, "big")
        if isinstance(self.result, DataAccessResult):
            return head + bytes((1, self.result.code))
        return head + b"\x00" + counted(self.result)


@dataclass(frozen=True, slots=True)
class GetResponseWithList:
    """Get-Response-With-List: one Get-Data-Result per requested attribute."""

    results: tuple[GetDataResult, ...]
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = GET_RESPONSE, 3

    def to_bytes(self) -> bytes:
        return (
            _header(self.TAG, self.CHOICE, self.invoke)
            + encode_length(len(self.results))
            + b"".join(_get_data_result_bytes(r) for r in self.results)
        )


def _decode_get_request(buf: bytes, pos: int, choice: int, invoke: InvokeIdAndPriority):
    if choice == 1:
        attribute, pos = _read_descriptor(buf, pos, AttributeDescriptor)
        access, pos = _read_access(buf, pos)
        return GetRequestNormal(attribute, access, invoke), pos
    if choice == 2:
        number, pos = read_u32(buf, pos, "block-number")
        return GetRequestNext(number, invoke), pos
    items, pos = _read_list(buf, pos, _read_with_selection, "attribute-descriptor-list")
    return GetRequestWithList(items, invoke), pos


def _decode_get_response(buf: bytes, pos: int, choice: int, invoke: InvokeIdAndPriority):
    if choice == 1:
        result, pos = _read_get_data_result(buf, pos)
        return GetResponseNormal(result, invoke), pos
    if choice == 2:
        last, pos = read_boolean(buf, pos, "last-block")
        number, pos = read_u32(buf, pos, "block-number")
        kind, pos = read_u8(buf, pos, "DataBlock-G result")
        if kind == 0:
            result, pos = take_counted(buf, pos, "raw-data")
        elif kind == 1:
            result, pos = _read_access_result(buf, pos)
        else:
            raise DLMSFrameError(f"DataBlock-G result choice {kind} is not 0 or 1", offset=pos - 1,
                                 field="DataBlock-G result")
        return GetResponseWithDatablock(last, number, result, invoke), pos
    results, pos = _read_list(buf, pos, _read_get_data_result, "result")
    return GetResponseWithList(results, invoke), pos


# --- SET ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetRequestNormal:
    """Set-Request-Normal: write one attribute."""

    attribute: AttributeDescriptor
    value: Data
    access: SelectiveAccess | None = None
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_REQUEST, 1

    def to_bytes(self) -> bytes:
        return (
            _header(self.TAG, self.CHOICE, self.invoke)
            + self.attribute.to_bytes()
            + _access_bytes(self.access)
            + self.value.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class SetRequestWithFirstDatablock:
    """Set-Request-With-First-Datablock: the first block of a value too long for one APDU."""

    attribute: AttributeDescriptor
    block: DataBlock
    access: SelectiveAccess | None = None
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_REQUEST, 2

    def to_bytes(self) -> bytes:
        return (
            _header(self.TAG, self.CHOICE, self.invoke)
            + self.attribute.to_bytes()
            + _access_bytes(self.access)
            + self.block.to_bytes()
        )


@dataclass(frozen=True, slots=True)
class SetRequestWithDatablock(_BlockApdu):
    """Set-Request-With-Datablock: a following block of a long SET."""

    TAG, CHOICE = SET_REQUEST, 3


@dataclass(frozen=True, slots=True)
class SetRequestWithList:
    """Set-Request-With-List: write several attributes (one value each)."""

    attributes: tuple[AttributeWithSelection, ...]
    values: tuple[Data, ...]
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_REQUEST, 4

    def __post_init__(self) -> None:
        _check_paired(self.attributes, self.values, "values")

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _list_bytes(self.attributes) + _list_bytes(self.values)


@dataclass(frozen=True, slots=True)
class SetRequestWithListAndFirstDatablock:
    """Set-Request-With-List-And-First-Datablock: several attributes, values in blocks."""

    attributes: tuple[AttributeWithSelection, ...]
    block: DataBlock
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_REQUEST, 5

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _list_bytes(self.attributes) + self.block.to_bytes()


@dataclass(frozen=True, slots=True)
class SetResponseNormal:
    """Set-Response-Normal: the Data-Access-Result of the write."""

    result: DataAccessResult
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_RESPONSE, 1

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + bytes((self.result.code,))


@dataclass(frozen=True, slots=True)
class SetResponseDatablock(_BlockNumberApdu):
    """Set-Response-Datablock: block ``block_number`` received, send the next."""

    TAG, CHOICE = SET_RESPONSE, 2


@dataclass(frozen=True, slots=True)
class SetResponseLastDatablock:
    """Set-Response-Last-Datablock: the result after the last block."""

    result: DataAccessResult
    block_number: int
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_RESPONSE, 3

    def to_bytes(self) -> bytes:
        number = self.block_number.to_bytes(4, "big")
        return _header(self.TAG, self.CHOICE, self.invoke) + bytes((self.result.code,)) + number


@dataclass(frozen=True, slots=True)
class SetResponseLastDatablockWithList:
    """Set-Response-Last-Datablock-With-List: one result per attribute after the last block."""

    results: tuple[DataAccessResult, ...]
    block_number: int
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_RESPONSE, 4

    def to_bytes(self) -> bytes:
        number = self.block_number.to_bytes(4, "big")
        return _header(self.TAG, self.CHOICE, self.invoke) + _results_bytes(self.results) + number


@dataclass(frozen=True, slots=True)
class SetResponseWithList:
    """Set-Response-With-List: one result per attribute."""

    results: tuple[DataAccessResult, ...]
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = SET_RESPONSE, 5

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _results_bytes(self.results)


def _decode_set_request(buf: bytes, pos: int, choice: int, invoke: InvokeIdAndPriority):
    if choice in (1, 2):
        attribute, pos = _read_descriptor(buf, pos, AttributeDescriptor)
        access, pos = _read_access(buf, pos)
        if choice == 1:
            value, pos = decode_data_at(buf, pos)
            return SetRequestNormal(attribute, value, access, invoke), pos
        block, pos = _read_block(buf, pos)
        return SetRequestWithFirstDatablock(attribute, block, access, invoke), pos
    if choice == 3:
        block, pos = _read_block(buf, pos)
        return SetRequestWithDatablock(block, invoke), pos
    items, pos = _read_list(buf, pos, _read_with_selection, "attribute-descriptor-list")
    if choice == 4:
        values, pos = _read_counterparts(buf, pos, decode_data_at, "value-list", items)
        return SetRequestWithList(items, values, invoke), pos
    block, pos = _read_block(buf, pos)
    return SetRequestWithListAndFirstDatablock(items, block, invoke), pos


def _decode_set_response(buf: bytes, pos: int, choice: int, invoke: InvokeIdAndPriority):
    if choice == 1:
        result, pos = _read_access_result(buf, pos)
        return SetResponseNormal(result, invoke), pos
    if choice == 2:
        number, pos = read_u32(buf, pos, "block-number")
        return SetResponseDatablock(number, invoke), pos
    if choice == 3:
        result, pos = _read_access_result(buf, pos)
        number, pos = read_u32(buf, pos, "block-number")
        return SetResponseLastDatablock(result, number, invoke), pos
    results, pos = _read_list(buf, pos, _read_access_result, "result")
    if choice == 4:
        number, pos = read_u32(buf, pos, "block-number")
        return SetResponseLastDatablockWithList(results, number, invoke), pos
    return SetResponseWithList(results, invoke), pos


# --- ACTION ------------------------------------------------------------------------------


def _optional_data_bytes(value: Data | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + value.to_bytes()


def _read_optional_data(buf: bytes, pos: int) -> tuple[Data | None, int]:
    present, pos = read_present(buf, pos, "method-invocation-parameters")
    if not present:
        return None, pos
    return decode_data_at(buf, pos)


@dataclass(frozen=True, slots=True)
class ActionRequestNormal:
    """Action-Request-Normal: invoke one method, with optional parameters."""

    method: MethodDescriptor
    parameters: Data | None = None
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = ACTION_REQUEST, 1

    def to_bytes(self) -> bytes:
        header = _header(self.TAG, self.CHOICE, self.invoke)
        return header + self.method.to_bytes() + _optional_data_bytes(self.parameters)


@dataclass(frozen=True, slots=True)
class ActionRequestNextPblock(_BlockNumberApdu):
    """Action-Request-Next-Pblock: ask for the block after ``block_number`` of a long return."""

    TAG, CHOICE = ACTION_REQUEST, 2


@dataclass(frozen=True, slots=True)
class ActionRequestWithList:
    """Action-Request-With-List: several methods, one parameter each."""

    methods: tuple[MethodDescriptor, ...]
    parameters: tuple[Data, ...]
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = ACTION_REQUEST, 3

    def __post_init__(self) -> None:
        _check_paired(self.methods, self.parameters, "parameters")

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _list_bytes(self.methods) + _list_bytes(self.parameters)


@dataclass(frozen=True, slots=True)
class ActionRequestWithFirstPblock:
    """Action-Request-With-First-Pblock: the first block of long method parameters."""

    method: MethodDescriptor
    block: DataBlock
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = ACTION_REQUEST, 4

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + self.method.to_bytes() + self.block.to_bytes()


@dataclass(frozen=True, slots=True)
class ActionRequestWithListAndFirstPblock:
    """Action-Request-With-List-And-First-Pblock."""

    methods: tuple[MethodDescriptor, ...]
    block: DataBlock
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = ACTION_REQUEST, 5

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _list_bytes(self.methods) + self.block.to_bytes()


@dataclass(frozen=True, slots=True)
class ActionRequestWithPblock(_BlockApdu):
    """Action-Request-With-Pblock: a following block of long method parameters."""

    TAG, CHOICE = ACTION_REQUEST, 6


@dataclass(frozen=True, slots=True)
class ActionResponseItem:
    """Action-Response-With-Optional-Data: the result and what the method returned."""

    result: ActionResult
    return_data: GetDataResult | None = None

    def to_bytes(self) -> bytes:
        out = bytes((self.result.code,))
        if self.return_data is None:
            return out + b"\x00"
        return out + b"\x01" + _get_data_result_bytes(self.return_data)


def _read_action_item(buf: bytes, pos: int) -> tuple[ActionResponseItem, int]:
    code, pos = read_u8(buf, pos, "action-result")
    present, pos = read_present(buf, pos, "return-parameters")
    data = None
    if present:
        data, pos = _read_get_data_result(buf, pos)
    return ActionResponseItem(ActionResult(code), data), pos


@dataclass(frozen=True, slots=True)
class ActionResponseNormal:
    """Action-Response-Normal: the Action-Result and optional return parameters (data, or a
    Data-Access-Result)."""

    result: ActionResult
    return_data: GetDataResult | None = None
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = ACTION_RESPONSE, 1

    def to_bytes(self) -> bytes:
        header = _header(self.TAG, self.CHOICE, self.invoke)
        return header + ActionResponseItem(self.result, self.return_data).to_bytes()


@dataclass(frozen=True, slots=True)
class ActionResponseWithPblock(_BlockApdu):
    """Action-Response-With-Pblock: one block of long return parameters."""

    TAG, CHOICE = ACTION_RESPONSE, 2


@dataclass(frozen=True, slots=True)
class ActionResponseWithList:
    """Action-Response-With-List: one result (and optional return data) per method."""

    responses: tuple[ActionResponseItem, ...]
    invoke: InvokeIdAndPriority = DEFAULT_INVOKE

    TAG, CHOICE = ACTION_RESPONSE, 3

    def to_bytes(self) -> bytes:
        return _header(self.TAG, self.CHOICE, self.invoke) + _list_bytes(self.responses)


@dataclass(frozen=True, slots=True)
class ActionResponseNextPblock(_BlockNumberApdu):
    """Action-Response-Next-Pblock: block ``block_number`` of the parameters received."""

    TAG, CHOICE = ACTION_RESPONSE, 4


def _read_method(buf: bytes, pos: int) -> tuple[MethodDescriptor, int]:
    return _read_descriptor(buf, pos, MethodDescriptor)


def _decode_action_request(buf: bytes, pos: int, choice: int, invoke: InvokeIdAndPriority):
    if choice == 1:
        method, pos = _read_method(buf, pos)
        parameters, pos = _read_optional_data(buf, pos)
        return ActionRequestNormal(method, parameters, invoke), pos
    if choice == 2:
        number, pos = read_u32(buf, pos, "block-number")
        return ActionRequestNextPblock(number, invoke), pos
    if choice == 4:
        method, pos = _read_method(buf, pos)
        block, pos = _read_block(buf, pos)
        return ActionRequestWithFirstPblock(method, block, invoke), pos
    if choice == 6:
        block, pos = _read_block(buf, pos)
        return ActionRequestWithPblock(block, invoke), pos
    methods, pos = _read_list(buf, pos, _read_method, "cosem-method-descriptor-list")
    if choice == 3:
        parameters, pos = _read_counterparts(buf, pos, decode_data_at, "method-invocation-parameters", methods)
        return ActionRequestWithList(methods, parameters, invoke), pos
    block, pos = _read_block(buf, pos)
    return ActionRequestWithListAndFirstPblock(methods, block, invoke), pos


def _decode_action_response(buf: bytes, pos: int, choice: int, invoke: InvokeIdAndPriority):
    if choice == 1:
        item, pos = _read_action_item(buf, pos)
        return ActionResponseNormal(item.result, item.return_data, invoke), pos
    if choice == 2:
        block, pos = _read_block(buf, pos)
        return ActionResponseWithPblock(block, invoke), pos
    if choice == 3:
        items, pos = _read_list(buf, pos, _read_action_item, "list-of-responses")
        return ActionResponseWithList(items, invoke), pos
    number, pos = read_u32(buf, pos, "block-number")
    return ActionResponseNextPblock(number, invoke), pos


#: tag -> (number of CHOICE alternatives, decoder)
_CHOICES = {
    GET_REQUEST: (3, _decode_get_request),
    GET_RESPONSE: (3, _decode_get_response),
    SET_REQUEST: (5, _decode_set_request),
    SET_RESPONSE: (5, _decode_set_response),
    ACTION_REQUEST: (6, _decode_action_request),
    ACTION_RESPONSE: (4, _decode_action_response),
}


def _decode_choice(buf: bytes, pos: int):
    tag = buf[pos]
    count, decoder = _CHOICES[tag]
    choice, after = read_u8(buf, pos + 1, "choice")
    if not 1 <= choice <= count:
        raise DLMSFrameError(f"APDU 0x{tag:02X} has no choice {choice}", offset=pos + 1, field="choice")
    invoke, after = _read_iip(buf, after)
    return decoder(buf, after, choice, invoke)


# --- notifications -----------------------------------------------------------------------


def _read_date_time(buf: bytes, pos: int, field: str) -> tuple[CosemDateTime, int]:
    raw, after = take_counted(buf, pos, field)
    if len(raw) != CosemDateTime.SIZE:
        raise DLMSFrameError(f"{field} is {len(raw)} bytes, a date-time is 12", offset=pos, field=field)
    return CosemDateTime.from_bytes(raw), after


@dataclass(frozen=True, slots=True)
class EventNotificationRequest:
    """EventNotificationRequest (Green Book 9.3.11): an unsolicited attribute value."""

    attribute: AttributeDescriptor
    value: Data
    time: CosemDateTime | None = None

    TAG = EVENT_NOTIFICATION_REQUEST

    def to_bytes(self) -> bytes:
        out = bytes((self.TAG,))
        out += b"\x00" if self.time is None else b"\x01" + counted(self.time.to_bytes())
        return out + self.attribute.to_bytes() + self.value.to_bytes()


def _decode_event_notification(buf: bytes, pos: int):
    present, pos = read_present(buf, pos + 1, "time")
    time = None
    if present:
        time, pos = _read_date_time(buf, pos, "time")
    attribute, pos = _read_descriptor(buf, pos, AttributeDescriptor)
    value, pos = decode_data_at(buf, pos)
    return EventNotificationRequest(attribute, value, time), pos


LONG_INVOKE_ID_MASK = 0x00FFFFFF


@dataclass(frozen=True, slots=True)
class DataNotification:
    """DataNotification [15] (Green Book 9.3.12): pushed data. ``long_invoke_id_and_priority``
    is kept raw (bits 0-23 long-invoke-id, 28 self-descriptive, 29 processing-option, 30
    service-class, 31 priority); ``date_time`` ``None`` is sent as an empty octet string."""

    long_invoke_id_and_priority: int
    body: Data
    date_time: CosemDateTime | None = None

    TAG = DATA_NOTIFICATION

    @property
    def long_invoke_id(self) -> int:
        return self.long_invoke_id_and_priority & LONG_INVOKE_ID_MASK

    def to_bytes(self) -> bytes:
        stamp = b"" if self.date_time is None else self.date_time.to_bytes()
        return (
            bytes((self.TAG,))
            + self.long_invoke_id_and_priority.to_bytes(4, "big")
            + counted(stamp)
            + self.body.to_bytes()
        )


def _decode_data_notification(buf: bytes, pos: int):
    long_iip, pos = read_u32(buf, pos + 1, "long-invoke-id-and-priority")
    stamp = None
    # date-time is an OCTET STRING (Green Book 9.5): empty when the push carries no time.
    if pos < len(buf) and buf[pos] == 0:
        pos += 1
    else:
        stamp, pos = _read_date_time(buf, pos, "date-time")
    body, pos = decode_data_at(buf, pos)
    return DataNotification(long_iip, body, stamp), pos


#: tag -> decoder(buf, pos) -> (APDU, position after it)
DECODERS = {
    **{tag: _decode_choice for tag in _CHOICES},
    EVENT_NOTIFICATION_REQUEST: _decode_event_notification,
    DATA_NOTIFICATION: _decode_data_notification,
}

Request = Union[
    GetRequestNormal, GetRequestNext, GetRequestWithList,
    SetRequestNormal, SetRequestWithFirstDatablock, SetRequestWithDatablock, SetRequestWithList,
    SetRequestWithListAndFirstDatablock,
    ActionRequestNormal, ActionRequestNextPblock, ActionRequestWithList, ActionRequestWithFirstPblock,
    ActionRequestWithListAndFirstPblock, ActionRequestWithPblock,
]
Response = Union[
    GetResponseNormal, GetResponseWithDatablock, GetResponseWithList,
    SetResponseNormal, SetResponseDatablock, SetResponseLastDatablock, SetResponseLastDatablockWithList,
    SetResponseWithList,
    ActionResponseNormal, ActionResponseWithPblock, ActionResponseWithList, ActionResponseNextPblock,
]
