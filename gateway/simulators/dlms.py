"""A simulated DLMS/COSEM meter with real state, for the demo and the tests of operations.

Built on the gateway's own server association (:mod:`gateway.codecs.dlms.server`) behind
the IEC 62056-47 wrapper on TCP. Its objects (Blue Book class, logical name):

======  ==================  ==================================================================
1       0.0.42.0.0.255      logical device name (``name``)
8       0.0.1.0.0.255       Clock: the meter's time (the host clock plus an offset), SET of
                            attribute 2, adjust_to_quarter / measuring_period / minute (methods
                            1 2 3), shift_time (6)
3       1.0.1.8.0.255       active energy import, Wh, growing with time
3       1.0.1.7.0.255       active power import, W (the limiter's monitored value)
1       0.0.96.13.0.255     consumer message text (octet-string, writable)
1       1.0.0.2.0.255       active firmware identifier (what the last image activation set)
70      0.0.96.3.10.255     Disconnect control: output_state, control_state, control_mode and the
                            state machine of Blue Book 4.5.8 (transitions a..h per control mode)
71      0.0.17.0.0.255      Limiter: monitored value, thresholds active/normal/emergency (3 4 5),
                            min over/under threshold durations (6 7), emergency profile ...
20      0.0.13.0.0.255      Activity calendar: active and passive calendars (2..9); the passive one
                            becomes active at activate_passive_calendar_time (10) or by method 1
18      0.0.44.0.0.255      Image transfer: block size, a bitmap of the blocks received, first
                            missing block, enabled flag, status, image to activate; initiate,
                            block transfer, verify, activate (methods 1..4)
======  ==================  ==================================================================

Faults, for tests: ``action_delay_s`` (every ACTION carried out at once and answered that
late: a slow meter),
``silent_requests`` (that many GET/SET/ACTION requests are not answered, nor carried out),
``drop_after_blocks`` (the connection is cut, unanswered, when that many image blocks have
arrived), ``verify_polls`` (verification runs "in the background": image_verify answers
temporary-failure and the status says "verifying" for that many reads). ``requests`` logs
every request the meter served, ``blocks_received`` each image block number as it came.

Run ``python -m gateway.simulators.dlms --port 4061`` to have one on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import math
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.codecs.dlms.axdr import BitString, Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.server import BlockWanted, Reply, ServerAssociation, ServerSettings
from gateway.codecs.dlms.services import (
    ActionRequestNormal,
    ActionRequestWithList,
    ActionResponseItem,
    ActionResult,
    DataAccessResult,
    GetRequestNormal,
    GetRequestWithList,
    SetRequestNormal,
    SetRequestWithList,
)
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.wrapper import WrapperMessage, WrapperParser
from gateway.operations.named import ACTIVITY_CALENDAR, CLOCK, DISCONNECT_CONTROL, IMAGE_TRANSFER, LIMITER, MESSAGE_TEXT

SUCCESS = DataAccessResult(0)
TEMPORARY_FAILURE = DataAccessResult(2)
READ_WRITE_DENIED = DataAccessResult(3)
UNDEFINED = DataAccessResult(4)
UNAVAILABLE = DataAccessResult(11)
TYPE_UNMATCHED = DataAccessResult(12)
ACTION_SUCCESS = ActionResult(0)
ACTION_TEMPORARY_FAILURE = ActionResult(2)
ACTION_DENIED = ActionResult(3)
ACTION_UNDEFINED = ActionResult(4)
ACTION_UNAVAILABLE = ActionResult(11)
ACTION_TYPE_UNMATCHED = ActionResult(12)
ACTION_OTHER = ActionResult(250)

NOT_SPECIFIED = CosemDateTime(None, None, None, None, None, None, None, None, None, None)
_INTEGERS = frozenset({DataType.DOUBLE_LONG, DataType.DOUBLE_LONG_UNSIGNED, DataType.INTEGER, DataType.LONG,
                       DataType.UNSIGNED, DataType.LONG_UNSIGNED, DataType.LONG64, DataType.LONG64_UNSIGNED})

ActionAnswer = tuple[ActionResult, Data | None]


class CosemObject:
    """One simulated object; subclasses answer the attributes and methods they have."""

    class_id = 0
    #: Attributes 1..attribute_count exist (a SET of one not writable: read-write-denied).
    attribute_count = 1

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis) -> None:
        self.meter = meter
        self.obis = obis

    def get(self, attribute: int) -> Data | DataAccessResult:
        return octet_string(self.obis.to_bytes()) if attribute == 1 else UNDEFINED

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        return READ_WRITE_DENIED if 1 <= attribute <= self.attribute_count else UNDEFINED

    def action(self, method: int, parameters: Data | None) -> ActionAnswer:
        return ACTION_UNDEFINED, None


class DataObject(CosemObject):
    """Data (class 1): a value, writable or not, of a fixed type."""

    class_id = 1
    attribute_count = 2

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis, value: Callable[[], Data], *,
                 writable: DataType | None = None) -> None:
        super().__init__(meter, obis)
        self.value = value
        self.writable = writable

    def get(self, attribute: int) -> Data | DataAccessResult:
        return self.value() if attribute == 2 else super().get(attribute)

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        if attribute != 2 or self.writable is None:
            return super().set(attribute, value)
        if value.type is not self.writable:
            return TYPE_UNMATCHED
        self.value = lambda: value
        return SUCCESS


class RegisterObject(CosemObject):
    """Register (class 3): a value and its scaler_unit."""

    class_id = 3
    attribute_count = 3

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis, value: Callable[[], int], scaler: int,
                 unit: int) -> None:
        super().__init__(meter, obis)
        self.value = value
        self.scaler_unit = ScalerUnit(scaler, unit)

    def get(self, attribute: int) -> Data | DataAccessResult:
        if attribute == 2:
            return Data(DataType.DOUBLE_LONG_UNSIGNED, self.value())
        if attribute == 3:
            return self.scaler_unit.to_data()
        return super().get(attribute)


class ClockObject(CosemObject):
    """Clock (class 8) in UTC (deviation 0): the host clock plus ``meter.clock_offset_s``."""

    class_id = 8
    attribute_count = 9
    #: Methods that round the time (Blue Book 4.5.1): adjust_to_quarter, _measuring_period
    #: (the simulator's measuring period is 15 minutes too), _minute: the step in seconds.
    ADJUST = {1: 900, 2: 900, 3: 60}
    SHIFT_TIME = 6

    def get(self, attribute: int) -> Data | DataAccessResult:
        fixed = {3: Data(DataType.LONG, 0), 4: Data(DataType.UNSIGNED, 0), 5: octet_string(NOT_SPECIFIED.to_bytes()),
                 6: octet_string(NOT_SPECIFIED.to_bytes()), 7: Data(DataType.INTEGER, 0),
                 8: Data(DataType.BOOLEAN, False), 9: Data(DataType.ENUM, 1)}
        if attribute == 2:
            return octet_string(CosemDateTime.from_datetime(self.meter.now()).to_bytes())
        return fixed.get(attribute) or super().get(attribute)

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        if attribute != 2:
            return super().set(attribute, value)
        try:
            moment = CosemDateTime.from_bytes(bytes(value.value)).to_datetime(timezone.utc)
        except (DLMSError, TypeError):
            return TYPE_UNMATCHED
        self.meter.clock_offset_s = (moment - self.meter.host_now()).total_seconds()
        return SUCCESS

    def action(self, method: int, parameters: Data | None) -> ActionAnswer:
        now = self.meter.now()
        if method in self.ADJUST:
            step = self.ADJUST[method]
            seconds = now.timestamp()
            target = datetime.fromtimestamp(round(seconds / step) * step, timezone.utc)
        elif method == self.SHIFT_TIME:
            if parameters is None or parameters.type is not DataType.LONG or not -900 <= parameters.value <= 900:
                return ACTION_TYPE_UNMATCHED, None
            target = now + timedelta(seconds=parameters.value)
        else:
            return super().action(method, parameters)
        self.meter.clock_offset_s = (target - self.meter.host_now()).total_seconds()
        return ACTION_SUCCESS, None


class ControlState(enum.IntEnum):
    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2


#: The state transitions of the Disconnect control (Blue Book 4.5.8): name → (trigger,
#: from, to).
TRANSITIONS = {
    "a": ("remote_reconnect", ControlState.DISCONNECTED, ControlState.READY_FOR_RECONNECTION),
    "b": ("remote_disconnect", ControlState.READY_FOR_RECONNECTION, ControlState.DISCONNECTED),
    "c": ("remote_disconnect", ControlState.CONNECTED, ControlState.DISCONNECTED),
    "d": ("remote_reconnect", ControlState.DISCONNECTED, ControlState.CONNECTED),
    "e": ("manual_reconnection", ControlState.READY_FOR_RECONNECTION, ControlState.CONNECTED),
    "f": ("manual_disconnection", ControlState.CONNECTED, ControlState.READY_FOR_RECONNECTION),
    "g": ("local_disconnection", ControlState.CONNECTED, ControlState.READY_FOR_RECONNECTION),
    "h": ("local_reconnection", ControlState.READY_FOR_RECONNECTION, ControlState.CONNECTED),
}
#: The transitions each control_mode allows (mode 0: always connected, nothing applies).
CONTROL_MODES = {0: "", 1: "bcdefg", 2: "abcefg", 3: "bcdeg", 4: "abceg", 5: "bcdefgh", 6: "bcdegh"}
REMOTE_METHODS = {1: "remote_disconnect", 2: "remote_reconnect"}


class DisconnectControlObject(CosemObject):
    """Disconnect control (class 70). A trigger no transition of the mode applies to in the
    present state changes nothing (and a remote one still answers success)."""

    class_id = 70
    attribute_count = 4

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis, mode: int = 1) -> None:
        super().__init__(meter, obis)
        self.state = ControlState.CONNECTED
        self.mode = mode
        self.history: list[str] = []

    @property
    def output_state(self) -> bool:
        return self.state is ControlState.CONNECTED

    def trigger(self, name: str) -> bool:
        """Apply a trigger (remote, manual, local); whether a transition happened."""
        for letter in CONTROL_MODES[self.mode]:
            trigger, before, after = TRANSITIONS[letter]
            if trigger == name and before is self.state:
                self.state = after
                self.history.append(letter)
                return True
        return False

    def get(self, attribute: int) -> Data | DataAccessResult:
        values = {2: Data(DataType.BOOLEAN, self.output_state), 3: Data(DataType.ENUM, int(self.state)),
                  4: Data(DataType.ENUM, self.mode)}
        return values.get(attribute) or super().get(attribute)

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        if attribute != 4:
            return super().set(attribute, value)
        if value.type is not DataType.ENUM or value.value not in CONTROL_MODES:
            return TYPE_UNMATCHED
        self.mode = value.value
        if self.mode == 0:
            self.state = ControlState.CONNECTED
        return SUCCESS

    def action(self, method: int, parameters: Data | None) -> ActionAnswer:
        if method not in REMOTE_METHODS:
            return super().action(method, parameters)
        self.trigger(REMOTE_METHODS[method])
        return ACTION_SUCCESS, None


class LimiterObject(CosemObject):
    """Limiter (class 71): its settings are kept as written (thresholds of any integer type,
    durations double-long-unsigned)."""

    class_id = 71
    attribute_count = 11
    THRESHOLDS = (3, 4, 5)

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis, monitored: Obis) -> None:
        super().__init__(meter, obis)
        self.values: dict[int, Data] = {
            2: structure(Data(DataType.LONG_UNSIGNED, 3), octet_string(monitored.to_bytes()),
                         Data(DataType.INTEGER, 2)),
            3: Data(DataType.DOUBLE_LONG_UNSIGNED, 0), 4: Data(DataType.DOUBLE_LONG_UNSIGNED, 0),
            5: Data(DataType.DOUBLE_LONG_UNSIGNED, 0), 6: Data(DataType.DOUBLE_LONG_UNSIGNED, 0),
            7: Data(DataType.DOUBLE_LONG_UNSIGNED, 0),
            8: structure(Data(DataType.LONG_UNSIGNED, 0), octet_string(NOT_SPECIFIED.to_bytes()),
                         Data(DataType.DOUBLE_LONG_UNSIGNED, 0)),
            9: array(), 10: Data(DataType.BOOLEAN, False),
            11: structure(structure(octet_string(bytes(6)), Data(DataType.LONG_UNSIGNED, 0)),
                          structure(octet_string(bytes(6)), Data(DataType.LONG_UNSIGNED, 0))),
        }

    def get(self, attribute: int) -> Data | DataAccessResult:
        return self.values.get(attribute) or super().get(attribute)

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        if attribute not in self.values:
            return super().set(attribute, value)
        if attribute in self.THRESHOLDS:
            fits = value.type in _INTEGERS
        else:  # durations, monitored value, emergency profile ...: the type they have
            fits = value.type is self.values[attribute].type
        if not fits:
            return TYPE_UNMATCHED
        self.values[attribute] = value
        return SUCCESS


class ActivityCalendarObject(CosemObject):
    """Activity calendar (class 20): the passive calendar (6..9) becomes the active one
    (2..5) when the meter's clock reaches activate_passive_calendar_time (10), checked at
    every request, or at once by activate_passive_calendar (method 1)."""

    class_id = 20
    attribute_count = 10
    PASSIVE = {6: DataType.OCTET_STRING, 7: DataType.ARRAY, 8: DataType.ARRAY, 9: DataType.ARRAY}
    ACTIVATION = 10

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis) -> None:
        super().__init__(meter, obis)
        self.active = {2: octet_string(b"initial"), 3: array(), 4: array(), 5: array()}
        self.passive = {6: octet_string(b""), 7: array(), 8: array(), 9: array()}
        self.activation = NOT_SPECIFIED
        self.activations = 0

    def tick(self, now: datetime) -> None:
        try:
            due = self.activation.to_datetime(timezone.utc)
        except DLMSError:
            return  # not specified: no activation pending
        if now >= due:
            self.activate()

    def activate(self) -> None:
        self.active = {attribute - 4: value for attribute, value in self.passive.items()}
        self.activation = NOT_SPECIFIED
        self.activations += 1

    def get(self, attribute: int) -> Data | DataAccessResult:
        if attribute == self.ACTIVATION:
            return octet_string(self.activation.to_bytes())
        return self.active.get(attribute) or self.passive.get(attribute) or super().get(attribute)

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        if attribute == self.ACTIVATION:
            if value.type is not DataType.OCTET_STRING or len(value.value) != CosemDateTime.SIZE:
                return TYPE_UNMATCHED
            self.activation = CosemDateTime.from_bytes(bytes(value.value))
            return SUCCESS
        if attribute in self.PASSIVE:
            if value.type is not self.PASSIVE[attribute]:
                return TYPE_UNMATCHED
            self.passive[attribute] = value
            return SUCCESS
        return READ_WRITE_DENIED if attribute in self.active else super().set(attribute, value)

    def action(self, method: int, parameters: Data | None) -> ActionAnswer:
        if method != 1:
            return super().action(method, parameters)
        self.activate()
        return ACTION_SUCCESS, None


class ImageStatus(enum.IntEnum):
    """image_transfer_status (Blue Book 4.4.6)."""

    NOT_INITIATED = 0
    INITIATED = 1
    VERIFICATION_INITIATED = 2
    VERIFICATION_SUCCESSFUL = 3
    VERIFICATION_FAILED = 4
    ACTIVATION_INITIATED = 5
    ACTIVATION_SUCCESSFUL = 6
    ACTIVATION_FAILED = 7


class ImageTransferObject(CosemObject):
    """Image transfer (class 18): blocks kept by number; verification succeeds when every
    block is there (after ``meter.verify_polls`` status reads when it runs in the
    background); activation makes the identifier the active firmware."""

    class_id = 18
    attribute_count = 7

    def __init__(self, meter: SimulatedDlmsMeter, obis: Obis, block_size: int = 64) -> None:
        super().__init__(meter, obis)
        self.block_size = block_size
        self.enabled = True
        self.status = ImageStatus.NOT_INITIATED
        self.identifier = b""
        self.size = 0
        self.blocks: dict[int, bytes] = {}
        self._verifying = 0

    @property
    def block_count(self) -> int:
        return math.ceil(self.size / self.block_size) if self.size else 0

    @property
    def image(self) -> bytes:
        return b"".join(self.blocks.get(n, b"") for n in range(self.block_count))

    def _first_missing(self) -> int:
        return next((n for n in range(self.block_count) if n not in self.blocks), self.block_count)

    def get(self, attribute: int) -> Data | DataAccessResult:
        if attribute == 6 and self.status is ImageStatus.VERIFICATION_INITIATED:
            self._verifying -= 1
            if self._verifying <= 0:
                self.status = self._verified()
        bits = "".join("1" if n in self.blocks else "0" for n in range(self.block_count))
        values = {
            2: Data(DataType.DOUBLE_LONG_UNSIGNED, self.block_size),
            3: Data(DataType.BIT_STRING, BitString.from_bits(bits)),
            4: Data(DataType.DOUBLE_LONG_UNSIGNED, self._first_missing()),
            5: Data(DataType.BOOLEAN, self.enabled),
            6: Data(DataType.ENUM, int(self.status)),
            7: array(structure(Data(DataType.DOUBLE_LONG_UNSIGNED, self.size), octet_string(self.identifier),
                               octet_string(b""))) if self.size else array(),
        }
        return values.get(attribute) or super().get(attribute)

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        if attribute == 5:
            if value.type is not DataType.BOOLEAN:
                return TYPE_UNMATCHED
            self.enabled = value.value
            return SUCCESS
        return super().set(attribute, value)

    def action(self, method: int, parameters: Data | None) -> ActionAnswer:
        handler = {1: self._initiate, 2: self._block, 3: self._verify, 4: self._activate}.get(method)
        if handler is None:
            return super().action(method, parameters)
        if not self.enabled:
            return ACTION_DENIED, None
        return handler(parameters), None

    def _initiate(self, parameters: Data | None) -> ActionResult:
        if not _structure_of(parameters, DataType.OCTET_STRING, DataType.DOUBLE_LONG_UNSIGNED):
            return ACTION_TYPE_UNMATCHED
        self.identifier, self.size = bytes(parameters.value[0].value), parameters.value[1].value
        self.blocks = {}
        self.status = ImageStatus.INITIATED
        return ACTION_SUCCESS

    def _block(self, parameters: Data | None) -> ActionResult:
        if not _structure_of(parameters, DataType.DOUBLE_LONG_UNSIGNED, DataType.OCTET_STRING):
            return ACTION_TYPE_UNMATCHED
        number, block = parameters.value[0].value, bytes(parameters.value[1].value)
        if self.status is not ImageStatus.INITIATED or number >= self.block_count:
            return ACTION_OTHER
        last = number == self.block_count - 1
        expected = self.size - number * self.block_size if last else self.block_size
        if len(block) != expected:
            return ACTION_TYPE_UNMATCHED
        self.blocks[number] = block
        self.meter.blocks_received.append(number)
        return ACTION_SUCCESS

    def _verify(self, parameters: Data | None) -> ActionResult:
        if self.status not in (ImageStatus.INITIATED, ImageStatus.VERIFICATION_FAILED,
                               ImageStatus.VERIFICATION_SUCCESSFUL):
            return ACTION_OTHER
        if self.meter.verify_polls:
            self.status, self._verifying = ImageStatus.VERIFICATION_INITIATED, self.meter.verify_polls
            return ACTION_TEMPORARY_FAILURE
        self.status = self._verified()
        return ACTION_SUCCESS if self.status is ImageStatus.VERIFICATION_SUCCESSFUL else ACTION_OTHER

    def _verified(self) -> ImageStatus:
        complete = self._first_missing() == self.block_count and self.block_count > 0
        return ImageStatus.VERIFICATION_SUCCESSFUL if complete else ImageStatus.VERIFICATION_FAILED

    def _activate(self, parameters: Data | None) -> ActionResult:
        if self.status is not ImageStatus.VERIFICATION_SUCCESSFUL:
            return ACTION_OTHER
        self.status = ImageStatus.ACTIVATION_SUCCESSFUL
        self.meter.firmware = self.identifier
        self.meter.firmware_image = self.image
        return ACTION_SUCCESS


def _structure_of(data: Data | None, *types: DataType) -> bool:
    return (data is not None and data.type is DataType.STRUCTURE and len(data.value) == len(types)
            and all(item.type is t for item, t in zip(data.value, types)))


LDN = Obis(0, 0, 42, 0, 0)
ENERGY = Obis(1, 0, 1, 8, 0)
POWER = Obis(1, 0, 1, 7, 0)
FIRMWARE_ID = Obis(1, 0, 0, 2, 0)
#: Wh per second of simulated consumption (about 1.8 kW).
CONSUMPTION_WH_PER_S = 0.5
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class SimulatedDlmsMeter:
    """The meter's state and objects (see the module docstring)."""

    name: bytes = b"SIM0000000000001"
    clock_offset_s: float = 0.0
    action_delay_s: float = 0.0
    drop_after_blocks: int | None = None
    silent_requests: int = 0
    verify_polls: int = 0
    firmware: bytes = b"FW-1.0"
    firmware_image: bytes = b""
    block_size: int = 64
    disconnect_mode: int = 1
    host_now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    requests: list[tuple[str, int, str, int]] = field(default_factory=list)
    blocks_received: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.disconnect = DisconnectControlObject(self, DISCONNECT_CONTROL, self.disconnect_mode)
        self.limiter = LimiterObject(self, LIMITER, POWER)
        self.calendar = ActivityCalendarObject(self, ACTIVITY_CALENDAR)
        self.image = ImageTransferObject(self, IMAGE_TRANSFER, self.block_size)
        self.clock = ClockObject(self, CLOCK)
        self.message = DataObject(self, MESSAGE_TEXT, lambda: octet_string(b""), writable=DataType.OCTET_STRING)
        objects: list[CosemObject] = [
            DataObject(self, LDN, lambda: octet_string(self.name)),
            self.clock,
            RegisterObject(self, ENERGY, self.energy_wh, 0, 30),
            RegisterObject(self, POWER, lambda: round(CONSUMPTION_WH_PER_S * 3600) if self.disconnect.output_state
                           else 0, 0, 27),
            self.message,
            DataObject(self, FIRMWARE_ID, lambda: octet_string(self.firmware)),
            self.disconnect, self.limiter, self.calendar, self.image,
        ]
        self.objects = {(o.class_id, o.obis): o for o in objects}

    def now(self) -> datetime:
        return self.host_now() + timedelta(seconds=self.clock_offset_s)

    def energy_wh(self) -> int:
        return round((self.host_now() - EPOCH).total_seconds() * CONSUMPTION_WH_PER_S)

    def actions(self, class_id: int | None = None) -> list[tuple[int, str, int]]:
        """The ACTIONs served: (class, OBIS, method), optionally of one class."""
        return [(c, o, i) for kind, c, o, i in self.requests if kind == "action" and class_id in (None, c)]

    # -- services --

    def _find(self, class_id: int, obis: Obis) -> CosemObject | None:
        self.calendar.tick(self.now())
        return self.objects.get((class_id, obis))

    def get(self, class_id: int, obis: Obis, attribute: int) -> Data | DataAccessResult:
        self.requests.append(("get", class_id, obis.dotted, attribute))
        found = self._find(class_id, obis)
        return UNDEFINED if found is None else found.get(attribute)

    def set(self, class_id: int, obis: Obis, attribute: int, value: Data) -> DataAccessResult:
        self.requests.append(("set", class_id, obis.dotted, attribute))
        found = self._find(class_id, obis)
        return UNDEFINED if found is None else found.set(attribute, value)

    def action(self, class_id: int, obis: Obis, method: int, parameters: Data | None) -> ActionAnswer:
        self.requests.append(("action", class_id, obis.dotted, method))
        found = self._find(class_id, obis)
        return (ACTION_UNDEFINED, None) if found is None else found.action(method, parameters)

    # -- the association over the wrapper --

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    settings: ServerSettings | None = None) -> None:
        """One client connection: every APDU answered until the client closes."""
        parser = WrapperParser()
        association = ServerAssociation(settings or ServerSettings())
        try:
            while data := await reader.read(4096):
                parser.receive_data(data)
                while (message := parser.next_message()) is not None:
                    answer = await self._answer(association, message.apdu)
                    if answer is None:  # a fault: cut the connection, unanswered
                        writer.transport.abort()
                        return
                    if not answer:  # a fault: no answer
                        continue
                    writer.write(WrapperMessage(message.destination, message.source, answer).to_bytes())
                await writer.drain()
        except (ConnectionError, DLMSError):
            pass
        finally:
            writer.close()

    async def _answer(self, association: ServerAssociation, apdu: bytes) -> bytes | None:
        try:
            event = association.receive_apdu(apdu)
        except DLMSError as exc:
            return association.refuse(exc)
        if isinstance(event, Reply):
            return event.apdu
        if isinstance(event, BlockWanted):
            return association.next_get_block(UNAVAILABLE, True)
        request = event.request
        if self.silent_requests:
            self.silent_requests -= 1
            self.requests.append(("unanswered", 0, type(request).__name__, 0))
            association.refuse(DLMSError("swallowed"))  # the association forgets the request
            return b""
        if isinstance(request, GetRequestNormal):
            a = request.attribute
            return association.answer_get(self.get(a.class_id, a.instance, a.attribute))
        if isinstance(request, GetRequestWithList):
            return association.answer_get_list([self.get(i.attribute.class_id, i.attribute.instance,
                                                         i.attribute.attribute) for i in request.attributes])
        if isinstance(request, SetRequestNormal):
            a = request.attribute
            return association.answer_set(self.set(a.class_id, a.instance, a.attribute, request.value))
        if isinstance(request, SetRequestWithList):
            return association.answer_set_list([self.set(a.class_id, a.instance, a.attribute, value)
                                                for a, value in zip(request.attributes, request.values)])
        if isinstance(request, ActionRequestNormal):
            m = request.method
            answer = self.action(m.class_id, m.instance, m.method, request.parameters)
            if self.drop_after_blocks is not None and len(self.blocks_received) >= self.drop_after_blocks:
                self.drop_after_blocks = None  # one outage only
                return None
            reply = association.answer_action(*answer)
        else:
            assert isinstance(request, ActionRequestWithList)
            reply = association.answer_action_list([ActionResponseItem(*self.action(m.class_id, m.instance,
                                                                                    m.method, p))
                                                    for m, p in zip(request.methods, request.parameters)])
        if self.action_delay_s:  # carried out at once, answered late
            await asyncio.sleep(self.action_delay_s)
        return reply


