"""Code tables of the M-Bus application layer (EN 13757-3:2018), kept as data.

Every table is a tuple or dict built once at import; the decoder indexes them with the
code (VIF without its extension bit, VIFE, medium ...) and never branches on codes.

Names follow the standard's wording in sentence case. Units are SI strings (``"Wh"``,
``"m^3"``, ``"°C"``, ``"s"``) or ``None`` for dimensionless and identifying values. Time
units of seconds, minutes, hours and days are converted to seconds exactly (an integer
factor); months and years stay months and years because they have no fixed length.
"""

from __future__ import annotations

from typing import NamedTuple

# --- data information field (DIF), clause 6.3 -----------------------------------------

DIF_EXTENSION = 0x80
DIF_STORAGE_LSB = 0x40
DIF_FUNCTION = 0x30
DIF_DATA = 0x0F
DIFE_SUBUNIT = 0x40
DIFE_TARIFF = 0x30
DIFE_STORAGE = 0x0F
VIF_EXTENSION = 0x80

#: Special functions in the DIF (data field 1111b), table 8.
DIF_MANUFACTURER_DATA = 0x0F  # manufacturer specific data follow to the end
DIF_MORE_RECORDS_FOLLOW = 0x1F  # as 0x0F, and more records follow in the next telegram
DIF_IDLE_FILLER = 0x2F  # padding byte, no record
DIF_GLOBAL_READOUT = 0x7F  # master to slave only: read all storage numbers, tariffs ...

#: Most DIFEs and VIFEs one record may carry (clause 6.3.2 and 6.4.2: "up to 10").
MAX_DIFE = 10
MAX_VIFE = 10

#: Function field of the DIF, table 5.
FUNCTIONS = ("instantaneous value", "maximum value", "minimum value", "value during error state")

#: Length in bytes of the data field for each DIF data-field code (table 6); ``None`` for
#: variable length (0xD, length in the LVAR byte) and special functions (0xF).
DATA_LENGTHS = (0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, None, 6, None)

#: How each data-field code is coded (table 6): integer (type B), BCD (type A), real (type H).
DATA_CODING = (
    "none", "int", "int", "int", "int", "real", "int", "int",
    "readout", "bcd", "bcd", "bcd", "bcd", "lvar", "bcd", "special",
)

# --- variable length data (LVAR), table 7 ---------------------------------------------------

#: LVAR ranges: (first, last, kind, bytes for lvar) where the byte count is a function.
LVAR_TEXT_MAX = 0xBF  # 0x00-0xBF: that many 8-bit characters (reversed on the wire)
LVAR_BCD_POSITIVE = (0xC0, 0xC9)  # (LVAR-0xC0)*2 digits positive BCD
LVAR_BCD_NEGATIVE = (0xD0, 0xD9)  # (LVAR-0xD0)*2 digits negative BCD
LVAR_BINARY = (0xE0, 0xEF)  # LVAR-0xE0 bytes binary number
LVAR_BIG_BINARY = (0xF0, 0xF4)  # 4*(LVAR-0xEC) bytes binary number (16 ... 32 bytes)
LVAR_BIG_BINARY_FIXED = {0xF5: 48, 0xF6: 64}  # binary numbers of 48 and 64 bytes


def lvar_layout(lvar: int) -> tuple[str, int] | None:
    """``(kind, data bytes)`` for an LVAR byte, ``None`` for the reserved values 0xCA-0xCF,
    0xDA-0xDF and 0xF7-0xFF whose length nobody can know."""
    return _LVAR[lvar]


