"""What the HES receives: one record as a JSON object, a batch as compact JSON."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.model import Event, Reading, Severity, StoredRecord
from gateway.payload import batch_of_texts, batch_payload, record_json, record_text

AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def stored(record, seq: int = 7) -> StoredRecord:
    return StoredRecord(seq=seq, record=record, stored_at=AT)


def test_a_reading_has_every_field_with_exact_value_and_iso_times():
    reading = Reading(
        device="KAM-12345678-01-04",
        quantity="energy",
        value=Decimal("1.2E+3"),
        unit="Wh",
        captured_at=AT,
        meter_time=datetime(2024, 5, 1, 13, 59, tzinfo=timezone(timedelta(hours=2))),
        obis="1-0:1.8.0*255",
        status="00",
        raw=b"\x68\x00",
    )
    assert record_json(stored(reading)) == {
        "seq": 7,
        "kind": "reading",
        "device": "KAM-12345678-01-04",
        "quantity": "energy",
        "obis": "1-0:1.8.0*255",
        "value": "1200",
        "unit": "Wh",
        "meter_time": "2024-05-01T13:59:00+02:00",
        "captured_at": "2024-05-01T12:00:00+00:00",
        "status": "00",
        "point": None,
        "metrological": None,
        "protection": None,
        "flags": [],
    }


def test_missing_reading_fields_are_explicit_nulls():
    document = record_json(stored(Reading("dev", "q", None, None, AT)))
    assert [key for key, value in document.items() if value is None] == ["obis", "value", "unit", "meter_time", "status",
                                                                         "point", "metrological", "protection"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("-0.0010"), "-0.0010"),
        (Decimal("-7E-3"), "-0.007"),
        (b"\x01\xab", "01ab"),
        (date(2024, 2, 29), "2024-02-29"),
        (True, "true"),
        ("text ä", "text ä"),
    ],
)
def test_values_travel_as_exact_text(value, text):
    assert record_json(stored(Reading("dev", "q", value, None, AT)))["value"] == text


def test_an_event_has_every_field():
    event = Event("store.dropped", Severity.WARNING, "dropped 3", AT, device=None, source="store", details={"count": 3})
    assert record_json(stored(event, 9)) == {
        "seq": 9,
        "kind": "event",
        "code": "store.dropped",
        "severity": "warning",
        "message": "dropped 3",
        "occurred_at": "2024-05-01T12:00:00+00:00",
        "device": None,
        "source": "store",
        "details": {"count": 3},
    }


def test_a_batch_is_compact_utf8_json_with_its_seq_range():
    records = [stored(Reading("zähler", "q", Decimal(n), "Wh", AT), seq) for n, seq in enumerate((4, 5, 6))]
    payload = batch_payload("gw-1", records)
    assert b" " not in payload and "zähler".encode() in payload
    document = json.loads(payload)
    assert (document["gateway"], document["first_seq"], document["last_seq"]) == ("gw-1", 4, 6)
    assert document["records"] == [record_json(s) for s in records]


def test_equal_instants_in_other_zones_keep_their_own_offsets_within_a_batch():
    # The batch remembers the last time it printed: by identity, never by equality, or
    # 13:00+01:00 would travel as the 12:00+00:00 printed just before it.
    berlin = AT.astimezone(timezone(timedelta(hours=1)))
    readings = [Reading("dev", f"q{n}", Decimal(n), None, at, meter_time=at)
                for n, at in enumerate([AT, AT, berlin, berlin, AT, AT])]
    body = json.loads(batch_payload("gw-1", [stored(r, n + 1) for n, r in enumerate(readings)]))
    printed = [(r["captured_at"], r["meter_time"]) for r in body["records"]]
    assert printed == [(t, t) for t in ["2024-05-01T12:00:00+00:00"] * 2 + ["2024-05-01T13:00:00+01:00"] * 2
                       + ["2024-05-01T12:00:00+00:00"] * 2]


def test_an_empty_batch_has_null_seqs():
    assert json.loads(batch_payload("gw-1", [])) == {"gateway": "gw-1", "first_seq": None, "last_seq": None, "records": []}


_texts = st.text(max_size=12)  # any code point: quotes, backslashes, controls, non-ASCII
_zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-3, minutes=-30))])
_moments = st.datetimes(timezones=_zones)
_values = st.one_of(
    st.none(), st.booleans(), _texts, st.binary(max_size=8), st.dates(), st.times(), st.datetimes(), _moments,
    st.decimals(allow_nan=False, allow_infinity=False), st.integers(-(10**30), 10**30).map(Decimal))
_readings = st.builds(Reading, _texts, _texts, _values, st.none() | _texts, _moments, st.none() | _moments,
                      st.none() | _texts, st.none() | _texts)
_events = st.builds(Event, _texts, st.sampled_from(Severity), _texts, _moments, st.none() | _texts,
                    st.none() | _texts, st.dictionaries(_texts, _texts | st.integers(), max_size=3))


@given(_texts, st.lists(_readings | _events, max_size=6), st.integers(1, 10**12))
def test_a_batch_assembled_from_its_records_texts_is_the_same_bytes(gateway_id, records, first):
    batch = [stored(record, first + n) for n, record in enumerate(records)]
    texts = [record_text(s) for s in batch]
    first_seq, last_seq = (batch[0].seq, batch[-1].seq) if batch else (None, None)
    assert batch_of_texts(gateway_id, first_seq, last_seq, texts) == batch_payload(gateway_id, batch)
