"""Who may run which operation on which meters (``[[operations.permissions]]``).

An operation is permitted when a permission of its identity names its meter (by name or
device id, shell patterns) and either ``"*"``, the operation's name, or the service of each
request it sends (``get``, ``set``, ``action``; read-backs do not count): ``action`` covers a
``disconnect``, ``get`` a ``disconnect-state``. A firmware transfer needs ``firmware`` (or
``"*"``). Cancelling another identity's operation needs ``cancel``; an identity may always
cancel its own. The local command line (identity ``local``) is the operator, who writes the
configuration: it is always permitted.

Identities: MQTT ``cmd/op/IDENTITY`` (the broker's ACL lets only that client publish there);
the DLMS/COSEM server's clients ``SERVER:SAP`` (``dlms:1``, the management client, HLS-GMAC).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from gateway.config import OperationPermission
from gateway.operations.model import Request

LOCAL = "local"


def permits(permissions: Sequence[OperationPermission], identity: str, request: Request, device: str | None) -> bool:
    """Whether ``identity`` may run ``request`` on its meter (``device``: its id, if known)."""
    if identity == LOCAL:
        return True
    services = {step.kind.value for step in request.steps if not step.readback}
    for permission in _of(permissions, identity, request.meter, device):
        granted = set(permission.operations)
        if "*" in granted or request.name in granted or (services and services <= granted):
            return True
    return False


def may_cancel(permissions: Sequence[OperationPermission], identity: str, request: Request,
               device: str | None) -> bool:
    if identity in (LOCAL, request.identity):
        return True
    return any("cancel" in p.operations or "*" in p.operations
               for p in _of(permissions, identity, request.meter, device))


def _of(permissions: Sequence[OperationPermission], identity: str, meter: str,
        device: str | None) -> list[OperationPermission]:
    names = [meter] if device is None else [meter, device]
    return [p for p in permissions if p.identity == identity
            and any(fnmatchcase(name, pattern) for pattern in p.meters for name in names)]
