"""Modbus register maps: which registers of a meter hold which quantity, as data.

A map is a TOML file. The gateway ships maps for widespread meters
(``gateway/data/modbus_maps/NAME.toml``, listed by :func:`shipped_maps`); an operator
writes their own and names it with ``map_file``. Its settings::

    description = "Eastron SDM630-Modbus V2"
    function = 4                     # default function of the entries: 3 holding, 4 input registers
    type = "float32"                 # default data type of the entries
    word_order = "big"               # default: the most significant register first
    byte_order = "big"               # default: each register as Modbus sends it
    max_registers = 80               # the most registers one request may read (default 125)
    max_gap = 0                      # unmapped registers one read may span to join two entries
    not_available = 0xFFFF           # the register word by which the meter marks "no value" (unsigned entries)
    serial_number = "serial_number"  # the entry holding the meter's serial number (its identity)

    [[registers]]
    name = "voltage_l1"              # the quantity's name in readings; unique in the map
    address = 0x0000                 # the register address as sent on the wire (0-based)
    unit = "V"
    obis = "1-0:32.7.0*255"          # where an OBIS code applies
    # function, type, word_order, byte_order: as the defaults above unless given here;
    # scale = "0.01" (a decimal factor) or scaler = -2 (a power of ten), never both

Data types: int16, uint16, int32, uint32, int64, uint64, float32, float64
(:data:`~gateway.codecs.modbus.registers.DATA_TYPES`). A map is refused with one line per
problem, ``file:line: registers[i] 'name': field: reason``: unknown keys, an address
beyond 0xFFFF, two entries with one name or on the same registers, a serial number that is
no integer ...

:meth:`RegisterMap.blocks` groups the entries into as few reads as the map allows:
entries of one function whose registers follow each other (or leave at most ``max_gap``
unmapped registers between them) share a read of at most ``max_registers`` registers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.modbus.registers import DATA_TYPES, DataType, Decoded, Order, decode_value
from gateway.codecs.modbus.rtu import MAX_READ_REGISTERS, ReadRequest
from gateway.errors import ConfigError

TypeName = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
#: Readable quantity names: letters, digits and ``_ . - : ;``; unique within a map.
QUANTITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:;-]{0,127}$"
#: A scale factor has at most this many significant digits (scaling stays exact).
SCALE_DIGITS = 30


class MapError(ConfigError):
    """A register map that cannot be used; ``problems`` has one line per problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MapEntry(_Model):
    """One quantity: the registers that hold it and how to read them."""

    name: str = Field(pattern=QUANTITY_PATTERN)
    address: int = Field(ge=0, le=0xFFFF, description="register address as sent on the wire (0-based)")
    function: Literal[3, 4] | None = Field(None, description="3 holding or 4 input registers (default: the map's)")
    type: TypeName | None = Field(None, description="data type (default: the map's)")
    word_order: Order | None = None
    byte_order: Order | None = None
    scale: Decimal | None = Field(None, description='decimal factor, e.g. "0.01"')
    scaler: int | None = Field(None, ge=-30, le=30, description="power of ten, e.g. -2 for 0.01")
    unit: str | None = Field(None, max_length=32)
    obis: str | None = Field(None, description="OBIS code, e.g. 1-0:1.8.0*255")
    description: str | None = None

    @field_validator("scale", mode="before")
    @classmethod
    def _exact_scale(cls, value: Any) -> Any:
        """A TOML float (0.01) is taken as written (its shortest repr), not as its binary value."""
        if isinstance(value, bool) or value is None:
            return value
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not number.is_finite() or number == 0:
            raise ValueError("must be a finite number other than zero")
        if len(number.as_tuple().digits) > SCALE_DIGITS:
            raise ValueError(f"has more than {SCALE_DIGITS} significant digits")
        return number

    @field_validator("obis")
    @classmethod
    def _obis(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(Obis.parse(value))
        except (DLMSError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_scale(self) -> MapEntry:
        if self.scale is not None and self.scaler is not None:
            raise ValueError("give scale (a factor) or scaler (a power of ten), not both")
        return self

    @property
    def factor(self) -> Decimal | None:
        if self.scaler is not None:
            return Decimal(1).scaleb(self.scaler)
        return self.scale


@dataclass(frozen=True, slots=True)
class Entry:
    """A map entry with the map's defaults applied."""

    name: str
    function: int
    address: int
    data_type: DataType
    word_order: Order
    byte_order: Order
    factor: Decimal | None
    unit: str | None
    obis: str | None

    @property
    def end(self) -> int:
        """The address after the entry's last register."""
        return self.address + self.data_type.registers

    def describe(self) -> str:
        return f"0x{self.address:04X}" + (f"..0x{self.end - 1:04X}" if self.data_type.registers > 1 else "")


@dataclass(frozen=True, slots=True)
class Block:
    """One read: ``count`` registers of ``function`` from ``address``, holding ``entries``."""

    function: int
    address: int
    count: int
    entries: tuple[Entry, ...]

    def request(self, unit: int) -> ReadRequest:
        return ReadRequest(unit, self.function, self.address, self.count)

    def values(self, registers: tuple[int, ...], not_available: int | None) -> list[tuple[Entry, Decoded]]:
        """Each entry's exact value from the block's registers."""
        out = []
        for entry in self.entries:
            words = registers[entry.address - self.address:entry.end - self.address]
            out.append((entry, decode_value(words, entry.data_type, word_order=entry.word_order,
                                            byte_order=entry.byte_order, factor=entry.factor,
                                            not_available=not_available)))
        return out


class RegisterMap(_Model):
    """A meter's register map (see the module docstring)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="default: the file's stem")
    description: str = ""
    function: Literal[3, 4] = 3
    type: TypeName | None = None
    word_order: Order = "big"
    byte_order: Order = "big"
    max_registers: int = Field(MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    max_gap: int = Field(0, ge=0, le=MAX_READ_REGISTERS)
    not_available: int | None = Field(None, ge=0, le=0xFFFF)
    serial_number: str | None = None
    registers: list[MapEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _every_entry_has_a_type(self) -> RegisterMap:
        if self.type is None and any(entry.type is None for entry in self.registers):
            untyped = next(entry.name for entry in self.registers if entry.type is None)
            raise ValueError(f"entry {untyped!r} has no type and the map sets no default type")
        return self

    @functools.cached_property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(Entry(
            name=e.name, function=e.function or self.function, address=e.address,
            data_type=DATA_TYPES[e.type or self.type or ""], word_order=e.word_order or self.word_order,
            byte_order=e.byte_order or self.byte_order, factor=e.factor, unit=e.unit, obis=e.obis)
            for e in self.registers)

    @property
    def serial_entry(self) -> Entry | None:
        return next((e for e in self.entries if e.name == self.serial_number), None)

    def blocks(self) -> list[Block]:
        """The entries grouped into reads (see the module docstring); greedy, which is
        optimal for intervals taken in address order."""
        blocks: list[Block] = []
        current: list[Entry] = []
        for entry in sorted(self.entries, key=lambda e: (e.function, e.address)):
            if current and (entry.function != current[0].function or entry.address - current[-1].end > self.max_gap
                            or entry.end - current[0].address > self.max_registers):
                blocks.append(_block(current))
                current = []
            current.append(entry)
        if current:
            blocks.append(_block(current))
        return blocks


def _block(entries: list[Entry]) -> Block:
    first = entries[0]
    return Block(first.function, first.address, max(e.end for e in entries) - first.address, tuple(entries))


# -- loading ------------------------------------------------------------------------------

def shipped_maps() -> dict[str, Path]:
    """The maps shipped with the gateway, by name."""
    folder = resources.files("gateway") / "data" / "modbus_maps"
    return {Path(str(item)).stem: Path(str(item)) for item in sorted(folder.iterdir(), key=str)
            if str(item).endswith(".toml")}


@functools.lru_cache(maxsize=None)
def shipped_map(name: str) -> RegisterMap:
    """A shipped map by name; KeyError names the maps there are."""
    maps = shipped_maps()
    if name not in maps:
        raise KeyError(f"no shipped map is named {name!r} (maps: {', '.join(maps)})")
    return load_map_file(maps[name])


def load_map_file(path: str | Path) -> RegisterMap:
    """Read and validate a map; every problem is reported at once in a :class:`MapError`
    (a file that cannot be read: a :class:`~gateway.errors.ConfigError`)."""
    from gateway.config import read_text

    return parse_map(read_text(path, "register map"), path)


def parse_map(text: str, path: str | Path = "<map>") -> RegisterMap:
    from gateway.config import TomlLocator, error_reason, parse_toml

    try:
        data = parse_toml(text, path)
    except ConfigError as exc:
        raise MapError(exc.problems) from None
    data.setdefault("name", _name_of(Path(path)))
    locator = TomlLocator(text)
    try:
        register_map = RegisterMap.model_validate(data)
    except ValidationError as exc:
        raise MapError([_problem_line(path, locator, data, list(e["loc"]), error_reason(e))
                        for e in exc.errors()]) from None
    problems = map_problems(register_map)
    if problems:
        raise MapError([_problem_line(path, locator, data, list(loc), reason) for loc, reason in problems])
    return register_map


def _name_of(path: Path) -> str:
    """A map's default name: its file's stem, with characters a name cannot hold as '-'."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip("-._")[:64] or "map"


def map_problems(register_map: RegisterMap) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems between entries: names used twice, registers read for two entries,
    entries past the last register, a serial number that cannot be one."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: dict[str, int] = {}
    taken: dict[tuple[int, int], Entry] = {}
    for index, entry in enumerate(register_map.entries):
        if entry.name in seen:
            problems.append((("registers", index, "name"), f"{entry.name!r} is used twice; names must be unique"))
        seen.setdefault(entry.name, index)
        if entry.end > 0x10000:
            problems.append((("registers", index, "address"),
                             f"a {entry.data_type.name} at 0x{entry.address:04X} runs past register 0xFFFF"))
            continue
        for register in range(entry.address, entry.end):
            other = taken.get((entry.function, register))
            if other is not None:
                problems.append((("registers", index, "address"),
                                 f"registers {entry.describe()} overlap entry {other.name!r} ({other.describe()})"))
                break
        else:
            taken.update({(entry.function, r): entry for r in range(entry.address, entry.end)})
    if register_map.serial_number is not None:
        problems += _serial_problems(register_map)
    return problems


def _serial_problems(register_map: RegisterMap) -> list[tuple[tuple[str | int, ...], str]]:
    entry = register_map.serial_entry
    if entry is None:
        names = ", ".join(e.name for e in register_map.entries)
        return [(("serial_number",), f"no entry is named {register_map.serial_number!r} (entries: {names})")]
    if entry.data_type.is_float or entry.factor is not None:
        return [(("serial_number",), f"entry {entry.name!r} is a {entry.data_type.name}"
                 f"{' with a scale' if entry.factor is not None else ''}: a serial number is an unscaled integer")]
    return []


def _problem_line(path: str | Path, locator: Any, data: dict[str, Any], loc: list[Any], reason: str) -> str:
    """``file:line: registers[2] 'voltage_l1': address: reason`` (the entry named)."""
    line = locator.line_of(loc)
    if len(loc) >= 2 and loc[0] == "registers" and isinstance(loc[1], int):
        entries = data.get("registers")
        raw = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"registers[{loc[1]}]" + (f" {name!r}" if isinstance(name, str) else "")
        rest = ".".join(str(part) for part in loc[2:])
        return f"{path}:{line}: {where}: {rest + ': ' if rest else ''}{reason}"
    field = ".".join(str(part) for part in loc) or "(top level)"
    return f"{path}:{line}: {field}: {reason}"
