"""The gateway's configuration: one TOML file, one pydantic model, errors that say where.

Every model forbids unknown keys (a typo is an error, not a silently ignored setting).
Units are in field names (``interval_s``, ``timeout_ms``). Secrets never live in this file:
fields ending in ``_file`` point to files readable only by the service, or to a systemd
credential as ``credential:NAME`` (resolved in ``$CREDENTIALS_DIRECTORY``).

:func:`load_config` raises :class:`~gateway.errors.ConfigError` whose ``problems`` are lines
``file:line: field: reason``, one per error, all of them at once.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError

DEFAULT_STATE_DIR = Path("/var/lib/gateway")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SERIAL_BAUD_RATES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_secret_path(reference: str | Path) -> Path:
    """A ``*_file`` setting as a path: ``credential:NAME`` is a systemd credential."""
    text = str(reference)
    if text.startswith("credential:"):
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError([f"{text}: no systemd credentials are available (CREDENTIALS_DIRECTORY is not set)"])
        return Path(directory) / text.removeprefix("credential:")
    return Path(text)


def read_secret(reference: str | Path) -> bytes:
    """Read a secret file, refusing one that other users can read (as ssh does)."""
    path = resolve_secret_path(reference)
    try:
        mode = path.stat().st_mode
        if mode & 0o077 and not str(reference).startswith("credential:"):
            raise ConfigError([f"{path}: secret file is readable by other users (mode {mode & 0o777:o}); run: chmod 600 {path}"])
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read secret file: {exc.strerror}"]) from None


class GatewaySection(Model):
    """Who this gateway is and where it keeps its state."""

    id: str = Field(pattern=NAME_PATTERN, description="gateway identity, used in MQTT topics and signed payloads")
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="store, keys, cursors and counters live here")
    timezone: str = Field("UTC", description="local time zone of the meters' clocks (M-Bus dates carry no zone)")
    demo: bool = Field(False, description="a demonstration gateway: published test keys (the DLMS Green Book's) "
                                          "are accepted; never set this in production")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value


class SigningSection(Model):
    """The gateway's ECDSA P-256 signing key (created on first run when missing)."""

    key_file: Path | None = Field(None, description="PEM private key; default STATE_DIR/keys/signing-key.pem")


class StoreSection(Model):
    """The SQLite outbox."""

    path: Path | None = Field(None, description="database file; default STATE_DIR/store.sqlite")
    max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024, description="drop oldest records beyond this size")
    max_age_days: float = Field(90, gt=0, description="drop records older than this")
    synchronous: Literal["full", "normal"] = Field(
        "full", description="full: every commit survives power loss; normal: the last commits may not"
    )


class MqttUplink(Model):
    """An MQTT 5 broker on the HES side. TLS with server verification unless loopback."""

    name: str = Field("mqtt", pattern=NAME_PATTERN)
    url: str = Field(description="mqtts://host:8883 (TLS) or mqtt://host:1883 (plaintext, loopback only by default)")
    topic_prefix: str = Field("metering", pattern=r"^[A-Za-z0-9._/-]{1,128}$")
    client_id: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: Path | None = Field(None, description="CA bundle to verify the broker; default: the system's")
    cert_file: Path | None = Field(None, description="client certificate (PEM)")
    key_file: str | None = Field(None, description="client certificate's private key (PEM)")
    allow_plaintext: bool = Field(False, description="permit mqtt:// to a non-loopback broker (not recommended)")
    batch_size: int = Field(500, ge=1, le=10_000, description="records per MQTT message")
    keepalive_s: int = Field(30, ge=5, le=3600)
    connect_timeout_s: float = Field(10, gt=0)
    publish_timeout_s: float = Field(30, gt=0)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port is not a number from 1 to 65535") from None
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @model_validator(mode="after")
    def _tls_unless_loopback(self) -> MqttUplink:
        if not self.tls and not self.allow_plaintext and not is_loopback(self.host):
            raise ValueError(
                f"plaintext MQTT to {self.host} would send meter data unencrypted; use mqtts:// "
                "or set allow_plaintext = true"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate and its key)")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT")
    return value