def _lvar_entry(lvar: int) -> tuple[str, int] | None:
    if lvar <= LVAR_TEXT_MAX:
        return ("text", lvar)
    if LVAR_BCD_POSITIVE[0] <= lvar <= LVAR_BCD_POSITIVE[1]:
        return ("bcd", lvar - LVAR_BCD_POSITIVE[0])
    if LVAR_BCD_NEGATIVE[0] <= lvar <= LVAR_BCD_NEGATIVE[1]:
        return ("negative bcd", lvar - LVAR_BCD_NEGATIVE[0])
    if LVAR_BINARY[0] <= lvar <= LVAR_BINARY[1]:
        return ("binary", lvar - LVAR_BINARY[0])
    if LVAR_BIG_BINARY[0] <= lvar <= LVAR_BIG_BINARY[1]:
        return ("binary", 4 * (lvar - 0xEC))
    if lvar in LVAR_BIG_BINARY_FIXED:
        return ("binary", LVAR_BIG_BINARY_FIXED[lvar])
    return None


_LVAR = tuple(_lvar_entry(code) for code in range(256))

# --- value information (VIF and VIFE), clause 6.4 -------------------------------------------

#: What a value's data field holds beyond a plain number, by VIF.
NUMBER, DATE, DATETIME, DAYLIGHT_SAVING = "number", "date", "datetime", "daylight saving"


class Vif(NamedTuple):
    """One entry of a VIF table: the value is ``mantissa × 10**scaler × factor`` in ``unit``."""

    quantity: str
    unit: str | None
    scaler: int = 0
    factor: int = 1
    kind: str = NUMBER


def _decades(count: int, quantity: str, unit: str | None, first_scaler: int) -> list[Vif]:
    """``count`` codes whose low bits n give 10**(n + first_scaler) (the nnn/nn pattern)."""
    return [Vif(quantity, unit, first_scaler + n) for n in range(count)]


#: Seconds in the time units coded by nn (00 s, 01 min, 10 h, 11 d), e.g. VIF E010 00nn.
SECONDS_PER_NN = (1, 60, 3600, 86400)


def _durations(quantity: str) -> list[Vif]:
    return [Vif(quantity, "s", 0, factor) for factor in SECONDS_PER_NN]


def _long_durations(quantity: str) -> list[Vif]:
    """The pp pattern (00 hours, 01 days, 10 months, 11 years), e.g. VIFE E110 10pp."""
    return [
        Vif(quantity, "s", 0, 3600),
        Vif(quantity, "s", 0, 86400),
        Vif(quantity, "month"),
        Vif(quantity, "year"),
    ]


def _one(quantity: str, unit: str | None = None, kind: str = NUMBER) -> list[Vif]:
    return [Vif(quantity, unit, kind=kind)]


def _reserved(count: int) -> list[Vif]:
    return [Vif("reserved", None)] * count


def _table(*parts: list[Vif]) -> tuple[Vif, ...]:
    table = tuple(entry for part in parts for entry in part)
    if len(table) != 128:
        raise AssertionError(f"a VIF table has 128 entries, this one {len(table)}")
    return table


#: Primary VIF table (EN 13757-3:2018 table 10), indexed by VIF & 0x7F. 0x7B, 0x7C, 0x7D,
#: 0x7E, 0x7F are handled by the parser (extension, plain text, any VIF, manufacturer)
#: when they carry the extension bit; 0x7B without it is reserved.
PRIMARY_VIFS = _table(
    _decades(8, "Energy", "Wh", -3),  # E000 0nnn 10^(nnn-3) Wh
    _decades(8, "Energy", "J", 0),  # E000 1nnn 10^(nnn) J
    _decades(8, "Volume", "m^3", -6),  # E001 0nnn 10^(nnn-6) m3
    _decades(8, "Mass", "kg", -3),  # E001 1nnn 10^(nnn-3) kg
    _durations("On time"),  # E010 00nn
    _durations("Operating time"),  # E010 01nn
    _decades(8, "Power", "W", -3),  # E010 1nnn 10^(nnn-3) W
    _decades(8, "Power", "J/h", 0),  # E011 0nnn 10^(nnn) J/h
    _decades(8, "Volume flow", "m^3/h", -6),  # E011 1nnn
    _decades(8, "Volume flow", "m^3/min", -7),  # E100 0nnn
    _decades(8, "Volume flow", "m^3/s", -9),  # E100 1nnn
    _decades(8, "Mass flow", "kg/h", -3),  # E101 0nnn
    _decades(4, "Flow temperature", "°C", -3),  # E101 10nn
    _decades(4, "Return temperature", "°C", -3),  # E101 11nn
    _decades(4, "Temperature difference", "K", -3),  # E110 00nn
    _decades(4, "External temperature", "°C", -3),  # E110 01nn
    _decades(4, "Pressure", "bar", -3),  # E110 10nn
    _one("Time point (date)", kind=DATE),  # E110 1100, type G
    _one("Time point (date and time)", kind=DATETIME),  # E110 1101, types F, I, J
    _one("Heat cost allocation"),  # E110 1110 units for H.C.A., dimensionless
    _one("reserved"),  # E110 1111 (reserved for a third extension table)
    _durations("Averaging duration"),  # E111 00nn
    _durations("Actuality duration"),  # E111 01nn
    _one("Fabrication number"),  # E111 1000
    _one("Enhanced identification"),  # E111 1001
    _one("Bus address"),  # E111 1010, data type C
    _one("reserved"),  # E111 1011 without extension bit; 0xFB is the extension table
    _one("Plain text unit"),  # E111 1100, the unit follows as text
    _one("reserved"),  # E111 1101 without extension bit; 0xFD is the extension table
    _one("Any VIF"),  # E111 1110, readout selection
    _one("Manufacturer specific"),  # E111 1111
)

