"""The COSEM unit enumeration and the scaler_unit attribute (Blue Book, IEC 62056-6-2 4.3.2).

Register-like objects (class 3 Register, 4 Extended register, 5 Demand register) carry
``scaler_unit ::= structure { scaler: integer, unit: enum }``: the value in the unit is
``value × 10^scaler``. :class:`ScalerUnit` reads that structure and turns a value into an
exact :class:`~decimal.Decimal`.

Symbols are printable ASCII where the Blue Book uses superscripts (``m^3``), and keep the
degree, ohm and micro signs. Codes 0, 58, 59, 68, 69, 73..127, 175..253 are not defined;
:func:`unit_symbol` reports them as ``unit-N`` so nothing is ever dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.codecs.dlms.axdr import Data, DataType, to_decimal
from gateway.codecs.dlms.errors import DLMSError
from gateway.model import EXACT

#: code -> (symbol, quantity). Blue Book 4.3.2 (unit enumeration of class 3), with the
#: imperial and US customary units (128..174) added in later editions.
UNITS: dict[int, tuple[str, str]] = {
    1: ("a", "time (year)"),
    2: ("mo", "time (month)"),
    3: ("wk", "time (week)"),
    4: ("d", "time (day)"),
    5: ("h", "time (hour)"),
    6: ("min", "time (minute)"),
    7: ("s", "time (second)"),
    8: ("°", "(phase) angle"),
    9: ("°C", "temperature"),
    10: ("currency", "(local) currency"),
    11: ("m", "length"),
    12: ("m/s", "speed"),
    13: ("m^3", "volume"),
    14: ("m^3", "corrected volume"),
    15: ("m^3/h", "volume flux"),
    16: ("m^3/h", "corrected volume flux"),
    17: ("m^3/d", "volume flux"),
    18: ("m^3/d", "corrected volume flux"),
    19: ("l", "volume"),
    20: ("kg", "mass"),
    21: ("N", "force"),
    22: ("Nm", "energy"),
    23: ("Pa", "pressure"),
    24: ("bar", "pressure"),
    25: ("J", "energy"),
    26: ("J/h", "thermal power"),
    27: ("W", "active power"),
    28: ("VA", "apparent power"),
    29: ("var", "reactive power"),
    30: ("Wh", "active energy"),
    31: ("VAh", "apparent energy"),
    32: ("varh", "reactive energy"),
    33: ("A", "current"),
    34: ("C", "electrical charge"),
    35: ("V", "voltage"),
    36: ("V/m", "electric field strength"),
    37: ("F", "capacitance"),
    38: ("Ω", "resistance"),
    39: ("Ωm^2/m", "resistivity"),
    40: ("Wb", "magnetic flux"),
    41: ("T", "magnetic flux density"),
    42: ("A/m", "magnetic field strength"),
    43: ("H", "inductance"),
    44: ("Hz", "frequency"),
    45: ("1/(Wh)", "active energy meter constant or pulse value"),
    46: ("1/(varh)", "reactive energy meter constant or pulse value"),
    47: ("1/(VAh)", "apparent energy meter constant or pulse value"),
    48: ("V^2h", "volt-squared hours"),
    49: ("A^2h", "ampere-squared hours"),
    50: ("kg/s", "mass flux"),
    51: ("S", "conductance"),
    52: ("K", "temperature"),
    53: ("1/(V^2h)", "volt-squared hour meter constant or pulse value"),
    54: ("1/(A^2h)", "ampere-squared hour meter constant or pulse value"),
    55: ("1/m^3", "volume meter constant or pulse value"),
    56: ("%", "percentage"),
    57: ("Ah", "ampere-hours"),
    60: ("Wh/m^3", "energy per volume"),
    61: ("J/m^3", "calorific value, wobbe"),
    62: ("Mol %", "molar fraction of gas composition"),
    63: ("g/m^3", "mass density, quantity of material"),
    64: ("Pa s", "dynamic viscosity"),
    65: ("J/kg", "specific energy"),
    66: ("g/cm^2", "pressure"),
    67: ("atm", "pressure"),
    70: ("dBm", "signal strength"),
    71: ("dBµV", "signal strength"),
    72: ("dB", "logarithmic ratio"),
    128: ("in", "length"),
    129: ("ft", "length"),
    130: ("lb", "mass"),
    131: ("°F", "temperature"),
    132: ("°R", "temperature"),
    133: ("in^2", "area"),
    134: ("ft^2", "area"),
    135: ("ac", "area"),
    136: ("in^3", "volume"),
    137: ("ft^3", "volume"),
    138: ("ac-ft", "volume"),
    139: ("gal (imp)", "volume"),
    140: ("gal (US)", "volume"),
    141: ("lbf", "force"),
    142: ("psi", "pressure"),
    143: ("lb/ft^3", "density"),
    144: ("lb/(ft s)", "dynamic viscosity"),
    145: ("ft^2/s", "kinematic viscosity"),
    146: ("Btu", "energy"),
    147: ("thm (EU)", "energy"),
    148: ("thm (US)", "energy"),
    149: ("Btu/lb", "enthalpy"),
    150: ("Btu/ft^3", "calorific value"),
    151: ("cf", "volume (cubic feet)"),
    152: ("ft/s", "speed"),
    153: ("ft^3/s", "volume flux"),
    154: ("ft^3/min", "volume flux"),
    155: ("ft^3/h", "volume flux"),
    156: ("ft^3/d", "volume flux"),
    157: ("ac-ft/s", "volume flux"),
    158: ("ac-ft/min", "volume flux"),
    159: ("ac-ft/h", "volume flux"),
    160: ("ac-ft/d", "volume flux"),
    161: ("gal (imp)", "volume (imperial gallon)"),
    162: ("gal (imp)/s", "volume flux"),
    163: ("gal (imp)/min", "volume flux"),
    164: ("gal (imp)/h", "volume flux"),
    165: ("gal (imp)/d", "volume flux"),
    166: ("gal (US)", "volume (US gallon)"),
    167: ("gal (US)/s", "volume flux"),
    168: ("gal (US)/min", "volume flux"),
    169: ("gal (US)/h", "volume flux"),
    170: ("gal (US)/d", "volume flux"),
    171: ("Btu/s", "power"),
    172: ("Btu/min", "power"),
    173: ("Btu/h", "power"),
    174: ("Btu/d", "power"),
    254: ("other", "other unit"),
    255: ("count", "no unit, unitless, count"),
}

# Codes with a name of their own in code that uses them.
UNIT_WH = 30
UNIT_W = 27
UNIT_V = 35
UNIT_A = 33
UNIT_M3 = 13
UNIT_COUNT = 255


def unit_symbol(code: int) -> str:
    """The symbol of a unit code; ``unit-N`` for a code the Blue Book does not define."""
    entry = UNITS.get(code)
    return entry[0] if entry else f"unit-{code}"


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    """``scaler_unit`` of a register: the value shown is ``value × 10^scaler`` in ``unit``."""

    scaler: int
    unit: int

    @classmethod
    def from_data(cls, data: Data) -> ScalerUnit:
        """Read ``structure { integer scaler, enum unit }`` as the meter sent it."""
        items = data.value
        if (
            data.type is not DataType.STRUCTURE
            or len(items) != 2
            or items[0].type is not DataType.INTEGER
            or items[1].type is not DataType.ENUM
        ):
            raise DLMSError("scaler_unit is not structure {integer, enum}", field="scaler_unit")
        return cls(items[0].value, items[1].value)

    def to_data(self) -> Data:
        return Data(DataType.STRUCTURE, (Data(DataType.INTEGER, self.scaler), Data(DataType.ENUM, self.unit)))

    @property
    def symbol(self) -> str:
        return unit_symbol(self.unit)

    def apply(self, value: Data) -> Decimal:
        """The exact value ``value × 10^scaler`` (integers, BCD and reals alike)."""
        return to_decimal(value).scaleb(self.scaler, EXACT)