class DlmsPush(Model):
    """DataNotifications of new readings and events to the HES (IEC 62056-47 wrapper on TCP)."""

    destination: str = Field(description="HOST:PORT of the HES push listener")
    interval_s: int = Field(900, ge=0, le=31 * 86400, description="push what is new every interval (0: only on event "
                                                                  "and on the HES's request)")
    on_event: bool = Field(True, description="push at once when an event (alarm, tamper, ...) is stored")
    security: Literal["authenticated-encrypted", "none"] = Field(
        "authenticated-encrypted", description="general-glo-ciphering with the management keys, or plaintext "
                                               "(loopback destinations only)")
    client_sap: int = Field(1, ge=0, le=0xFFFF, description="the destination wPort (the HES's client SAP)")
    retries: int = Field(3, ge=0, le=255, description="attempts after a failed push before waiting for the next one")
    retry_delay_s: int = Field(30, ge=0, le=65535, description="pause between those attempts")
    batch_size: int = Field(100, ge=1, le=1000, description="records per DataNotification (fewer when they would "
                                                           "exceed max_apdu_bytes)")
    max_apdu_bytes: int = Field(8192, ge=256, le=65000, description="largest DataNotification sent")
    connect_timeout_s: float = Field(10, gt=0, le=300)

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        return _host_port(value)

    @property
    def host(self) -> str:
        return self.destination.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.destination.rpartition(":")[2])

    @model_validator(mode="after")
    def _ciphered_unless_loopback(self) -> DlmsPush:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(f"plaintext pushes to {self.host} would send meter data unencrypted; "
                             "use security = \"authenticated-encrypted\"")
        return self


class DlmsUplink(Model):
    """The DLMS/COSEM server for the HES (IEC 62056-47 wrapper on TCP): a management logical
    device (server SAP 1) and one logical device per collected meter (SAP 16 upwards)."""

    name: str = Field("dlms", pattern=NAME_PATTERN, description="names the push cursor and the status entry")
    enabled: bool = True
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 for every interface)")
    port: int = Field(4059, ge=0, le=65535, description="TCP port (4059 is IANA's DLMS/COSEM port; 0: any free one)")
    ek_file: str | None = Field(None, description="management client (SAP 1): global encryption key, 16 bytes or "
                                                  "32 hex digits")
    ak_file: str | None = Field(None, description="management client (SAP 1): authentication key, 16 bytes or "
                                                  "32 hex digits")
    system_title: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{16}$",
                                     description="server system title, 16 hex digits (default: derived from the "
                                                 "gateway id)")
    public_client: bool = Field(True, description="let the public client (SAP 16, no security) read the logical "
                                                  "device names and the SAP list")
    idle_timeout_s: float = Field(120, gt=0, le=86400, description="close a connection silent for this long")
    max_connections: int = Field(32, ge=1, le=1024)
    max_pdu_size: int = Field(4096, ge=64, le=0xFFFF, description="largest APDU accepted from the HES")
    push: DlmsPush | None = None

    @model_validator(mode="after")
    def _keys_together(self) -> DlmsUplink:
        if (self.ek_file is None) != (self.ak_file is None):
            raise ValueError("ek_file and ak_file go together (the management client's keys)")
        return self


