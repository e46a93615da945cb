"""Conformance of the generic decoder with wmbusmeters' driver outputs over the corpus.

For every corpus record with expected JSON, each expected field that a generic EN 13757-3
decoder can produce — energy, volume, power, flow, temperature (numbers whose field-name
suffix gives the unit: ``_kwh``, ``_m3``, ``_c`` ...) and dates — is looked for among the
records decoded from the record's telegrams, after unit conversion. A field found is
matched; one not found gets the reason. The telegrams are decoded in corpus order by one
:class:`WMBusDecoder`, as a receiver would hear them, so a compact frame decodes when a full
frame of its format came earlier.

Run as a program to print the report: ``python -m tests.codecs.mbus.wmbus_conformance``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache

from gateway.codecs.mbus.application import decode_response
from gateway.codecs.mbus.errors import MBusError
from gateway.codecs.mbus.wireless import WMBusDecoder
from gateway.codecs.mbus.wmbus_security import AesKey

from .wmbus_corpus import AES_REMOVED, STORED_DECRYPTED, is_hex, records

#: Field-name suffix -> (category, factor to the category's unit). Categories are in Wh,
#: m^3, W, m^3/h, °C and varh.
SUFFIXES: dict[str, tuple[str, Decimal]] = {
    "kwh": ("energy", Decimal(1000)),
    "mwh": ("energy", Decimal(1_000_000)),
    "gj": ("energy", Decimal(10) ** 9 / Decimal(3600)),
    "m3": ("volume", Decimal(1)),
    "l": ("volume", Decimal("0.001")),
    "kw": ("power", Decimal(1000)),
    "w": ("power", Decimal(1)),
    "m3h": ("flow", Decimal(1)),
    "lh": ("flow", Decimal("0.001")),
    "c": ("temperature", Decimal(1)),
    "kvarh": ("reactive energy", Decimal(1000)),
}
#: Decoded unit -> (category, factor to the category's unit).
UNITS: dict[str, tuple[str, Decimal]] = {
    "Wh": ("energy", Decimal(1)),
    "J": ("energy", Decimal(1) / Decimal(3600)),
    "m^3": ("volume", Decimal(1)),
    "W": ("power", Decimal(1)),
    "J/h": ("power", Decimal(1) / Decimal(3600)),
    "m^3/h": ("flow", Decimal(1)),
    "m^3/min": ("flow", Decimal(60)),
    "m^3/s": ("flow", Decimal(3600)),
    "°C": ("temperature", Decimal(1)),
    "K": ("temperature", Decimal(1)),
    "varh": ("reactive energy", Decimal(1)),
}
DATE_TEXT = re.compile(r"^(\d{4}-\d\d-\d\d)(?:[ T](\d\d:\d\d))?")
SKIPPED_FIELDS = {"timestamp"}  # the test harness's fixed receive time, not the meter's


@dataclass
class Outcome:
    matched: int = 0
    fields: int = 0
    unmatched: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    refused_records: Counter = field(default_factory=Counter)

    @property
    def fraction(self) -> float:
        return self.matched / self.fields if self.fields else 0.0

    def miss(self, reason: str, where: str) -> None:
        self.unmatched[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(where)


def expected_fields(expected: dict) -> list[tuple[str, str, object]]:
    """(field, category, expected) of the fields a generic decoder can produce: a date text,
    or a number in the category's unit with half a unit of its last printed digit."""
    out = []
    for name, value in expected.items():
        if name in SKIPPED_FIELDS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            suffix = name.rsplit("_", 1)[-1]
            if suffix in SUFFIXES:
                category, factor = SUFFIXES[suffix]
                printed = Decimal(repr(value))
                half_digit = Decimal(5).scaleb(min(printed.as_tuple().exponent, 0) - 1)
                out.append((name, category, (printed * factor, half_digit * factor)))
        elif isinstance(value, str) and DATE_TEXT.match(value) and ("date" in name or "time" in name):
            out.append((name, "date", value))
    return out


def decoded_values(decoded_records) -> dict[str, list[object]]:
    """Category -> decoded values in the category's unit (dates as date/datetime)."""
    out: dict[str, list[object]] = {}
    for record in decoded_records:
        value = record.value
        if isinstance(value, Decimal) and record.unit in UNITS:
            category, factor = UNITS[record.unit]
            out.setdefault(category, []).append(value * factor)
        elif isinstance(value, (date, datetime)):
            out.setdefault("date", []).append(value)
    return out


