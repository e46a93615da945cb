"""Modbus RTU read transactions, sans-IO: the request's bytes, and its response found in
whatever bytes come back.

The frame layout, the PDUs and the CRC are pymodbus's (its RTU framer and PDU classes,
driven here without its transport): this module adds what a master on a shared line
needs around them (Modbus over Serial Line V1.02, 2.5.1):

* :meth:`ReadRequest.to_bytes` is the whole ADU (address, function, start, count, CRC);
* :class:`ResponseReader` is fed received bytes and returns the response once a frame
  with a good CRC from the addressed unit is complete: the request echoed by an RS-485
  adapter is dropped, so are bytes before a frame (a transceiver turning round often
  leaves one) and complete frames from other units (a late reply to an earlier request);
  until then it says "need more data" (None). A good frame from the unit that does not
  answer the request (another function, the wrong length) is a :class:`ModbusFrameError`,
  and so is whatever is still buffered when the caller says the line went quiet
  (:meth:`ResponseReader.end_of_input`): RTU frames have no end marker, so a bad CRC
  cannot be told from a frame still arriving until then.

What a response is: :class:`RegistersReply` (the registers) or :class:`ExceptionReply`
(the exception code, Modbus Application Protocol V1.1b3 clause 7), which
:meth:`ExceptionReply.error` turns into the error a caller raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from gateway.codecs.modbus.errors import ModbusExceptionResponse, ModbusFrameError

READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
#: Modbus Application Protocol V1.1b3, 6.3 and 6.4: at most 125 registers per read.
MAX_READ_REGISTERS = 125
#: Serial Line V1.02, 2.2: unicast addresses (0 is broadcast, 248..255 reserved).
UNIT_MIN, UNIT_MAX = 1, 247
#: The bit a server sets in the function code of an exception response (V1.1b3, 7).
EXCEPTION_BIT = 0x80

FUNCTION_NAMES = {READ_HOLDING_REGISTERS: "read holding registers", READ_INPUT_REGISTERS: "read input registers"}
_REQUESTS: dict[int, type[ModbusPDU]] = {READ_HOLDING_REGISTERS: ReadHoldingRegistersRequest,
                                         READ_INPUT_REGISTERS: ReadInputRegistersRequest}

#: Exception codes and their names (Modbus Application Protocol V1.1b3, clause 7).
EXCEPTION_NAMES = {
    0x01: "ILLEGAL FUNCTION",
    0x02: "ILLEGAL DATA ADDRESS",
    0x03: "ILLEGAL DATA VALUE",
    0x04: "SERVER DEVICE FAILURE",
    0x05: "ACKNOWLEDGE",
    0x06: "SERVER DEVICE BUSY",
    0x08: "MEMORY PARITY ERROR",
    0x0A: "GATEWAY PATH UNAVAILABLE",
    0x0B: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
#: Exceptions that say "not now" rather than "no": the request may be repeated.
TRANSIENT_EXCEPTIONS = frozenset({0x05, 0x06})

#: Unit address, function code, CRC: the smallest RTU frame has 4 bytes besides data.
_FRAME_OVERHEAD = 4
_decoder = DecodePDU(is_server=False)
_framer = FramerRTU(_decoder)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read ``count`` registers from ``address`` of ``unit`` with ``function`` 3 or 4."""

    unit: int
    function: int
    address: int
    count: int

    def __post_init__(self) -> None:
        if not UNIT_MIN <= self.unit <= UNIT_MAX:
            raise ValueError(f"a unit address is {UNIT_MIN}..{UNIT_MAX}, got {self.unit}")
        if self.function not in _REQUESTS:
            raise ValueError(f"function must be 3 (holding) or 4 (input registers), got {self.function}")
        if not 1 <= self.count <= MAX_READ_REGISTERS or not 0 <= self.address <= 0xFFFF - self.count + 1:
            raise ValueError(f"cannot read {self.count} registers from 0x{self.address:04X}")

    def to_bytes(self) -> bytes:
        pdu = _REQUESTS[self.function](address=self.address, count=self.count, dev_id=self.unit)
        return _framer.buildFrame(pdu)

    @property
    def response_length(self) -> int:
        """Bytes of a good response: unit, function, byte count, the registers, CRC."""
        return 5 + 2 * self.count

    def describe(self) -> str:
        """``read input registers 0x0000+42``, for messages."""
        return f"{FUNCTION_NAMES[self.function]} 0x{self.address:04X}+{self.count}"


