"""What leaves for the HES: one record as a JSON object, a batch as compact JSON bytes.

Values travel exactly (``model.value_text``: decimal strings, ISO 8601, hex); nothing is
omitted, a missing field is an explicit ``null``. A reading carries the device lifecycle's
tags (:mod:`gateway.lifecycle`): ``point`` (the metering point, null for a device that serves
none), ``metrological`` (true/false by the device's declaration, null when undeclared),
``protection`` (how its frame was protected as received, ``model.PROTECTIONS``) and
``flags`` (a list: ``calibration``, ``commissioning``, ``previous_key``). The HES drops duplicates by
(``gateway``, ``seq``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.model import Reading, StoredRecord, value_text


def record_json(stored: StoredRecord) -> dict[str, Any]:
    """A stored reading or event as the JSON object the HES receives."""
    record = stored.record
    if isinstance(record, Reading):
        return {
            "seq": stored.seq,
            "kind": "reading",
            "device": record.device,
            "quantity": record.quantity,
            "obis": record.obis,
            "value": value_text(record.value),
            "unit": record.unit,
            "meter_time": value_text(record.meter_time),
            "captured_at": value_text(record.captured_at),
            "status": record.status,
            "point": record.point,
            "metrological": record.metrological,
            "protection": record.protection,
            "flags": list(record.flags),
        }
    return {
        "seq": stored.seq,
        "kind": "event",
        "code": record.code,
        "severity": record.severity.value,
        "message": record.message,
        "occurred_at": value_text(record.occurred_at),
        "device": record.device,
        "source": record.source,
        "details": dict(record.details),
    }


def batch_payload(gateway_id: str, records: Sequence[StoredRecord]) -> bytes:
    """``{"gateway", "first_seq", "last_seq", "records": [...]}`` as compact UTF-8 JSON
    (``first_seq``/``last_seq`` are null for an empty batch)."""
    body = {
        "gateway": gateway_id,
        "first_seq": records[0].seq if records else None,
        "last_seq": records[-1].seq if records else None,
        "records": [record_json(stored) for stored in records],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