class Uplinks(Model):
    mqtt: list[MqttUplink] = Field(default_factory=list)
    dlms: list[DlmsUplink] = Field(default_factory=list, description="[uplinks.dlms] or [[uplinks.dlms]]")

    @field_validator("dlms", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class SerialOrTcp(Model):
    """A line reached on a local serial port or through a TCP serial server."""

    port: str | None = Field(None, description="serial device, e.g. /dev/ttyUSB0")
    tcp: str | None = Field(None, description="HOST:PORT of a TCP serial server")

    @field_validator("tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return None if value is None else _host_port(value)

    @model_validator(mode="after")
    def _one_way_in(self):
        if (self.port is None) == (self.tcp is None):
            raise ValueError("give exactly one of port (serial device) or tcp (HOST:PORT)")
        return self


class MBusBus(SerialOrTcp):
    """A wired M-Bus behind a level converter (EN 13757-2)."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["mbus"]
    baud: int = Field(2400, description="300, 600, 1200, 2400, 4800, 9600 (meters usually ship at 2400)")
    extra_timeout_ms: int = Field(0, ge=0, le=10_000, description="added to the standard's reply timeout")
    retries: int = Field(2, ge=0, le=10)

    @field_validator("baud")
    @classmethod
    def _standard_baud(cls, value: int) -> int:
        if value not in SERIAL_BAUD_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, SERIAL_BAUD_RATES))}")
        return value


Bus = Annotated[Union[MBusBus], Field(discriminator="protocol")]


class Schedule(Model):
    """When a meter is read: every ``interval_s`` seconds, aligned to the clock in the
    gateway's time zone (900 → :00, :15, :30, :45; 86400 → midnight), plus ``offset_s``."""

    interval_s: int = Field(900, ge=1, le=31 * 86400)
    offset_s: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _offset_inside_interval(self) -> Schedule:
        if self.offset_s >= self.interval_s:
            raise ValueError("offset_s must be smaller than interval_s")
        return self


class MBusMeter(Model):
    """A wired M-Bus meter, reached by primary or by secondary address."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["mbus"]
    bus: str
    address: int | None = Field(None, ge=0, le=250, description="primary address")
    secondary: str | None = Field(None, description="secondary address: 8-digit id, or 16 hex digits (id, manufacturer, version, medium)")
    schedule: Schedule = Field(default_factory=Schedule)

    @field_validator("secondary")
    @classmethod
    def _secondary_form(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9]{8}|[0-9A-Fa-f]{16}", value):
            raise ValueError("must be an 8-digit identification number or 16 hex digits")
        return value

    @model_validator(mode="after")
    def _one_address(self) -> MBusMeter:
        if (self.address is None) == (self.secondary is None):
            raise ValueError("give exactly one of address (primary) or secondary")
        return self


Meter = Annotated[Union[MBusMeter], Field(discriminator="protocol")]


class GatewayConfig(Model):
    """The whole configuration."""

    gateway: GatewaySection
    signing: SigningSection = Field(default_factory=SigningSection)
    store: StoreSection = Field(default_factory=StoreSection)
    uplinks: Uplinks = Field(default_factory=Uplinks)
    buses: list[Bus] = Field(default_factory=list)
    meters: list[Meter] = Field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.gateway.state_dir

    @property
    def store_path(self) -> Path:
        return self.store.path or self.state_dir / "store.sqlite"

    @property
    def signing_key_path(self) -> Path:
        return self.signing.key_file or self.state_dir / "keys" / "signing-key.pem"


def cross_check(config: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems no single section can see: unique names and references between sections,
    each with the location of the setting to fix."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    named = (("buses", config.buses), ("meters", config.meters), ("uplinks.mqtt", config.uplinks.mqtt),
             ("uplinks.dlms", config.uplinks.dlms))
    for section, items in named:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.name in seen:
                problems.append(((*section.split("."), index, "name"), f"{item.name!r} is used twice; names must be unique"))
            seen.add(item.name)
    problems += _dlms_problems(config)
    buses = {bus.name: bus for bus in config.buses}
    for index, meter in enumerate(config.meters):
        bus = buses.get(meter.bus)
        if bus is None:
            known = ", ".join(buses) or "none are configured"
            problems.append((("meters", index, "bus"), f"no bus is named {meter.bus!r} (buses: {known})"))
        elif bus.protocol != meter.protocol:
            problems.append((("meters", index, "bus"), f"bus {bus.name!r} is {bus.protocol}, but this meter speaks {meter.protocol}"))
    return problems


#: The keys of the DLMS Green Book's examples (and of every simulator): published, so a
#: gateway using them has no security at all. Only a demo gateway may (``gateway.demo``).
GREEN_BOOK_KEYS = (bytes(range(16)), bytes(range(0xD0, 0xE0)))


def read_key(reference: str | Path) -> bytes:
    """An AES-128 key file: 16 raw bytes, or 32 hex digits (whitespace ignored)."""
    raw = read_secret(reference)
    if len(raw) == 16:
        return raw
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 16:
        raise ConfigError([f"{resolve_secret_path(reference)}: not an AES-128 key (16 bytes, or 32 hex digits)"])
    return key


def _dlms_problems(config: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    listening: set[tuple[str, int]] = set()
    mqtt_names = {uplink.name for uplink in config.uplinks.mqtt}
    for index, server in enumerate(config.uplinks.dlms):
        if server.name in mqtt_names:
            problems.append((("uplinks", "dlms", index, "name"),
                             f"{server.name!r} names an MQTT uplink too; uplink names must be unique (store cursors)"))
        if server.enabled and server.port:
            if (server.host, server.port) in listening:
                problems.append((("uplinks", "dlms", index, "port"), f"{server.host}:{server.port} is used twice"))
            listening.add((server.host, server.port))
        if server.push is not None and server.push.security != "none" and server.ek_file is None:
            problems.append((("uplinks", "dlms", index, "push", "security"),
                             "ciphered pushes need the management keys (ek_file, ak_file)"))
        if not server.enabled or server.ek_file is None or server.ak_file is None:
            continue
        try:
            keys = (read_key(server.ek_file), read_key(server.ak_file))
        except ConfigError as exc:
            problems += [(("uplinks", "dlms", index, "ek_file"), problem) for problem in exc.problems]
            continue
        if not config.gateway.demo and any(key in GREEN_BOOK_KEYS for key in keys):
            problems.append((("uplinks", "dlms", index, "ek_file"),
                             "the Green Book's published test keys (000102...0F / D0D1...DF) give no security; "
                             "generate keys (e.g. head -c16 /dev/urandom | xxd -p) or set gateway.demo = true "
                             "for a demonstration"))
    return problems


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML configuration file; every problem is reported at once."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read configuration: {exc.strerror}"]) from None
    return parse_config(text, path)


def parse_config(text: str, path: str | Path = "<config>") -> GatewayConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise ConfigError([f"{path}:{line}: TOML syntax: {exc.msg if hasattr(exc, 'msg') else exc}"]) from None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(path, text, error) for error in exc.errors()]) from None
    problems = cross_check(config)
    if problems:
        locator = TomlLocator(text)
        raise ConfigError([f"{path}:{locator.line_of(list(loc))}: {_dotted(list(loc))}: {reason}" for loc, reason in problems])
    return config


def _line_from_message(message: str) -> int:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 1


def _problem(path: str | Path, text: str, error: dict[str, Any]) -> str:
    loc = [part for part in error["loc"] if not (isinstance(part, str) and part in _UNION_TAGS)]
    field = _dotted(loc) or "(top level)"
    line = TomlLocator(text).line_of(loc)
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch" and error["ctx"].get("pattern") == NAME_PATTERN:
        reason = "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    elif error["type"] == "extra_forbidden":
        reason = "unknown setting (check the spelling; see `gateway config schema`)"
    elif error["type"] == "missing":
        reason = "required setting is missing"
    elif error["type"] == "union_tag_invalid":
        reason = f"unknown protocol {error['input'].get('protocol')!r}" if isinstance(error.get("input"), dict) else reason
    return f"{path}:{line}: {field}: {reason}"


# pydantic puts the discriminator value in the location of union members; it is no field.
_UNION_TAGS = {"mbus"}


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class TomlLocator:
    """Finds the line of a setting in TOML text from its location path.

    tomllib keeps no positions, so this follows table headers (``[a.b]``, ``[[a]]``) and
    keys line by line and picks the deepest line whose path leads to the setting: a missing
    key points at its table's header. Good enough to send an operator to the right line;
    never used to read values.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, loc: list[Any]) -> int:
        target = [str(part) for part in loc]
        best_line, best_depth = 1, 0
        table: list[str] = []
        array_counts: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(self.lines, start=1):
            header = self._HEADER.match(line)
            if header:
                names = [n.strip().strip("\"'") for n in header.group(2).split(".")]
                if header.group(1) == "[[":
                    array_counts[tuple(names)] = array_counts.get(tuple(names), 0) + 1
                table = self._with_indices(names, array_counts)
                path = table
            else:
                key = self._KEY.match(line)
                if not key:
                    continue
                path = table + [n.strip().strip("\"'") for n in key.group(1).split(".")]
            if _is_prefix(path, target) and len(path) > best_depth:
                best_line, best_depth = number, len(path)
        return best_line

    @staticmethod
    def _with_indices(names: list[str], array_counts: dict[tuple[str, ...], int]) -> list[str]:
        """``[meters.schedule]`` after the third ``[[meters]]`` is ``meters.2.schedule``."""
        path: list[str] = []
        for depth, name in enumerate(names, start=1):
            path.append(name)
            count = array_counts.get(tuple(names[:depth]))
            if count:
                path.append(str(count - 1))
        return path


def _is_prefix(prefix: list[str], full: list[str]) -> bool:
    return len(prefix) <= len(full) and full[: len(prefix)] == prefix
