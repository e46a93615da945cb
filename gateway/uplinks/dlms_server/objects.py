"""The COSEM object tree the gateway serves (Blue Book, IEC 62056-6-2): interface classes,
and the objects of the management logical device and of each meter's logical device.

Every logical device has: the current association ``0-0:40.0.0*255`` and one Association LN
per client (``0-0:40.0.1`` public client, ``0-0:40.0.2`` management client), their Security
setups (``0-0:43.0.1``, ``0-0:43.0.2``), the logical device name ``0-0:42.0.0`` and the Clock
``0-0:1.0.0`` (the gateway's clock in UTC; it cannot be set or adjusted: read-write-denied).

The management logical device (SAP 1) adds the SAP assignment ``0-0:41.0.0`` (class 17), the
event log ``0-0:99.98.0`` (class 7, the store's events) with its column objects, the Push
setup ``0-0:25.9.0`` (class 40) and the records waiting to be pushed ``0-0:129.2.0``. A
meter's logical device adds a Register (class 3) or Data (class 1) object per quantity,
its readings profile ``0-0:99.1.0`` (class 7) and the quantity directory ``0-0:129.0.0``.

Access: the management client reads everything and writes what is writable (the Push
setup's destination, randomisation, retries and delay). The public client sees the logical
device name, the current association and, in the management logical device, the SAP
assignment, read-only; any other object of the device is read-write-denied to it. Objects
that do not exist are object-undefined, an object asked with another class
object-class-inconsistent, an attribute without a value yet object-unavailable.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.codecs.dlms import acse
from gateway.codecs.dlms.axdr import BitString, Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.selective import CaptureObject
from gateway.codecs.dlms.server import ServerAssociation
from gateway.codecs.dlms.services import ActionResult, DataAccessResult, GetDataResult
from gateway.uplinks.dlms_server import mapping
from gateway.uplinks.dlms_server.profiles import EVENT_COLUMNS, EVENT_LOG, METER_PROFILE, BufferSource

if TYPE_CHECKING:
    from gateway.uplinks.dlms_server.registry import Meter, Quantity

SUCCESS = DataAccessResult(0)
TEMPORARY_FAILURE = DataAccessResult(2)
READ_WRITE_DENIED = DataAccessResult(3)
OBJECT_UNDEFINED = DataAccessResult(4)
CLASS_INCONSISTENT = DataAccessResult(9)
OBJECT_UNAVAILABLE = DataAccessResult(11)
TYPE_UNMATCHED = DataAccessResult(12)
ACTION_SUCCESS = ActionResult(0)
ACTION_TEMPORARY_FAILURE = ActionResult(2)
ACTION_DENIED = ActionResult(3)
ACTION_UNDEFINED = ActionResult(4)

# Attribute access modes and method access modes (Blue Book 4.4.4, class 15 version 1).
NO_ACCESS, READ, WRITE, READ_WRITE = 0, 1, 2, 3
METHOD_NO_ACCESS, METHOD_ACCESS = 0, 1

CURRENT_ASSOCIATION = Obis(0, 0, 40, 0, 0)
LOGICAL_DEVICE_NAME = Obis(0, 0, 42, 0, 0)
CLOCK = Obis(0, 0, 1, 0, 0)
SAP_ASSIGNMENT = Obis(0, 0, 41, 0, 0)
PUSH_SETUP = Obis(0, 0, 25, 9, 0)
PENDING_RECORDS = Obis(0, 0, mapping.GATEWAY_C, 2, 0)
DIRECTORY = Obis(0, 0, mapping.GATEWAY_C, 0, 0)


class Role(enum.Enum):
    """The clients of the gateway, by client SAP (Green Book: 16 public, 1 management)."""

    PUBLIC = 0x10
    MANAGEMENT = 0x01

    @property
    def association(self) -> Obis:
        return Obis(0, 0, 40, 0, 1 if self is Role.PUBLIC else 2)

    @property
    def security_setup(self) -> Obis:
        return Obis(0, 0, 43, 0, 1 if self is Role.PUBLIC else 2)

    @property
    def context(self) -> int:
        return acse.LOGICAL_NAME if self is Role.PUBLIC else acse.LOGICAL_NAME_WITH_CIPHERING

    @property
    def mechanism(self) -> int:
        return acse.MECHANISM_NONE if self is Role.PUBLIC else acse.MECHANISM_HLS_GMAC


@dataclass
class Services:
    """What objects need of the server: set by :class:`~.server.DlmsServer`."""

    system_title: bytes
    management_name: bytes
    clock: Callable[[], Any]
    conformance: dict[Role, int]
    max_pdu_size: int
    meters: Callable[[], list[Meter]]
    push: Any  # the Pusher, or None without push
    event_log: BufferSource
    buffer_of: Callable[[Meter], BufferSource]


@dataclass
class Request:
    """Who asks, of which logical device, in which association."""

    role: Role
    device: LogicalDevice
    association: ServerAssociation


# --- interface classes -------------------------------------------------------------------


class CosemObject:
    """One object: its class, logical name and what each client may do with it."""

    class_id: ClassVar[int] = 0
    version: ClassVar[int] = 0
    #: attribute -> access mode for the management client (attribute 1 is always readable)
    attributes: ClassVar[dict[int, int]] = {}
    #: method -> access mode for the management client
    methods: ClassVar[dict[int, int]] = {}
    #: attribute -> its access selectors
    selectors: ClassVar[dict[int, tuple[int, ...]]] = {}

    def __init__(self, logical_name: Obis, *, public: bool = False) -> None:
        self.logical_name = logical_name
        self.public = public

    def access(self, role: Role, attribute: int) -> int:
        mode = READ if attribute == 1 else self.attributes.get(attribute, NO_ACCESS)
        if role is Role.PUBLIC:
            return mode & READ if self.public else NO_ACCESS
        return mode

    def method_access(self, role: Role, method: int) -> int:
        return self.methods.get(method, METHOD_NO_ACCESS) if role is Role.MANAGEMENT else METHOD_NO_ACCESS

    def has_attribute(self, attribute: int) -> bool:
        return attribute == 1 or attribute in self.attributes

    async def get(self, attribute: int, request: Request) -> GetDataResult:
        if attribute == 1:
            return octet_string(self.logical_name.to_bytes())
        return await self.read(attribute, request)

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        return OBJECT_UNAVAILABLE

    async def set(self, attribute: int, value: Data, request: Request) -> DataAccessResult:
        return READ_WRITE_DENIED

    async def action(self, method: int, parameters: Data | None, request: Request) -> tuple[ActionResult, Data | None]:
        return ACTION_DENIED, None

    def list_element(self, role: Role) -> Data:
        """This object in an Association LN object_list (Blue Book 4.4.4, version 1)."""
        attributes = [structure(Data(DataType.INTEGER, a), Data(DataType.ENUM, self.access(role, a)),
                                array(*(Data(DataType.INTEGER, s) for s in self.selectors[a])) if a in self.selectors
                                else Data(DataType.NULL_DATA))
                      for a in (1, *self.attributes)]
        methods = [structure(Data(DataType.INTEGER, m), Data(DataType.ENUM, self.method_access(role, m)))
                   for m in self.methods]
        return structure(Data(DataType.LONG_UNSIGNED, self.class_id), Data(DataType.UNSIGNED, self.version),
                         octet_string(self.logical_name.to_bytes()), structure(array(*attributes), array(*methods)))


class DataObject(CosemObject):
    """Data (class 1): ``value`` from a function (None: object-unavailable)."""

    class_id = 1
    attributes = {2: READ}

    def __init__(self, logical_name: Obis, value: Callable[[], Data | None], *, public: bool = False) -> None:
        super().__init__(logical_name, public=public)
        self.value = value

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        value = self.value()
        return OBJECT_UNAVAILABLE if value is None else value


class RegisterObject(CosemObject):
    """Register (class 3): a meter quantity, value (the latest reading) and scaler_unit."""

    class_id = 3
    attributes = {2: READ, 3: READ}
    methods = {1: METHOD_NO_ACCESS}  # reset: the gateway does not change what meters measured

    def __init__(self, quantity: Quantity) -> None:
        super().__init__(quantity.obis)
        self.quantity = quantity

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        if attribute == 3:
            return self.quantity.scaler_unit
        value = self.quantity.current()
        return OBJECT_UNAVAILABLE if value is None else value


class ClockObject(CosemObject):
    """Clock (class 8): the gateway's clock, in UTC; setting or adjusting it is denied."""

    class_id = 8
    attributes = {a: READ for a in range(2, 10)}
    methods = {m: METHOD_NO_ACCESS for m in range(1, 7)}

    def __init__(self, clock: Callable[[], Any]) -> None:
        super().__init__(CLOCK)
        self.clock = clock

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        if attribute == 2:
            return mapping.date_time_data(self.clock())
        unspecified = octet_string(b"\xff" * 12)
        return {
            3: Data(DataType.LONG, 0),            # time_zone: UTC
            4: Data(DataType.UNSIGNED, 0),        # status: valid
            5: unspecified, 6: unspecified,       # daylight_savings_begin/end: none in UTC
            7: Data(DataType.INTEGER, 0),
            8: Data(DataType.BOOLEAN, False),
            9: Data(DataType.ENUM, 1),            # clock_base: internal crystal (NTP-disciplined)
        }[attribute]