VIF_PLAIN_TEXT = 0x7C
VIF_EXTENSION_FD = 0xFD
VIF_EXTENSION_FB = 0xFB
VIF_MANUFACTURER = 0x7F
VIF_BUS_ADDRESS = 0x7A

#: Main VIFE-code extension table, after VIF 0xFD (EN 13757-3:2018 table 12).
FD_VIFS = _table(
    _decades(4, "Credit", "currency unit", -3),  # E000 00nn
    _decades(4, "Debit", "currency unit", -3),  # E000 01nn
    _one("Access number"),  # E000 1000 unique message identification
    _one("Medium"),  # E000 1001 device type
    _one("Manufacturer"),  # E000 1010
    _one("Parameter set identification"),  # E000 1011
    _one("Model / version"),  # E000 1100
    _one("Hardware version"),  # E000 1101
    _one("Firmware version"),  # E000 1110 metrology (firmware) version
    _one("Software version"),  # E000 1111 other software version
    _one("Customer location"),  # E001 0000
    _one("Customer"),  # E001 0001
    _one("Access code user"),  # E001 0010
    _one("Access code operator"),  # E001 0011
    _one("Access code system operator"),  # E001 0100
    _one("Access code developer"),  # E001 0101
    _one("Password"),  # E001 0110
    _one("Error flags"),  # E001 0111 (binary, device type specific)
    _one("Error mask"),  # E001 1000
    _one("Security key"),  # E001 1001
    _one("Digital output"),  # E001 1010 (binary)
    _one("Digital input"),  # E001 1011 (binary)
    _one("Baud rate", "Bd"),  # E001 1100
    _one("Response delay time", "bit times"),  # E001 1101
    _one("Retry"),  # E001 1110
    _one("Remote control"),  # E001 1111 (device type specific)
    _one("First storage number for cyclic storage"),  # E010 0000
    _one("Last storage number for cyclic storage"),  # E010 0001
    _one("Size of storage block"),  # E010 0010
    _one("Descriptor for tariff and subunit"),  # E010 0011
    _durations("Storage interval"),  # E010 01nn
    [Vif("Storage interval", "month"), Vif("Storage interval", "year")],  # E010 100n
    _one("Operator specific data"),  # E010 1010
    _one("Time point second", "s"),  # E010 1011
    _durations("Duration since last readout"),  # E010 11nn
    _one("Start of tariff", kind=DATETIME),  # E011 0000 (type F or G by length)
    [Vif("Duration of tariff", "s", 0, factor) for factor in SECONDS_PER_NN[1:]],  # E011 00nn, nn>0
    _durations("Period of tariff"),  # E011 01nn
    [Vif("Period of tariff", "month"), Vif("Period of tariff", "year")],  # E011 100n
    _one("Dimensionless"),  # E011 1010 dimensionless / no VIF
    _one("Data container for wireless M-Bus protocol"),  # E011 1011
    _durations("Period of nominal data transmissions"),  # E011 11nn
    _decades(16, "Voltage", "V", -9),  # E100 nnnn
    _decades(16, "Current", "A", -12),  # E101 nnnn
    _one("Reset counter"),  # E110 0000
    _one("Cumulation counter"),  # E110 0001
    _one("Control signal"),  # E110 0010
    _one("Day of week"),  # E110 0011
    _one("Week number"),  # E110 0100
    _one("Time point of day change"),  # E110 0101
    _one("State of parameter activation"),  # E110 0110
    _one("Special supplier information"),  # E110 0111
    _long_durations("Duration since last cumulation"),  # E110 10pp
    _long_durations("Operating time battery"),  # E110 11pp
    _one("Date and time of battery change", kind=DATETIME),  # E111 0000
    _one("RF level", "dBm"),  # E111 0001
    _one("Daylight saving", kind=DAYLIGHT_SAVING),  # E111 0010 data type K
    _one("Listening window management"),  # E111 0011 data type L
    [Vif("Remaining battery life time", "s", 0, 86400)],  # E111 0100 (days)
    _one("Number of times the meter was stopped"),  # E111 0101
    _one("Data container for manufacturer specific protocol"),  # E111 0110
    _reserved(9),  # E111 0111 to E111 1111
)