class MeterServer:
    """A :class:`SimulatedDlmsMeter` listening on loopback; ``stop()`` and ``start()`` take
    it off the network and back on the same port (an outage), its state kept."""

    def __init__(self, meter: SimulatedDlmsMeter, host: str = "127.0.0.1", port: int = 0,
                 settings: ServerSettings | None = None) -> None:
        self.meter = meter
        self.host = host
        self.port = port
        self.settings = settings
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection (the meter is gone)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            await self.meter.serve(reader, writer, self.settings)
        finally:
            self._connections.discard(writer)


@contextlib.asynccontextmanager
async def serving(meter: SimulatedDlmsMeter, port: int = 0) -> AsyncIterator[MeterServer]:
    """The meter on loopback for the duration of the block."""
    server = MeterServer(meter, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _report(meter: SimulatedDlmsMeter) -> dict[str, Any]:
    return {"output_state": meter.disconnect.output_state, "control_state": int(meter.disconnect.state),
            "firmware": meter.firmware.decode(errors="replace"), "requests": len(meter.requests)}


async def _main(args: argparse.Namespace) -> None:
    meter = SimulatedDlmsMeter(name=args.name.encode(), action_delay_s=args.action_delay_s)
    async with serving(meter, args.port) as server:
        print(f"simulated DLMS meter {args.name} on {server.address} (wrapper, server SAP 1, no security)",
              file=sys.stderr, flush=True)
        while True:
            await asyncio.sleep(60)
            print(_report(meter), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulators.dlms",
                                     description="A simulated DLMS/COSEM meter on loopback (IEC 62056-47 wrapper).")
    parser.add_argument("--port", type=int, default=4061)
    parser.add_argument("--name", default="SIM0000000000001", help="logical device name (up to 16 characters)")
    parser.add_argument("--action-delay-s", type=float, default=0.0, help="answer every ACTION this late")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
