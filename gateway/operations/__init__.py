"""The operations relay: the HES acting on meters through the gateway (disconnect and
reconnect, limiter thresholds, tariff calendars, clock, messages, firmware, and any GET,
SET or ACTION), queued while a meter is unreachable, carried out at most once, each
outcome reported as an ``operation.result`` event.

=================  ==========================================================================
``model``          steps, operations, states and outcomes
``data_json``      COSEM Data as JSON with explicit types (requests, results, events)
``named``          the named operations, each a builder of the generic requests
``queue``          the durable queue: a table in the store, outcome and event in one transaction
``relay``          :class:`OperationRelay`, the daemon's side: workers per meter, pass-through
``executor``       the requests of one operation in one association
``image_transfer`` firmware image transfer, resumable
``images``         the firmware images the gateway holds (files, uploads in chunks)
``permissions``    which HES identity may run which operation on which meters
``commands``       the MQTT commands (``op``, ``op-status``, ``op-cancel``, ``op-image``) and the
                   local control socket's (``op.submit`` ...)
=================  ==========================================================================
"""

from gateway.operations.model import Operation, OperationError, Outcome, Request, State, Step
from gateway.operations.relay import OperationRelay

__all__ = ["Operation", "OperationError", "OperationRelay", "Outcome", "Request", "State", "Step"]