#: Alternate extended VIF-code table, after VIF 0xFB (EN 13757-3:2018 table 14; the
#: American units at E010 0010 to E010 0110 are from the 2004 edition, reserved since).
FB_VIFS = _table(
    _decades(2, "Energy", "Wh", 5),  # E000 000n 10^(n-1) MWh
    _decades(2, "Reactive energy", "varh", 3),  # E000 001n 10^(n) kVARh
    _reserved(4),  # E000 01nn
    _decades(2, "Energy", "J", 8),  # E000 100n 10^(n-1) GJ
    _reserved(2),  # E000 101n
    _decades(4, "Energy", "cal", 5),  # E000 11nn 10^(nn-1) MCal
    _decades(2, "Volume", "m^3", 2),  # E001 000n 10^(n+2) m3
    _reserved(2),  # E001 001n
    _decades(4, "Reactive power", "var", 0),  # E001 01nn 10^(nn-3) kVAR
    _decades(2, "Mass", "kg", 5),  # E001 100n 10^(n+2) t
    _decades(2, "Relative humidity", "%", -1),  # E001 101n 10^(n-1) %
    _reserved(4),  # E001 11nn
    [Vif("Volume", "ft^3", 0)],  # E010 0000
    [Vif("Volume", "ft^3", -1)],  # E010 0001
    _decades(2, "Volume", "US gal", -1),  # E010 001n (2004 edition)
    [Vif("Volume flow", "US gal/min", -3), Vif("Volume flow", "US gal/min", 0)],  # E010 010n
    [Vif("Volume flow", "US gal/h", 0)],  # E010 0110
    _reserved(1),  # E010 0111
    _decades(2, "Power", "W", 5),  # E010 100n 10^(n-1) MW
    [Vif("Phase U-U", "°", -1), Vif("Phase U-I", "°", -1)],  # E010 1010, E010 1011
    _decades(4, "Frequency", "Hz", -3),  # E010 11nn
    _decades(2, "Power", "J/h", 8),  # E011 000n 10^(n-1) GJ/h
    _reserved(2),  # E011 001n
    _decades(4, "Apparent power", "VA", 0),  # E011 01nn 10^(nn-3) kVA
    _reserved(32),  # E011 1000 to E101 0111
    _decades(4, "Flow temperature", "°F", -3),  # E101 10nn
    _decades(4, "Return temperature", "°F", -3),  # E101 11nn
    _decades(4, "Temperature difference", "°F", -3),  # E110 00nn
    _decades(4, "External temperature", "°F", -3),  # E110 01nn
    _reserved(8),  # E110 1nnn
    _decades(4, "Cold / warm temperature limit", "°F", -3),  # E111 00nn
    _decades(4, "Cold / warm temperature limit", "°C", -3),  # E111 01nn
    _decades(8, "Cumulative count max power", "W", -3),  # E111 1nnn
)

