"""The audit log: an append-only, hash-chained record of security-relevant actions.

What is audited: signing key generation and rotation, meter keys imported or replaced,
meters registered or removed, configurations applied, remote commands that change the
gateway, and every step of a device's life (``device_*``: discovered, installed,
commissioned, exchanged, re-keyed, calibrated …, each sent as its ``device.*`` event). Each entry is ``{id, at, action, actor, details, prev, hash}`` where ``hash`` is
SHA-256 over the canonical JSON of the other fields, ``prev`` the hash of the entry before
(empty for the first): changing or deleting an entry in the middle breaks every hash after
it (:func:`verify_chain`), and the newest hash travels to the HES in each ``audit.*`` event,
so cutting entries off the end shows there too.

Why a table in the store rather than a file: the entry and its ``audit.ACTION`` event are
committed in one SQLite transaction (both or neither, durable like the data), the store is
already the one place the gateway writes durably, and retention never touches the table.
A quarantined (corrupt) store keeps its audit table in the moved-aside file; the events
already sent keep the HES's copy. Details never hold a secret: a meter key change names
the meter, never the key.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from typing import Any

from gateway.events import make_event
from gateway.model import Event, utc_now

#: Audit actions and the event code each one is sent as.
ACTIONS = {
    "key_generated": "audit.key_generated",
    "key_rotated": "audit.key_rotated",
    "meter_key_changed": "audit.meter_key_changed",
    "meter_added": "audit.meter_added",
    "meter_removed": "audit.meter_removed",
    "config_applied": "audit.config_applied",
    "remote_command": "audit.remote_command",
    # the device lifecycle: each transition is one audit entry, sent as its device.* event
    **{f"device_{name}": f"device.{name}" for name in (
        "discovered", "installed", "commissioned", "commissioning_failed", "in_service", "suspended", "faulty",
        "exchanged", "decommissioned", "rekeyed", "key_switched", "calibration_started", "calibrated")},
}


def chain_hash(entry: dict[str, Any]) -> str:
    fields = {key: entry[key] for key in ("id", "at", "action", "actor", "details", "prev")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verify_chain(entries: list[dict[str, Any]]) -> int | None:
    """The id of the first entry whose hash or link does not hold, or None when the whole
    chain is intact."""
    prev = ""
    for entry in entries:
        if entry["prev"] != prev or chain_hash(entry) != entry["hash"]:
            return entry["id"]
        prev = entry["hash"]
    return None


def local_actor() -> str:
    """Who runs a command on this machine: the login name (or uid), and sudo's caller."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid {os.getuid()}"
    caller = os.environ.get("SUDO_USER")
    return f"{name} (sudo by {caller})" if caller else name


def audit_event(entry: dict[str, Any]) -> Event:
    """The event of an audit entry; a device lifecycle entry's event names the device
    (``details["device"]``, the identity its readings carry) and says what happened."""
    details = {key: value if isinstance(value, int) else str(value) for key, value in entry["details"].items()
               if key != "message"}
    message = entry["details"].get("message") or f"{entry['action']} by {entry['actor']}"
    return make_event(ACTIONS[entry["action"]], f"audit #{entry['id']}: {message}", source="audit",
                      device=entry["details"].get("device") or None,
                      details={**details, "actor": entry["actor"], "audit_id": entry["id"],
                               "audit_hash": entry["hash"]})


async def record(store: Any, action: str, actor: str, details: dict[str, Any]) -> dict[str, Any]:
    """Append one action to the audit log of ``store`` (open for writing) and store its event."""
    if action not in ACTIONS:
        raise KeyError(f"not an audit action: {action}")
    entry = {"at": utc_now().isoformat(), "action": action, "actor": actor, "details": details}
    return await store.append_audit(entry, audit_event)