class AssociationObject(CosemObject):
    """Association LN (class 15, version 1): the current association (``client`` None) or
    the association of one client."""

    class_id = 15
    version = 1
    attributes = {**{a: READ for a in range(2, 10)}, 7: NO_ACCESS}  # the secret is never read
    methods = {1: METHOD_ACCESS}  # reply_to_HLS_authentication (the codec answers it)

    def __init__(self, logical_name: Obis, client: Role | None, services: Services) -> None:
        super().__init__(logical_name, public=client is None)
        self.client = client
        self.services = services

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        role = self.client or request.role
        current = self.client is None or self.client is request.role
        if attribute == 2:
            return array(*(o.list_element(role) for o in request.device.visible(role)))
        if attribute == 3:
            return structure(Data(DataType.INTEGER, role.value), Data(DataType.LONG_UNSIGNED, request.device.sap))
        if attribute in (4, 6):
            last = role.context if attribute == 4 else role.mechanism
            return structure(*(Data(t, v) for t, v in zip(_OID_TYPES, (2, 16, 756, 5, 8, 1 if attribute == 4 else 2,
                                                                       last), strict=True)))
        if attribute == 5:
            return self._context_info(role, request if current else None)
        if attribute == 8:
            return Data(DataType.ENUM, 2 if current else 0)  # associated / non-associated
        if attribute == 9:
            return octet_string(role.security_setup.to_bytes())
        return READ_WRITE_DENIED

    def _context_info(self, role: Role, request: Request | None) -> Data:
        negotiated = request.association.negotiated if request is not None else None
        conformance = negotiated.negotiated_conformance if negotiated else self.services.conformance[role]
        return structure(
            Data(DataType.BIT_STRING, BitString(24, conformance.to_bytes(3, "big"))),
            Data(DataType.LONG_UNSIGNED, self.services.max_pdu_size),
            Data(DataType.LONG_UNSIGNED, request.association.client_max_pdu_size if negotiated else 0xFFFF),
            Data(DataType.UNSIGNED, 6),
            Data(DataType.INTEGER, 0),
            octet_string(b""),
        )