# --- combinable (orthogonal) VIFEs, table 15 ------------------------------------------------


class Vife(NamedTuple):
    """A combinable VIFE: a description and what it does to the value.

    ``effect`` is ``"multiply"`` (value × 10**exponent), ``"add"`` (value + 10**exponent in
    the unit of the VIF), ``"date"`` (the value is a date/time of the quantity),
    ``"extension"`` (the next VIFE comes from :data:`COMBINABLE_EXTENSION_VIFES`),
    ``"manufacturer"`` (the following VIFEs are manufacturer specific) or ``None``.
    """

    description: str
    effect: str | None = None
    exponent: int = 0


def _record_errors() -> list[Vife]:
    """E00x xxxx from a slave: record error codes (table 18), with the 2018 additions."""
    names = {
        0x00: "no error",
        0x01: "error: too many DIFEs",
        0x02: "error: storage number not implemented",
        0x03: "error: unit number not implemented",
        0x04: "error: tariff number not implemented",
        0x05: "error: function not implemented",
        0x06: "error: data class not implemented",
        0x07: "error: data size not implemented",
        0x0B: "error: too many VIFEs",
        0x0C: "error: illegal VIF-group",
        0x0D: "error: illegal VIF-exponent",
        0x0E: "error: VIF/DIF mismatch",
        0x0F: "error: unimplemented action",
        0x12: "average value",
        0x13: "inverse compact profile",
        0x14: "relative deviation",
        0x15: "error: no data available (undefined value)",
        0x16: "error: data overflow",
        0x17: "error: data underflow",
        0x18: "error: data error",
        0x1C: "error: premature end of record",
        0x1D: "standard conformant data content",
        0x1E: "compact profile with register numbers",
        0x1F: "compact profile",
    }
    return [Vife(names.get(code, f"reserved record error 0x{code:02X}")) for code in range(0x20)]


_PER = ("second", "minute", "hour", "day", "week", "month", "year")

_LIMIT_DATES = {
    0x42: "date (/time) of first begin of lower limit exceed",
    0x43: "date (/time) of first end of lower limit exceed",
    0x46: "date (/time) of last begin of lower limit exceed",
    0x47: "date (/time) of last end of lower limit exceed",
    0x4A: "date (/time) of first begin of upper limit exceed",
    0x4B: "date (/time) of first end of upper limit exceed",
    0x4E: "date (/time) of last begin of upper limit exceed",
    0x4F: "date (/time) of last end of upper limit exceed",
    0x6A: "date (/time) of first begin of duration",
    0x6B: "date (/time) of first end of duration",
    0x6E: "date (/time) of last begin of duration",
    0x6F: "date (/time) of last end of duration",
}

_UNITS_NN = ("s", "min", "h", "d")


