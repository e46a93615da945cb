"""The libmbus test corpus (tests/data/mbus-libmbus) and how its XML compares with ours.

libmbus at f09d613 is the independent expectation. Where we deliberately differ, the rule
is here as data and explained in README-conformance.md next to this file.
"""

from __future__ import annotations

import json
import re
import struct
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

DATA = Path(__file__).parents[2] / "data" / "mbus-libmbus"
HEAD = DATA / "regenerated-head-f09d613"
MANIFEST = {
    entry["file"]: entry for entry in map(json.loads, (DATA / "MANIFEST.jsonl").read_text().splitlines())
}

TEST_FRAMES = sorted((DATA / "test-frames").glob("*.hex"))
ERROR_FRAMES = sorted((DATA / "error-frames").glob("*.hex"))
APPLICATION_ERROR_FRAMES = [p for p in ERROR_FRAMES if p.with_suffix(".xml").exists()]
MALFORMED_FRAMES = [p for p in ERROR_FRAMES if not p.with_suffix(".xml").exists()]
UNSUPPORTED_FRAMES = sorted((DATA / "unsupported-frames").glob("*.hex"))
ALL_FRAMES = TEST_FRAMES + ERROR_FRAMES + UNSUPPORTED_FRAMES


def frame_bytes(path: Path) -> bytes:
    return bytes.fromhex(path.read_text())


def manifest(path: Path) -> dict:
    return MANIFEST[f"{path.parent.name}/{path.name}"]


def expected_norm_xml(path: Path) -> ET.Element:
    """libmbus's normalised output for a test frame: the shipped file, or what libmbus at
    f09d613 prints where the manifest says the shipped one is stale."""
    stale = manifest(path)["head_norm_xml"] != "identical"
    base = HEAD / "test-frames" if stale else path.parent
    return load_xml(base / (path.stem + ".norm.xml"))


def load_xml(path: Path) -> ET.Element:
    # The files declare ISO-8859-1 but hold UTF-8 ("°C", "´"): read them as UTF-8.
    text = path.read_bytes().decode("utf-8")
    return ET.fromstring(re.sub(r"<\?xml[^>]*\?>", "", text))


def xml_records(root: ET.Element) -> list[dict[str, str | None]]:
    return [{child.tag: child.text for child in record} for record in root.iter("DataRecord")]


def slave_information(root: ET.Element) -> dict[str, str | None]:
    info = root.find("SlaveInformation")
    return {child.tag: child.text for child in info}


#: libmbus's (unit, quantity) where our names differ. Keys as libmbus prints them
#: (an empty element is None), values as we report them.
NAMES = {
    ("-", "Time point (date & time)"): (None, "Time point (date and time)"),
    ("-", "Time point (date)"): (None, "Time point (date)"),
    ("Reserved", "Reserved"): (None, "reserved"),
    ("Units for H.C.A.", "H.C.A."): (None, "Heat cost allocation"),
    ("s", "Actuality Duration"): ("s", "Actuality duration"),
    ("s", "Averaging Duration"): ("s", "Averaging duration"),
    (None, "(Enhanced) Identification"): (None, "Enhanced identification"),
    (None, "Digital Input"): (None, "Digital input"),
    (None, "Digital Output"): (None, "Digital output"),
    (None, "Fabrication No"): (None, "Fabrication number"),
    (None, "Model / Version"): (None, "Model / version"),
}

#: libmbus's unit strings of the fixed data structure, as (our unit, factor to ours).
FIXED_UNITS = {
    "l": ("m^3", Decimal("0.001")),
    "kWh": ("Wh", Decimal(1000)),
}

#: libmbus's medium names of the long header, by code.
MEDIA = {
    "Other": 0x00, "Oil": 0x01, "Electricity": 0x02, "Gas": 0x03, "Heat: Outlet": 0x04, "Steam": 0x05,
    "Warm water (30-90°C)": 0x06, "Water": 0x07, "Heat Cost Allocator": 0x08, "Compressed Air": 0x09,
    "Cooling load meter: Outlet": 0x0A, "Cooling load meter: Inlet": 0x0B, "Heat: Inlet": 0x0C,
    "Heat / Cooling load meter": 0x0D, "Bus/System": 0x0E, "Unknown Medium": 0x0F, "Irrigation Water": 0x10,
    "Water Logger": 0x11, "Gas Logger": 0x12, "Gas Converter": 0x13, "Calorific value": 0x14,
    "Hot water (>90°C)": 0x15, "Cold water": 0x16, "Dual water": 0x17, "Pressure": 0x18,
    "A/D Converter": 0x19, "Smoke Detector": 0x1A, "Ambient Sensor": 0x1B, "Gas Detector": 0x1C,
}


def libmbus_bcd(field: bytes) -> int:
    """libmbus's reading of a BCD field with non-decimal digits: a high nibble above 9 is
    taken as 0, a low nibble as its value, 0xF in the top nibble makes it negative."""
    value = 0
    for byte in reversed(field):
        value = value * 10 + (byte >> 4 if byte >> 4 < 10 else 0)
        value = value * 10 + (byte & 0x0F)
    return -value if field[-1] >> 4 == 0xF else value


def same_float32(ours: Decimal, theirs: str) -> bool:
    """libmbus prints a 32-bit real as a double with six decimals; we print the shortest
    decimal of the float. Both must name the same 32-bit float."""
    pack = struct.Struct("<f").pack
    return pack(float(ours)) == pack(float(theirs))


def close_decimal(ours: Decimal, theirs: str) -> bool:
    """libmbus computes in double and prints %f (six decimals)."""
    expected = Decimal(theirs)
    return abs(ours - expected) <= Decimal("0.0000005") + abs(expected) * Decimal("1e-15")