_OID_TYPES = (DataType.UNSIGNED, DataType.UNSIGNED, DataType.LONG_UNSIGNED, DataType.UNSIGNED, DataType.UNSIGNED,
              DataType.UNSIGNED, DataType.UNSIGNED)


class SecuritySetupObject(CosemObject):
    """Security setup (class 64, version 0) of one client's association: policy, suite 0,
    the client's system title (as learnt in its current association) and the server's."""

    class_id = 64
    attributes = {2: READ, 3: READ, 4: READ, 5: READ}
    methods = {1: METHOD_NO_ACCESS, 2: METHOD_NO_ACCESS}  # security_activate, global_key_transfer

    def __init__(self, client: Role, services: Services) -> None:
        super().__init__(client.security_setup)
        self.client = client
        self.services = services

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        if attribute == 2:  # 0: no security; 3: all messages authenticated and encrypted
            return Data(DataType.ENUM, 0 if self.client is Role.PUBLIC else 3)
        if attribute == 3:
            return Data(DataType.ENUM, 0)
        if attribute == 4:
            mine = self.client is request.role and request.association.client_system_title
            return octet_string(mine or b"")
        return octet_string(self.services.system_title)


class SapAssignmentObject(CosemObject):
    """SAP assignment (class 17): every logical device of the gateway, SAP and name."""

    class_id = 17
    attributes = {2: READ}
    methods = {1: METHOD_NO_ACCESS}  # connect_logical_device

    def __init__(self, services: Services) -> None:
        super().__init__(SAP_ASSIGNMENT, public=True)
        self.services = services

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        devices = [(1, self.services.management_name)] + [(m.sap, m.name) for m in self.services.meters()]
        return array(*(structure(Data(DataType.LONG_UNSIGNED, sap), octet_string(name)) for sap, name in devices))


