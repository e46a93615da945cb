"""An HES's SET and ACTION on a meter's logical device, carried out on the real meter.

The server serves GETs from the store (the gateway's view of each meter); a SET or ACTION
of the management client (SAP 1, HLS-GMAC) on a meter's logical device goes to the meter
through the operations relay (:meth:`~gateway.operations.OperationRelay.pass_through`), in
order with the meter's other operations, and the server answers with what the meter
answered, waiting at most ``operations.dlms_wait_s``:

==============================================  ===========================================
the meter answered                              its own Data-Access-Result / Action-Result
                                                (and the ACTION's return data)
the meter answered with a service error         other-reason
not permitted (``[[operations.permissions]]``,  read-write-denied, and ``security.refused``
identity ``SERVER:SAP``, e.g. ``dlms:1``)
not reached in time (unreachable, line busy),   temporary-failure; with ``dlms_queue`` the
timed out, unknown                              operation stays queued and its outcome comes
                                                as ``operation.result``
==============================================  ===========================================

Objects that belong to the logical device itself (its associations, security setups, SAP
assignment, push setup) are never passed through; nor is anything on a logical device whose
meter the relay does not reach (an M-Bus meter), nor anything of the public client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.codecs.dlms.axdr import Data
from gateway.codecs.dlms.services import ActionResult, AttributeDescriptor, DataAccessResult, MethodDescriptor
from gateway.operations.data_json import data_from_json
from gateway.operations.model import Kind, Operation, Outcome, Step
from gateway.uplinks.dlms_server.objects import Request, Role

if TYPE_CHECKING:
    from gateway.operations import OperationRelay

#: Association LN, SAP assignment, Push setup, Security setup: the gateway's own.
LOCAL_CLASSES = frozenset({15, 17, 40, 64})
TEMPORARY_FAILURE, READ_WRITE_DENIED, OTHER_REASON = 2, 3, 250

Answer = DataAccessResult | tuple[ActionResult, Data | None]


async def pass_through(relay: OperationRelay | None, server: str, context: Request,
                       descriptor: AttributeDescriptor | MethodDescriptor, data: Data | None) -> Answer | None:
    """The meter's answer to a SET (``descriptor`` an attribute) or ACTION, or None when it is
    not one to pass through (the server's own objects answer it)."""
    device = context.device.device
    if relay is None or device is None or context.role is not Role.MANAGEMENT or \
            descriptor.class_id in LOCAL_CLASSES:
        return None
    action = isinstance(descriptor, MethodDescriptor)
    step = Step(Kind.ACTION if action else Kind.SET, descriptor.class_id, descriptor.instance,
                descriptor.method if action else descriptor.attribute, data)
    operation = await relay.pass_through(device, step, f"{server}:{context.role.value}", f"dlms:{server}")
    if operation is None:
        return None
    code, returned = _answer(operation)
    return (ActionResult(code), returned) if action else DataAccessResult(code)


def _answer(operation: Operation) -> tuple[int, Data | None]:
    """The result code (and return data) the HES gets for the operation as it stands."""
    if operation.outcome is Outcome.REFUSED:
        return READ_WRITE_DENIED, None
    if operation.outcome not in (Outcome.SUCCESS, Outcome.DATA_ACCESS_RESULT) or not operation.results:
        return TEMPORARY_FAILURE, None
    result: dict[str, Any] = operation.results[0]
    code = result.get("code")
    returned = result.get("data")
    return (OTHER_REASON if code is None else code), (None if returned is None else data_from_json(returned))
