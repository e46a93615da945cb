"""The event vocabulary: every event code the gateway raises, its severity and its meaning.

Events are records (stored, sequenced, signed and sent like readings). Their ``code`` is a
dotted name from :data:`EVENTS`, and nowhere else: :func:`make_event` refuses a code that
is not in the table, and a test checks that every code written in ``gateway/`` is here and
that README.md documents each of them. An HES can rely on the table as the contract.

Severity is the code's own (a ``store.dropped`` of unsent records is raised to ``error``
by the store: callers may override the default, never invent a code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.model import Event, Severity, utc_now


@dataclass(frozen=True, slots=True)
class EventKind:
    severity: Severity
    description: str


I, W, E, C = Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL

#: code → (default severity, what it means). Grouped by source; README.md has the same table.
EVENTS: Mapping[str, EventKind] = {
    # -- the gateway process ------------------------------------------------------------
    "gateway.start": EventKind(I, "the gateway started; details: version, reason (start, or restart after an "
                                  "unclean stop: crash, watchdog or power loss), buses, meters, config_hash"),
    "gateway.stop": EventKind(I, "the gateway stops; details: reason (signal with its name, requested, fatal "
                                 "error with the error)"),
    "gateway.child_restart": EventKind(W, "a bus, uplink or server task failed and is restarted alone; details: "
                                          "child, restarts"),
    "clock.stepped": EventKind(W, "the gateway's wall clock jumped relative to its monotonic clock (NTP "
                                  "correction, manual setting); details: step_s, before, after"),
    # -- configuration, keys and the audit log ------------------------------------------
    "config.changed": EventKind(I, "the running configuration changed; details: old_hash, new_hash, source"),
    "config.rejected": EventKind(W, "a new configuration was refused before it was tried (invalid); details: "
                                    "new_hash, source, problems"),
    "config.rolled_back": EventKind(E, "a new configuration failed to start and the previous one runs again; "
                                       "details: old_hash, new_hash, reason"),
    "key.rotated": EventKind(W, "the gateway's signing key was replaced; details: old_kid, new_kid"),
    "audit.key_generated": EventKind(I, "audit: a signing key was created; details: kid, actor"),
    "audit.key_rotated": EventKind(W, "audit: the signing key was rotated; details: old_kid, new_kid, actor"),
    "audit.meter_key_changed": EventKind(W, "audit: a meter's key was imported or replaced (never the key); "
                                            "details: meter, actor"),
    "audit.meter_added": EventKind(I, "audit: a meter was registered; details: meter, actor"),
    "audit.meter_removed": EventKind(W, "audit: a meter was removed from the registry; details: meter, actor"),
    "audit.config_applied": EventKind(W, "audit: a configuration was applied; details: old_hash, new_hash, "
                                         "source, actor"),
    "audit.remote_command": EventKind(W, "audit: a remote command that changes the gateway was executed; "
                                         "details: command, uplink, ok"),
    # -- meters and buses ----------------------------------------------------------------
    "comm.failed": EventKind(W, "a meter went from ok to failing (failing_after consecutive failures); "
                                "details: meter, reason, consecutive_failures"),
    "comm.unreachable": EventKind(E, "a failing meter became unreachable (unreachable_after consecutive "
                                     "failures); details: meter, reason, consecutive_failures"),
    "comm.recovered": EventKind(I, "a failing or unreachable meter answers (or is heard) again; details: "
                                   "meter, previous state, failures"),
    "security.refused": EventKind(W, "refused for security: a meter's telegrams or association (wrong key, "
                                     "failed MAC, plaintext from a keyed meter), or an HES client of the "
                                     "DLMS/COSEM server; details: meter or peer, reason, count"),
    "clock.drift": EventKind(W, "a meter's clock is off from the gateway's by more than allowed; details: meter, "
                                "deviation"),
    "clock.set": EventKind(I, "the gateway set a meter's clock; details: meter, before_s, after_s, method"),
    "meter.event": EventKind(I, "an entry of a meter's own event log; details: meter, event_code, log columns"),
    "meter.action": EventKind(I, "an operation (ACTION) was carried out on a meter; details: meter, obis, method, "
                                 "result"),
    "operation.result": EventKind(I, "an operation on a meter ended (relay of HES operations); warning unless it "
                                     "succeeded; details: id, meter, operation, outcome (success, "
                                     "data-access-result, timeout, expired, unknown, cancelled, refused), identity, "
                                     "source, results (JSON: each request, its result and data), error, progress"),
    "modbus.exception": EventKind(W, "a Modbus meter refused a read with an exception response (the register "
                                     "map does not fit the meter); once per run of failures; details: meter, unit, "
                                     "request, exception_code, exception"),
    "dongle.reset": EventKind(W, "a silent radio dongle was reopened and initialised again; details: "
                                 "silent_s, resets"),
    "meter.alarm": EventKind(W, "a device's status or error flags changed (EN 13757-3 status byte: application "
                                "busy/error, power low, permanent/temporary error, manufacturer bits; an error flags "
                                "record); raised on change, not per telegram; details: meter, device, status, set, "
                                "cleared"),
    # -- the device lifecycle (each one the event of an audit entry: details also carry actor,
    #    audit_id and audit_hash) -------------------------------------------------------------
    "device.discovered": EventKind(I, "a device was heard on the air or found by a bus scan and registered as "
                                      "discovered (nothing of it is stored until it is installed); details: name, "
                                      "device, manufacturer, id, version, device_type, bus, first_seen, how"),
    "device.installed": EventKind(I, "a device was bound to a metering point and its keys installed; details: "
                                     "name, point, device"),
    "device.commissioned": EventKind(I, "a device passed its commissioning checks (authenticated read, identity, "
                                        "clock, metrological identification); details: name, point, device, checks"),
    "device.commissioning_failed": EventKind(W, "a commissioning check failed; the device stays installed; details: "
                                                "name, point, check, reason"),
    "device.in_service": EventKind(I, "a device is read by the running configuration (after commissioning, a "
                                      "suspension or a fault); details: name, point, previous"),
    "device.suspended": EventKind(W, "a device is no longer read, until resumed; details: name, point, reason"),
    "device.faulty": EventKind(E, "a device reports a permanent error (M-Bus status byte); it is still read, and "
                                  "in service again when the error clears; details: name, point, reason"),
    "device.exchanged": EventKind(W, "a device was replaced at its metering point; details: name, point, "
                                     "replaced_by, final_seq, final_reading, first_seq, first_reading"),
    "device.decommissioned": EventKind(W, "a device was taken out of service for good; details: name, point, "
                                          "final_seq, final_reading"),
    "device.rekeyed": EventKind(W, "a device got new keys (DLMS: transferred with global_key_transfer; wireless: "
                                   "installed in the gateway); the previous key is accepted until overlap_until; "
                                   "details: name, method, generation, overlap_until"),
    "device.key_switched": EventKind(I, "a re-keyed device was read under its new key for the first time; details: "
                                        "name, generation"),
    "device.calibration_started": EventKind(W, "a device is being calibrated: its readings are flagged "
                                               "`calibration` until it ends; details: name, point, before"),
    "device.calibrated": EventKind(I, "a calibration ended and its record was kept; details: name, point, "
                                      "certificate, before, after"),
    # -- the store -------------------------------------------------------------------------
    "store.dropped": EventKind(W, "the oldest records were dropped (age, size or full disk); error when "
                                  "unsent ones were among them; details: reason, count, per device"),
    "store.quarantined": EventKind(E, "a corrupt store file was moved aside and a fresh one started"),
    "store.disk_full": EventKind(E, "the disk holding the store is full; polling waits"),
    "store.recovered": EventKind(I, "the store can write again after a full disk"),
    # -- uplinks ---------------------------------------------------------------------------
    "uplink.connected": EventKind(I, "an uplink connected to its broker (once per change of state, not per "
                                     "retry); details: uplink, broker"),
    "uplink.disconnected": EventKind(W, "an uplink lost (or could not get) its broker connection; details: "
                                        "uplink, broker, error"),
}


def make_event(code: str, message: str, *, occurred_at: datetime | None = None, device: str | None = None,
               source: str | None = None, details: Mapping[str, str | int] | None = None,
               severity: Severity | None = None) -> Event:
    """An :class:`Event` of a code from :data:`EVENTS`, with the code's severity unless one
    is given; ``KeyError`` for a code that is not in the vocabulary (a defect)."""
    kind = EVENTS[code]
    return Event(code=code, severity=severity or kind.severity, message=message,
                 occurred_at=occurred_at or utc_now(), device=device, source=source, details=dict(details or {}))