class ProfileObject(CosemObject):
    """Profile generic (class 7, version 1) read from the store: attribute 2 is streamed
    by the session (see :mod:`~gateway.uplinks.dlms_server.profiles`)."""

    class_id = 7
    version = 1
    attributes = {a: READ for a in range(2, 9)}
    methods = {1: METHOD_NO_ACCESS, 2: METHOD_NO_ACCESS}  # reset, capture: the store decides
    selectors = {2: (1, 2)}

    def __init__(self, logical_name: Obis, source: Callable[[], BufferSource], store: Any) -> None:
        super().__init__(logical_name)
        self.source = source
        self.store = store

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        if attribute == 3:
            return array(*(c.to_data() for c in self.source().columns))
        if attribute == 4:
            return Data(DataType.DOUBLE_LONG_UNSIGNED, 0)  # captured when the meter is read
        if attribute == 5:
            return Data(DataType.ENUM, 1)  # fifo
        if attribute == 6:
            return CaptureObject(0, Obis(0, 0, 0, 0, 0, 0), 0, 0).to_data()
        if attribute in (7, 8):
            return Data(DataType.DOUBLE_LONG_UNSIGNED, await self.source().count(self.store.last_seq, None, None))
        return OBJECT_UNAVAILABLE  # attribute 2 is streamed, never read here


class PushSetupObject(CosemObject):
    """Push setup (class 40, version 0). ``push`` is the Pusher (None: push is not
    configured, and nothing is writable)."""

    class_id = 40
    attributes = {2: READ, 3: READ_WRITE, 4: READ, 5: READ_WRITE, 6: READ_WRITE, 7: READ_WRITE}
    methods = {1: METHOD_ACCESS}  # push

    def __init__(self, services: Services) -> None:
        super().__init__(PUSH_SETUP)
        self.services = services

    def access(self, role: Role, attribute: int) -> int:
        mode = super().access(role, attribute)
        return mode if self.services.push is not None else mode & READ

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        push = self.services.push
        if attribute == 2:
            return array(*(c.to_data() for c in PUSH_OBJECTS))
        if attribute == 3:
            destination = push.settings.destination.encode() if push else b""
            return structure(Data(DataType.ENUM, 0), octet_string(destination), Data(DataType.ENUM, 0))
        if attribute == 4:
            return array()  # no communication window: any time
        settings = push.settings if push else None
        return {
            5: Data(DataType.LONG_UNSIGNED, settings.randomisation_s if settings else 0),
            6: Data(DataType.UNSIGNED, settings.retries if settings else 0),
            7: Data(DataType.LONG_UNSIGNED, settings.retry_delay_s if settings else 0),
        }[attribute]

    async def set(self, attribute: int, value: Data, request: Request) -> DataAccessResult:
        push = self.services.push
        if push is None or self.access(request.role, attribute) & WRITE == 0:
            return READ_WRITE_DENIED
        return await push.change(attribute, value)

    async def action(self, method: int, parameters: Data | None, request: Request) -> tuple[ActionResult, Data | None]:
        if self.services.push is None:
            return ACTION_TEMPORARY_FAILURE, None
        self.services.push.trigger()
        return ACTION_SUCCESS, None