@dataclass(frozen=True, slots=True)
class RegistersReply:
    """The registers a unit returned, and the frame they came in."""

    unit: int
    function: int
    registers: tuple[int, ...]
    raw: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """An exception response: the unit refused the request with ``code``."""

    unit: int
    function: int
    code: int
    raw: bytes = field(repr=False)

    @property
    def name(self) -> str:
        return EXCEPTION_NAMES.get(self.code, f"exception 0x{self.code:02X}")

    def error(self, request: ReadRequest) -> ModbusExceptionResponse:
        return ModbusExceptionResponse(
            f"unit {self.unit} refused {request.describe()}: exception {self.code} {self.name}",
            code=self.code, name=self.name, request=request.describe())


Reply = RegistersReply | ExceptionReply


class ResponseReader:
    """Finds the response to ``request`` in received bytes (see the module docstring).

    ``receive_data(bytes)`` then ``next_reply()`` until it returns a reply (None: need
    more data). ``skipped`` counts bytes that were not the response (echo, noise, other
    units' frames); ``buffered`` the bytes still waiting.
    """

    def __init__(self, request: ReadRequest) -> None:
        self.request = request
        self._request_bytes = request.to_bytes()
        self._buffer = bytearray()
        self.skipped = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_reply(self) -> Reply | None:
        while True:
            self._drop_echo()
            found = self._find_frame()
            if found is None:
                return None
            start, size = found
            frame = bytes(self._buffer[start:start + size])
            del self._buffer[:start + size]
            self.skipped += start
            if frame[0] != self.request.unit:
                self.skipped += size  # a late reply of another unit
                continue
            return self._reply(frame)

    def end_of_input(self) -> None:
        """The line has gone quiet: bytes still buffered are no valid frame (a bad CRC, a
        truncated frame, noise), and that is an error."""
        if self._buffer:
            raise ModbusFrameError(f"no valid response frame in the {len(self._buffer)} bytes received "
                                   f"({bytes(self._buffer[:16]).hex(' ')}{' ...' if len(self._buffer) > 16 else ''})",
                                   offset=0, field="CRC")

    def _drop_echo(self) -> None:
        if self._buffer.startswith(self._request_bytes):
            del self._buffer[:len(self._request_bytes)]
            self.skipped += len(self._request_bytes)

    def _find_frame(self) -> tuple[int, int] | None:
        """The first complete frame with a good CRC: (offset, size); None if none yet.

        The search stops at the start of the expected response (this unit, this function
        or its exception) that is still arriving: the registers inside it must not be
        taken for frames of their own (a CRC matches by chance once in 65536)."""
        data = bytes(self._buffer)
        for start in range(len(data) - _FRAME_OVERHEAD + 1):
            size = _frame_size(data[start:])
            if size and start + size <= len(data):
                if _crc_ok(data[start:start + size]):
                    return start, size
            elif data[start] == self.request.unit and data[start + 1] & ~EXCEPTION_BIT == self.request.function:
                return None
        return None

    def _reply(self, frame: bytes) -> Reply:
        request = self.request
        function = frame[1]
        try:
            pdu = _decoder.decode(frame[1:-2])
        except (ModbusException, ValueError, IndexError) as exc:
            raise ModbusFrameError(f"undecodable response: {exc}", offset=1, field="PDU") from None
        if pdu is None:
            raise ModbusFrameError("undecodable response", offset=1, field="PDU")
        if isinstance(pdu, ExceptionResponse) and function == request.function | EXCEPTION_BIT:
            return ExceptionReply(frame[0], request.function, pdu.exception_code, frame)
        if function != request.function:
            raise ModbusFrameError(f"unit {frame[0]} answered function {function} to {request.describe()}",
                                   offset=1, field="function code")
        if len(pdu.registers) != request.count:
            raise ModbusFrameError(f"unit {frame[0]} returned {len(pdu.registers)} registers to {request.describe()}",
                                   offset=2, field="byte count")
        return RegistersReply(frame[0], function, tuple(pdu.registers), frame)


def _frame_size(data: bytes) -> int:
    """The size of the frame that would start ``data`` (0: not a frame start, or its
    length is not known yet): pymodbus's PDU classes know each function's layout."""
    if len(data) < _FRAME_OVERHEAD:
        return 0
    try:
        pdu_class = _decoder.lookupPduClass(data)
        return pdu_class.calculateRtuFrameSize(data) if pdu_class is not None else 0
    except (ModbusException, IndexError):
        return 0


def _crc_ok(frame: bytes) -> bool:
    """Serial Line V1.02, 2.5.1.2 and 6.2.2: CRC-16 of the frame, low byte first."""
    return FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))