def _combinable() -> tuple[Vife, ...]:
    table: dict[int, Vife] = dict(enumerate(_record_errors()))
    table.update({0x20 + i: Vife(f"per {unit}") for i, unit in enumerate(_PER)})
    table.update(
        {
            0x27: Vife("per measurement"),
            0x28: Vife("increment per input pulse on input channel 0"),
            0x29: Vife("increment per input pulse on input channel 1"),
            0x2A: Vife("increment per output pulse on output channel 0"),
            0x2B: Vife("increment per output pulse on output channel 1"),
            0x2C: Vife("per litre"),
            0x2D: Vife("per m^3"),
            0x2E: Vife("per kg"),
            0x2F: Vife("per K"),
            0x30: Vife("per kWh"),
            0x31: Vife("per GJ"),
            0x32: Vife("per kW"),
            0x33: Vife("per (K*l)"),
            0x34: Vife("per V"),
            0x35: Vife("per A"),
            0x36: Vife("multiplied by s"),
            0x37: Vife("multiplied by s/V"),
            0x38: Vife("multiplied by s/A"),
            0x39: Vife("start date (/time) of", "date"),
            0x3A: Vife("uncorrected meter unit"),
            0x3B: Vife("accumulation only if positive contributions (forward flow)"),
            0x3C: Vife("accumulation of abs value only if negative contributions (backward flow)"),
            0x3D: Vife("reserved for alternate non-metric unit system"),
            0x3E: Vife("value at base conditions"),
            0x3F: Vife("OBIS declaration"),
            0x40: Vife("lower limit value"),
            0x41: Vife("number of exceeds of lower limit"),
            0x48: Vife("upper limit value"),
            0x49: Vife("number of exceeds of upper limit"),
            0x68: Vife("value during lower limit exceed"),
            0x6C: Vife("value during upper limit exceed"),
        }
    )
    table.update({code: Vife(text, "date") for code, text in _LIMIT_DATES.items()})
    for base, text in ((0x50, "duration of lower limit exceed"), (0x58, "duration of upper limit exceed")):
        for first_last, which in ((0, "first"), (4, "last")):
            for nn, unit in enumerate(_UNITS_NN):
                table[base + first_last + nn] = Vife(f"{text} ({which}, {unit})")
    for first_last, which in ((0, "first"), (4, "last")):
        for nn, unit in enumerate(_UNITS_NN):
            table[0x60 + first_last + nn] = Vife(f"duration ({which}, {unit})")
    for nnn in range(8):
        table[0x70 + nnn] = Vife(f"multiplicative correction factor 10^{nnn - 6}", "multiply", nnn - 6)
    for nn in range(4):
        table[0x78 + nn] = Vife(f"additive correction constant 10^{nn - 3} (unit of VIF)", "add", nn - 3)
    table[0x7C] = Vife("extension of combinable VIFE", "extension")
    table[0x7D] = Vife("multiplicative correction factor 10^3", "multiply", 3)
    table[0x7E] = Vife("future value")
    table[0x7F] = Vife("manufacturer specific", "manufacturer")
    return tuple(table.get(code, Vife(f"reserved VIFE 0x{code:02X}")) for code in range(128))


#: Combinable (orthogonal) VIFE table (EN 13757-3:2018 table 15), indexed by VIFE & 0x7F.
COMBINABLE_VIFES = _combinable()

_EXTENSION_NAMES = {
    0x01: "at phase L1",
    0x02: "at phase L2",
    0x03: "at phase L3",
    0x04: "at neutral (N)",
    0x05: "between phase L1 and L2",
    0x06: "between phase L2 and L3",
    0x07: "between phase L3 and L1",
    0x08: "at quadrant Q1",
    0x09: "at quadrant Q2",
    0x0A: "at quadrant Q3",
    0x0B: "at quadrant Q4",
    0x0C: "delta between import and export",
    0x10: "accumulation of abs value for both positive and negative contribution",
    0x11: "data presented with type C",
    0x12: "data presented with type D",
    0x13: "direction: from communication partner to meter",
    0x14: "direction: from meter to communication partner",
}

#: Combinable VIFE extension table, after VIFE 0xFC/0x7C (EN 13757-3:2018 table 16).
COMBINABLE_EXTENSION_VIFES = tuple(
    Vife(_EXTENSION_NAMES.get(code, f"reserved extension VIFE 0x{code:02X}")) for code in range(128)
)

# --- header fields ----------------------------------------------------------------------------