#: What a DataNotification carries (push_object_list): the Push setup's name, the gateway's
#: logical device name and the records pushed.
PUSH_OBJECTS = (
    CaptureObject(40, PUSH_SETUP, 1),
    CaptureObject(1, LOGICAL_DEVICE_NAME, 2),
    CaptureObject(1, PENDING_RECORDS, 2),
)


# --- logical devices -------------------------------------------------------------------


class LogicalDevice:
    """One logical device: its SAP, name and objects (by logical name, in list order);
    ``device`` is the meter's device id (None for the management logical device)."""

    def __init__(self, sap: int, name: bytes, objects: list[CosemObject], version: int = 0,
                 device: str | None = None) -> None:
        self.sap = sap
        self.name = name
        self.objects = {o.logical_name: o for o in objects}
        self.version = version
        self.device = device

    def visible(self, role: Role) -> list[CosemObject]:
        if role is Role.MANAGEMENT:
            return list(self.objects.values())
        return [o for o in self.objects.values() if o.public]


def _common(name: bytes, services: Services) -> list[CosemObject]:
    return [
        AssociationObject(CURRENT_ASSOCIATION, None, services),
        AssociationObject(Role.PUBLIC.association, Role.PUBLIC, services),
        AssociationObject(Role.MANAGEMENT.association, Role.MANAGEMENT, services),
        SecuritySetupObject(Role.PUBLIC, services),
        SecuritySetupObject(Role.MANAGEMENT, services),
        DataObject(LOGICAL_DEVICE_NAME, lambda: octet_string(name), public=True),
        ClockObject(services.clock),
    ]


def management_device(services: Services, store: Any,
                      pending: Callable[[], Awaitable[Data]]) -> LogicalDevice:
    """The management logical device (SAP 1)."""
    objects = [
        *_common(services.management_name, services),
        SapAssignmentObject(services),
        ProfileObject(EVENT_LOG, lambda: services.event_log, store),
        *(DataObject(c.logical_name, lambda: None) for c in EVENT_COLUMNS[1:]),
        PushSetupObject(services),
        _PendingObject(pending),
    ]
    return LogicalDevice(1, services.management_name, objects)


class _PendingObject(DataObject):
    """The records the next push carries (after the push cursor), as the push encodes them."""

    def __init__(self, pending: Callable[[], Awaitable[Data]]) -> None:
        super().__init__(PENDING_RECORDS, lambda: None)
        self.pending = pending

    async def read(self, attribute: int, request: Request) -> GetDataResult:
        return await self.pending()


def meter_device(meter: Meter, services: Services, store: Any) -> LogicalDevice:
    """The logical device of a meter."""
    quantities = list(meter.quantities.values())
    objects: list[CosemObject] = [*_common(meter.name, services)]
    for quantity in quantities:
        if quantity.numeric:
            objects.append(RegisterObject(quantity))
        else:
            objects.append(DataObject(quantity.obis, quantity.current))
    source = services.buffer_of(meter)
    objects.append(ProfileObject(METER_PROFILE, lambda: source, store))
    directory = array(*(structure(octet_string(q.obis.to_bytes()), mapping.text_data(q.name),
                                  Data(DataType.NULL_DATA) if q.unit is None else mapping.text_data(q.unit))
                        for q in quantities))
    objects.append(DataObject(DIRECTORY, lambda: directory))
    return LogicalDevice(meter.sap, meter.name, objects, meter.version, meter.device)
