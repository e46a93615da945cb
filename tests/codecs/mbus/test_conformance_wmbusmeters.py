"""Conformance with wmbusmeters over its telegram corpus: the expected values a generic
decoder can produce are found among the decoded records (see wmbus_conformance)."""

from __future__ import annotations

from .wmbus_conformance import conformance

#: Measured on this branch (see the report of ``python -m tests.codecs.mbus.wmbus_conformance``);
#: a drop below it is a regression.
MATCHED_FLOOR = 0.70  # 2068 of 2917 fields (70.9 %) when measured
#: Every field that is not matched has one of these reasons.
KNOWN_REASONS = (
    "refused: ",
    "content kept raw",
    "no decoded ",
    "no equal value among the ",
    "no records decoded",
    "telegram is not hex",
)


def test_the_matched_fraction_of_expected_fields_stays_above_the_measured_floor():
    outcome = conformance()
    assert outcome.fields > 1000
    listing = "\n".join(f"{count:5d}  {reason}" for reason, count in outcome.unmatched.most_common())
    assert outcome.fraction >= MATCHED_FLOOR, f"matched {outcome.matched}/{outcome.fields}; unmatched:\n{listing}"
    print(f"\nwmbusmeters conformance: {outcome.matched}/{outcome.fields} = {outcome.fraction:.1%}\n{listing}")


def test_every_unmatched_field_is_listed_under_a_reason():
    outcome = conformance()
    assert sum(outcome.unmatched.values()) == outcome.fields - outcome.matched
    assert all(reason.startswith(KNOWN_REASONS) for reason in outcome.unmatched), list(outcome.unmatched)
