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


class _TimeTexts:
    """ISO 8601 texts of times, the last one remembered: the readings of one read share
    their captured_at (and often meter_time) object, and printing it is a good part of a
    record's encoding cost. Keyed by identity, never by equality: equal instants in other
    zones print differently."""

    __slots__ = ("_time", "_text")

    def __init__(self) -> None:
        self._time: object = None
        self._text: str | None = None

    def text(self, value: Any) -> str | None:
        if value is self._time:
            return self._text
        self._time, self._text = value, value_text(value)
        return self._text


def record_json(stored: StoredRecord, times: tuple[_TimeTexts, _TimeTexts] | None = None) -> dict[str, Any]:
    """A stored reading or event as the JSON object the HES receives (``times``: the
    batch's remembered captured_at and meter_time texts)."""
    record = stored.record
    if isinstance(record, Reading):
        captured, metered = times or (_TimeTexts(), _TimeTexts())
        return {
            "seq": stored.seq,
            "kind": "reading",
            "device": record.device,
            "quantity": record.quantity,
            "obis": record.obis,
            "value": value_text(record.value),
            "unit": record.unit,
            "meter_time": metered.text(record.meter_time),
            "captured_at": captured.text(record.captured_at),
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


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def record_text(stored: StoredRecord) -> bytes:
    """One record's JSON object as compact UTF-8 (a piece of :func:`batch_payload`)."""
    return _encode(record_json(stored)).encode("utf-8")


def batch_payload(gateway_id: str, records: Sequence[StoredRecord]) -> bytes:
    """``{"gateway", "first_seq", "last_seq", "records": [...]}`` as compact UTF-8 JSON
    (``first_seq``/``last_seq`` are null for an empty batch)."""
    times = (_TimeTexts(), _TimeTexts())
    body = {
        "gateway": gateway_id,
        "first_seq": records[0].seq if records else None,
        "last_seq": records[-1].seq if records else None,
        "records": [record_json(stored, times) for stored in records],
    }
    return _encode(body).encode("utf-8")


def batch_of_texts(gateway_id: str, first_seq: int | None, last_seq: int | None, texts: Sequence[bytes]) -> bytes:
    """:func:`batch_payload` of records already encoded by :func:`record_text`, byte for
    byte: a batch too large for one message is split by its records' sizes without
    encoding any of them twice. (Encoding record by record costs a little more than the
    whole batch at once, so :func:`batch_payload` stays the usual way.)"""
    return b"%s%s]}" % (batch_head(gateway_id, first_seq, last_seq), b",".join(texts))


def batch_head(gateway_id: str, first_seq: int | None, last_seq: int | None) -> bytes:
    """What comes before the records in :func:`batch_payload` (up to the list's ``[``)."""
    return b'{"gateway":%s,"first_seq":%s,"last_seq":%s,"records":[' % (
        _encode(gateway_id).encode("utf-8"), _encode(first_seq).encode(), _encode(last_seq).encode())