def matches(category: str, expected: object, candidates: list[object]) -> bool:
    if category == "date":
        day, minute = DATE_TEXT.match(str(expected)).groups()
        for value in candidates:
            if isinstance(value, datetime):
                if value.strftime("%Y-%m-%d") == day and (minute is None or value.strftime("%H:%M") == minute):
                    return True
            elif isinstance(value, date) and minute is None and value.isoformat() == day:
                return True
        return False
    # wmbusmeters prints rounded values, and a 32-bit real has 24 bits of mantissa: a value
    # matches when it rounds to the printed one, or agrees to float32 precision.
    value_expected, half_digit = expected
    tolerance = max(half_digit, Decimal("1.2e-7") * abs(value_expected))
    return any(abs(value - value_expected) <= tolerance for value in candidates)


def decode_options(telegram_crypto: str, record: dict) -> dict:
    """How a receiver would be set up for this telegram: the record's key where the corpus
    says the telegram is ciphertext (or for the aes-removed negatives), ``decrypted`` where it
    was stored decrypted, nothing for plaintext."""
    if telegram_crypto in STORED_DECRYPTED and record["source"] != AES_REMOVED:
        return {"decrypted": True}
    key = record["key"] or ""
    if len(key) == 32 and (telegram_crypto not in ("none", "n/a") or record["source"] == AES_REMOVED):
        return {"key": AesKey.from_hex(key)}
    return {}


def decode_record(decoder: WMBusDecoder, record: dict) -> tuple[list, str | None]:
    """The data records of a corpus record's telegrams, or the reason there are none."""
    found, reason = [], None
    for index, text in enumerate(record["telegrams_hex"]):
        if not is_hex(text):
            reason = "telegram is not hex"
            continue
        data = bytes.fromhex(text)
        crypto = record["crypto"][min(index, len(record["crypto"]) - 1)].get("crypto", "")
        if len(record["key"] or "") == 16:
            reason = "refused: security mode 2 (DES, deprecated) is not supported"
            continue
        try:
            if data[:1] == b"\x68":
                found += list(getattr(decode_response(data).response, "records", ()))
                continue
            decoded = decoder.decode(
                data, frame_format="auto", keep_trailing=True, **decode_options(crypto, record)
            )
        except MBusError as exc:
            reason = f"refused: {type(exc).__name__}: {_reason_class(exc)}"
            continue
        if decoded.telegram.content not in ("records", "compact"):
            reason = f"content kept raw (CI 0x{decoded.telegram.ci or 0:02X}, manufacturer specific or not EN 13757-3)"
        found += list(decoded.records)
    return found, (None if found else reason)


def _reason_class(exc: MBusError) -> str:
    text = exc.reason
    if "no full frame of that format" in text:
        return "compact frame whose format was not seen"
    text = re.sub(r"0x[0-9A-F]+|\d+", "N", text)
    return text[:100]


@cache
def conformance() -> Outcome:
    outcome = Outcome()
    decoder = WMBusDecoder()
    for record in records():
        expected = record.get("expected_json") or {}
        fields = expected_fields(expected)
        decoded, reason = decode_record(decoder, record)
        if reason and not decoded:
            outcome.refused_records[reason] += 1
        values = decoded_values(decoded)
        for name, category, value in fields:
            outcome.fields += 1
            if matches(category, value, values.get(category, [])):
                outcome.matched += 1
            elif not decoded:
                # No reason: the telegram decoded to no record (only manufacturer data after DIF 0x0F).
                outcome.miss(reason or "no records decoded", f"{record['id']} {name}")
            elif category not in values:
                outcome.miss(f"no decoded {category} record", f"{record['id']} {name}")
            else:
                shown = value if category == "date" else value[0]
                outcome.miss(f"no equal value among the {category} records", f"{record['id']} {name}={shown}")
    return outcome


def main() -> None:
    outcome = conformance()
    print(
        json.dumps(
            {
                "fields": outcome.fields,
                "matched": outcome.matched,
                "fraction": round(outcome.fraction, 4),
                "unmatched_by_reason": dict(outcome.unmatched.most_common()),
                "examples": outcome.examples,
                "records_without_records_by_reason": dict(outcome.refused_records.most_common()),
            },
            indent=1,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