#: Medium (device type) of the variable data structure header (EN 13757-3:2018 table 3; the
#: names of 0x10-0x13 are from the 2004 edition).
MEDIA = {
    0x00: "Other",
    0x01: "Oil",
    0x02: "Electricity",
    0x03: "Gas",
    0x04: "Heat (outlet)",
    0x05: "Steam",
    0x06: "Warm water (30 °C to 90 °C)",
    0x07: "Water",
    0x08: "Heat cost allocator",
    0x09: "Compressed air",
    0x0A: "Cooling load meter (outlet)",
    0x0B: "Cooling load meter (inlet)",
    0x0C: "Heat (inlet)",
    0x0D: "Heat / cooling load meter",
    0x0E: "Bus / system component",
    0x0F: "Unknown medium",
    0x10: "Irrigation water",
    0x11: "Water data logger",
    0x12: "Gas data logger",
    0x13: "Gas converter",
    0x14: "Calorific value",
    0x15: "Hot water (90 °C and above)",
    0x16: "Cold water",
    0x17: "Dual register (hot/cold) water",
    0x18: "Pressure",
    0x19: "A/D converter",
    0x1A: "Smoke detector",
    0x1B: "Room sensor",
    0x1C: "Gas detector",
    0x20: "Breaker (electricity)",
    0x21: "Valve (gas or water)",
    0x25: "Customer unit (display device)",
    0x28: "Waste water",
    0x29: "Garbage",
    0x2A: "Carbon dioxide",
    0x30: "Service unit",
    0x31: "Communication controller",
    0x32: "Unidirectional repeater",
    0x33: "Bidirectional repeater",
    0x36: "Radio converter (system side)",
    0x37: "Radio converter (meter side)",
    0x38: "Wired adapter",
}


def medium_name(code: int) -> str:
    return MEDIA.get(code, f"Reserved medium 0x{code:02X}")


#: Medium of the fixed data structure (EN 13757-3 annex, 4 bits spread over the two unit
#: bytes); a table of its own, with "mode 2" media.
FIXED_MEDIA = (
    "Other", "Oil", "Electricity", "Gas", "Heat", "Steam", "Hot water", "Water",
    "Heat cost allocator", "Reserved", "Gas mode 2", "Heat mode 2", "Hot water mode 2",
    "Water mode 2", "Heat cost allocator mode 2", "Reserved",
)

#: Units of the fixed data structure counters (6-bit code), as (quantity, unit, scaler).
#: 0x00/0x01 are time and date counters, 0x3E "same unit as counter 1, historic value".
FIXED_UNITS: dict[int, Vif] = {
    0x00: Vif("Time (h,m,s)", None),
    0x01: Vif("Date (D,M,Y)", None),
    **{0x02 + i: Vif("Energy", "Wh", i) for i in range(9)},  # Wh .. MWh*100
    **{0x0B + i: Vif("Energy", "J", 3 + i) for i in range(9)},  # kJ .. GJ*100
    **{0x14 + i: Vif("Power", "W", i) for i in range(9)},  # W .. MW*100
    **{0x1D + i: Vif("Power", "J/h", 3 + i) for i in range(9)},  # kJ/h .. GJ/h*100
    **{0x26 + i: Vif("Volume", "m^3", -6 + i) for i in range(9)},  # ml .. m3*100
    **{0x2F + i: Vif("Volume flow", "m^3/h", -6 + i) for i in range(9)},  # ml/h .. m3/h*100
    0x38: Vif("Temperature", "°C", -3),
    0x39: Vif("Heat cost allocation", None),
    0x3F: Vif("Dimensionless", None),
}
FIXED_UNIT_HISTORIC = 0x3E

#: Application error codes after CI 0x70 (EN 13757-3:2018 table 9), in the words libmbus
#: prints, so an HES that knows libmbus reads the same text.
APPLICATION_ERRORS = (
    "Unspecified error",
    "Unimplemented CI-Field",
    "Buffer too long, truncated",
    "Too many records",
    "Premature end of record",
    "More than 10 DIFE´s",
    "More than 10 VIFE´s",
    "Reserved",
    "Application busy",
    "Too many readouts",
)


def application_error_text(code: int | None) -> str:
    if code is None:
        return APPLICATION_ERRORS[0]
    if code < len(APPLICATION_ERRORS):
        return APPLICATION_ERRORS[code]
    return f"Unknown error (0x{code:02X})"
