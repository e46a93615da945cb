"""The gateway's configuration: one TOML file, one pydantic model, errors that say where.

Every model forbids unknown keys (a typo is an error, not a silently ignored setting).
Units are in field names (``interval_s``, ``timeout_ms``). Secrets never live in this file:
fields ending in ``_file`` point to files readable only by the service, or to a systemd
credential as ``credential:NAME`` (resolved in ``$CREDENTIALS_DIRECTORY``).

:func:`load_config` raises :class:`~gateway.errors.ConfigError` whose ``problems`` are lines
``file:line: field: reason``, one per error, all of them at once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from datetime import datetime
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
    failing_after: int = Field(1, ge=1, le=1000, description="a meter is failing after this many consecutive "
                                                              "failed reads (comm.failed)")
    unreachable_after: int = Field(5, ge=1, le=1000, description="and unreachable after this many (comm.unreachable)")
    clock_step_threshold_s: float = Field(5, gt=0, description="a jump of the wall clock against the monotonic "
                                                                "clock larger than this raises clock.stepped")
    apply_grace_s: float = Field(10, gt=0, le=600, description="a new configuration's buses must open within this "
                                                                "time, or the previous configuration is restored")
    config_versions: int = Field(10, ge=2, le=1000, description="applied configurations kept in STATE_DIR/config")

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> GatewaySection:
        if self.failing_after > self.unreachable_after:
            raise ValueError("failing_after must not exceed unreachable_after")
        return self
    demo: bool = Field(False, description="a demonstration gateway: published test keys (Green Book) are allowed")

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
    allow_remote_config: bool = Field(False, description="accept the `config` command (a new configuration as TOML) "
                                                         "from the HES over this uplink")
    allow_remote_devices: bool = Field(False, description="accept the devices.* commands that change a device "
                                                          "(commission, exchange, rekey …) from the HES over this "
                                                          "uplink; devices.list and devices.show are always answered")
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
    ek_file: str | None = Field(None, description="management client (SAP 1): global encryption key, 32 hex digits")
    ak_file: str | None = Field(None, description="management client (SAP 1): authentication key, 32 hex digits")
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


class BusHealth(Model):
    """Per-bus thresholds of the meters' health; unset: the ``[gateway]`` ones."""

    failing_after: int | None = Field(None, ge=1, le=1000)
    unreachable_after: int | None = Field(None, ge=1, le=1000)


class MBusBus(SerialOrTcp, BusHealth):
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


class DlmsLine(SerialOrTcp, BusHealth):
    """A line to DLMS/COSEM meters: RS-485 (HDLC, many meters by HDLC address) on a serial
    port or a TCP serial server, or a TCP endpoint speaking the IEC 62056-47 wrapper.

    The meters of one line are read one after another (one association at a time on the
    line). A ``tcp`` line is one endpoint: a meter, or a TCP serial server with an RS-485
    line behind it (``interface = "hdlc"``). Meters with their own IP addresses get one
    line each, and lines are polled in parallel.
    """

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["dlms"]
    interface: Literal["hdlc", "wrapper"] = Field("hdlc", description="hdlc (IEC 62056-46) or wrapper (-47, TCP only)")
    baud: int = Field(9600, description="HDLC baud rate (after the mode E switch when mode_e is set)")
    mode_e: bool = Field(False, description="open with IEC 62056-21 mode E at 300 baud, then switch to HDLC")
    response_timeout_ms: int = Field(3000, ge=50, le=60_000, description="longest wait for each reply frame")
    session_timeout_s: float = Field(
        120, gt=0, le=3600,
        description="bound on one whole association (connect, reads, release): a meter that trickles bytes "
                    "never holds the line longer; the link is closed after every association, so the "
                    "meter's HDLC inactivity time-out never matters")
    retries: int = Field(2, ge=0, le=10, description="HDLC: repeat SNRM / poll with RR when a reply is missing")

    @field_validator("baud")
    @classmethod
    def _standard_baud(cls, value: int) -> int:
        if value not in SERIAL_BAUD_RATES + (57600, 115200):
            raise ValueError(f"must be one of {', '.join(map(str, SERIAL_BAUD_RATES + (57600, 115200)))}")
        return value

    @model_validator(mode="after")
    def _wrapper_over_tcp(self) -> DlmsLine:
        if self.interface == "wrapper" and self.tcp is None:
            raise ValueError("the wrapper (IEC 62056-47) runs over TCP: give tcp = HOST:PORT, or interface = \"hdlc\"")
        if self.mode_e and self.interface != "hdlc":
            raise ValueError("mode_e opens an HDLC link: it needs interface = \"hdlc\"")
        return self


#: Each dongle's factory line speed: IMST iM871A 57600 Bd (WM-Bus HCI spec), Amber AMB8465
#: 9600 Bd (its manual's UART default), CUL/nanoCUL with culfw 38400 Bd.
WMBUS_DEFAULT_BAUD = {"imst": 57600, "amber": 9600, "cul": 38400}
WMBUS_BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


class WMBusDongle(SerialOrTcp, BusHealth):
    """A wireless M-Bus radio dongle (EN 13757-4), listened to all the time."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["wmbus"]
    dongle: Literal["imst", "amber", "cul"] = Field(
        description="imst: IMST iM871A/iM170A (WM-Bus HCI); amber: Amber/Würth Metis AMB8465 family; "
                    "cul: CUL/nanoCUL with culfw")
    mode: Literal["t1", "c1", "s1", "c1+t1"] = Field(
        "t1", description="link mode the meters send in; c1+t1 hears both (imst and amber only)")
    baud: int | None = Field(None, description="default: the dongle's own (imst 57600, amber 9600, cul 38400)")
    silence_timeout_s: float = Field(600, gt=0, le=86400, description="a dongle silent this long is reopened")
    duplicate_window_s: float = Field(
        60, ge=0, le=3600, description="a telegram heard again within this time (same meter, access number and "
                                       "payload) is a duplicate and is stored once")
    store_unknown: bool = Field(False, description="store the readings of plaintext telegrams from meters "
                                                   "not configured (default: only list them in the status)")

    @field_validator("baud")
    @classmethod
    def _dongle_baud(cls, value: int | None) -> int | None:
        if value is not None and value not in WMBUS_BAUD_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, WMBUS_BAUD_RATES))}")
        return value

    @model_validator(mode="after")
    def _mode_the_dongle_has(self) -> WMBusDongle:
        if self.dongle == "cul" and self.mode == "c1+t1":
            raise ValueError("a cul stick (culfw) listens to one mode at a time: t1, c1 or s1")
        return self

    @property
    def line_baud(self) -> int:
        return self.baud or WMBUS_DEFAULT_BAUD[self.dongle]

    @property
    def link_modes(self) -> tuple[str, ...]:
        """``("C1", "T1")`` for ``c1+t1``: the codec's link mode names."""
        return tuple(mode.upper() for mode in self.mode.split("+"))


MODBUS_BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class ModbusLine(SerialOrTcp, BusHealth):
    """An RS-485 line of Modbus RTU meters (Modbus over Serial Line V1.02) on a serial port,
    or behind a TCP serial server (RTU frames carried over TCP). A port shared with another
    bus (M-Bus behind the same converter or server) is opened once; the buses take turns.

    Characters are 8 data bits; the standard's default is even parity and 1 stop bit (8E1),
    without parity 2 stop bits (8N2); many meters ship 8N1, which ``parity = "N"`` and
    ``stop_bits = 1`` select.
    """

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["modbus"]
    baud: int = Field(9600, description=", ".join(map(str, MODBUS_BAUD_RATES)))
    parity: Literal["E", "O", "N"] = Field("E", description="E (even, the standard's default), O (odd) or N (none)")
    stop_bits: Literal[1, 2] = Field(1, description="1, or 2 (the standard's choice without parity)")
    response_timeout_ms: int = Field(1000, ge=20, le=60_000,
                                     description="longest wait for a reply after a request has left the line")
    retries: int = Field(2, ge=0, le=10, description="repeat a request that got no reply or a garbled one")
    inter_request_delay_ms: int = Field(0, ge=0, le=10_000,
                                        description="silence before every request beyond the standard's 3.5 "
                                                    "characters (for slow meters and converters)")

    @field_validator("baud")
    @classmethod
    def _modbus_baud(cls, value: int) -> int:
        if value not in MODBUS_BAUD_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, MODBUS_BAUD_RATES))}")
        return value


class DlmsPushListener(BusHealth):
    """Where DLMS/COSEM devices that send on their own (battery-powered remote sensors:
    gas volume, temperature, pressure; meters with a push setup) deliver their
    DataNotifications: a TCP port speaking the IEC 62056-47 wrapper. Each push must be
    ciphered with general-glo-ciphering, which names the sensor by its system title."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["dlms-push"]
    listen: str = Field("0.0.0.0:4060", description="HOST:PORT to listen on (sensors connect here)")
    max_connections: int = Field(64, ge=1, le=4096)
    idle_timeout_s: float = Field(120, gt=0, le=86400, description="close a connection silent for this long")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


Bus = Annotated[Union[MBusBus, DlmsLine, WMBusDongle, ModbusLine, DlmsPushListener], Field(discriminator="protocol")]


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


#: Published test keys (Green Book examples, gurux and dlms-cosem defaults): refused in a
#: production configuration, allowed in a demo one.
TEST_KEYS = {bytes(range(16)): "000102...0F", bytes(range(0xD0, 0xE0)): "D0D1...DF"}
_OBJECT = re.compile(r"^\d{1,3}[.-]\d{1,3}[.:]\d{1,3}\.\d{1,3}\.\d{1,3}(?:[.*&]\d{1,3})?(?::\d{1,5}:-?\d{1,3})?$")
_HEX_TITLE = re.compile(r"^[0-9A-Fa-f]{16}$")


def _obis_text(value: str) -> str:
    if not _OBJECT.fullmatch(value.strip()):
        raise ValueError(f"{value!r} is not OBIS[:CLASS:ATTR] (e.g. 1.0.1.8.0.255 or 1-0:1.8.0*255:3:2)")
    return value.strip()


class DlmsProfile(Model):
    """A Profile Generic (class 7) read incrementally by time range from its last stored row."""

    obis: str
    capture_period_s: int = Field(900, ge=1, description="the profile's capture period (for the first read's window)")
    columns: list[int] | None = Field(None, description="1-based columns to read (the clock column is always read)")
    backfill_s: int = Field(86_400, ge=0, description="how far back the first read of a new meter reaches")

    @field_validator("obis")
    @classmethod
    def _obis(cls, value: str) -> str:
        return _obis_text(value)


class DlmsClockSync(Model):
    """Compare the meter's clock with the gateway's on every read; set it when off."""

    threshold_s: float = Field(10, gt=0, description="set the clock when it is off by more than this")
    set: bool = Field(False, description="set the meter's clock (else only record the deviation)")
    method: Literal["set", "adjust_to_quarter"] = Field(
        "set", description="set: SET Clock.time to the gateway's time; adjust_to_quarter: ACTION method 2")


class DlmsMeter(Model):
    """A DLMS/COSEM meter (a logical device) on a DLMS line."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["dlms"]
    bus: str
    client_sap: int = Field(16, ge=1, le=0x7F, description="client address: 16 public, 1 management, 17.. others")
    server_logical: int = Field(1, ge=0, le=0x3FFF, description="the meter's logical device (1 = management)")
    server_physical: int | None = Field(None, ge=0, le=0x3FFF, description="HDLC physical address (RS-485 drop)")
    serial_number: int | None = Field(None, ge=0, description="serial number: physical address = SN mod 10000 + 1000")
    address_size: Literal[1, 2, 4] | None = Field(None, description="HDLC server address bytes (default: shortest)")
    authentication: Literal["none", "low", "gmac"] = "none"
    security: Literal["none", "authenticated", "encrypted", "authenticated+encrypted"] | None = Field(
        None, description="APDU protection; default authenticated+encrypted with gmac, else none")
    system_title: str | None = Field(None, description="the client's system title, 16 hex digits (default from the gateway id)")
    password_file: str | None = Field(None, description="LLS password")
    ek_file: str | None = Field(None, description="global unicast encryption key, 32 hex digits")
    ak_file: str | None = Field(None, description="authentication key, 32 hex digits")
    max_pdu_size: int = Field(0xFFFF, ge=64, le=0xFFFF, description="largest APDU the gateway accepts")
    objects: list[str] = Field(default_factory=list, description="OBIS[:CLASS:ATTR]; default class 3 attribute 2")
    profiles: list[DlmsProfile] = Field(default_factory=list)
    event_logs: list[str] = Field(default_factory=list, description="OBIS codes of event logs (Profile Generic)")
    clock_sync: DlmsClockSync | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    kek_file: str | None = Field(None, description="master key (KEK), 32 hex digits: wraps new keys in a key "
                                                   "transfer (`gateway devices rekey`)")
    security_setup: str = Field("0.0.43.0.0.255", description="the security setup object (class 64) of this "
                                                              "client's association, for key transfers")
    previous_ek_file: str | None = Field(None, description="the keys before the last key transfer, still tried "
                                                           "until key_overlap_until")
    previous_ak_file: str | None = None
    key_overlap_until: datetime | None = Field(None, description="until when the previous keys are tried")
    key_generation: int = Field(0, ge=0, description="counts key transfers; the meter's invocation counters are "
                                                     "kept per key generation")

    @field_validator("objects", "event_logs")
    @classmethod
    def _object_list(cls, value: list[str]) -> list[str]:
        return [_obis_text(item) for item in value]

    @field_validator("system_title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is not None and not _HEX_TITLE.fullmatch(value):
            raise ValueError("must be 16 hex digits (8 bytes)")
        return value

    @property
    def effective_security(self) -> str:
        if self.security is not None:
            return self.security
        return "authenticated+encrypted" if self.authentication == "gmac" else "none"

    @model_validator(mode="after")
    def _consistent(self) -> DlmsMeter:
        if self.server_physical is not None and self.serial_number is not None:
            raise ValueError("give server_physical or serial_number, not both")
        if self.authentication == "low" and self.password_file is None:
            raise ValueError("authentication = \"low\" needs password_file")
        if (self.authentication == "gmac" or self.effective_security != "none") and \
                (self.ek_file is None or self.ak_file is None):
            raise ValueError("HLS-GMAC and ciphering need ek_file and ak_file")
        return self

    def key_files(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ("ek_file", "ak_file", "kek_file", "previous_ek_file",
                                                       "previous_ak_file") if getattr(self, name) is not None}

    @field_validator("security_setup")
    @classmethod
    def _security_setup(cls, value: str) -> str:
        return _obis_text(value)


def derived_system_title(gateway_id: str) -> bytes:
    """The DLMS client system title of a gateway: ``GWY`` and 5 bytes of the SHA-256 of its
    id (Green Book 4.3.4: 3 bytes manufacturer id, 5 bytes serial number). Stable for the
    gateway's life: its invocation counters are kept per title."""
    return b"GWY" + hashlib.sha256(gateway_id.encode("utf-8")).digest()[:5]


def server_system_title(server: DlmsUplink, gateway_id: str) -> bytes:
    """A DLMS server's system title: its ``system_title``, else ``GWY`` and 5 bytes of the
    SHA-256 of the gateway id and ``/dlms-server`` (Green Book 4.3.4: three manufacturer
    letters and a serial; set it in production). The default differs from the client title
    (:func:`derived_system_title`), and check-config refuses a server title that a meter's
    client title equals: a title sends under keys of its own (one IV namespace)."""
    if server.system_title:
        return bytes.fromhex(server.system_title)
    return b"GWY" + hashlib.sha256(f"{gateway_id}/dlms-server".encode()).digest()[:5]


def read_key(reference: str) -> bytes:
    """A 128-bit key from a secret file holding 32 hex digits."""
    text = read_secret(reference)
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 16:
        raise ConfigError([f"{resolve_secret_path(reference)}: a key file holds 32 hex digits (an AES-128 key)"])
    return key


def published_key_problem(key: bytes, allowed: bool) -> str | None:
    """Why a key may not be used here: a published test key outside a demo gateway."""
    name = TEST_KEYS.get(key)
    if name is None or allowed:
        return None
    return (f"holds the published test key {name}; use the meter's own keys "
            "(test keys are allowed only with gateway.demo = true or a gateway id starting with \"demo\")")


class WMBusMeter(Model):
    """A wireless M-Bus meter, recognised by its identification (and, where two meters share
    one, by manufacturer, version and device type)."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["wmbus"]
    bus: str
    id: str = Field(description="8-digit identification number, as printed on the meter")
    manufacturer: str | None = Field(None, description="3-letter manufacturer code, e.g. KAM")
    version: int | None = Field(None, ge=0, le=255)
    device_type: int | None = Field(None, ge=0, le=255, description="device type (medium), e.g. 0x07 water")
    key_file: str | None = Field(None, description="the meter's AES-128 key, 32 hex digits, in a file only the "
                                                   "service can read; absent: the meter sends plaintext")
    expected_interval_s: float = Field(gt=0, le=31 * 86400, description="how often the meter transmits")
    not_heard_after: int = Field(3, ge=1, le=1000, description="comm.not_heard after this many intervals of silence")
    previous_key_file: str | None = Field(None, description="the key the meter used before it was re-keyed, still "
                                                            "accepted until key_overlap_until")
    key_overlap_until: datetime | None = Field(None, description="until when previous_key_file is tried (ISO 8601 "
                                                                 "with offset)")

    @field_validator("id")
    @classmethod
    def _id_as_printed(cls, value: str) -> str:
        """Hex digits in lower case, as the link layer prints a non-BCD identification."""
        if not re.fullmatch(r"[0-9A-Fa-f]{8}", value):
            raise ValueError("must be the meter's 8-digit identification number, e.g. \"12345678\"")
        return value.lower()

    @field_validator("manufacturer")
    @classmethod
    def _letters_upper(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z@]{3}", value):
            raise ValueError("must be the 3-letter manufacturer code, e.g. \"KAM\"")
        return None if value is None else value.upper()

    def matches(self, identification: str, manufacturer: str, version: int, device_type: int) -> bool:
        """Whether a telegram from this address is this meter's."""
        return (identification == self.id and self.manufacturer in (None, manufacturer)
                and self.version in (None, version) and self.device_type in (None, device_type))

    def could_be(self, other: WMBusMeter) -> bool:
        """Whether one telegram could match both meters (then they cannot be told apart)."""
        return self.id == other.id and all(
            mine is None or theirs is None or mine == theirs
            for mine, theirs in ((self.manufacturer, other.manufacturer), (self.version, other.version),
                                 (self.device_type, other.device_type)))


class ModbusMeter(Model):
    """A Modbus meter on a Modbus line: its unit address and its register map, one shipped
    with the gateway (``map``, see ``gateway read modbus --help``) or the operator's own
    (``map_file``, the format in :mod:`gateway.modbus_maps`)."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["modbus"]
    bus: str
    unit: int = Field(ge=1, le=247, description="the meter's Modbus address (slave id), 1..247")
    map: str | None = Field(None, description="name of a register map shipped with the gateway")
    map_file: Path | None = Field(None, description="a register map of your own (TOML)")
    schedule: Schedule = Field(default_factory=Schedule)

    @field_validator("map")
    @classmethod
    def _shipped(cls, value: str | None) -> str | None:
        from gateway.modbus_maps import shipped_maps

        if value is not None and value not in shipped_maps():
            raise ValueError(f"no shipped register map is named {value!r} (maps: {', '.join(shipped_maps())}); "
                             "or give map_file")
        return value

    @model_validator(mode="after")
    def _one_map(self) -> ModbusMeter:
        if (self.map is None) == (self.map_file is None):
            raise ValueError("give exactly one of map (a shipped map) or map_file (your own)")
        return self


class DlmsPushMeter(Model):
    """A DLMS/COSEM device that pushes DataNotifications to a ``dlms-push`` listener,
    recognised by its system title. ``objects`` is its push object list (Blue Book 4.4.8,
    the push setup's push_object_list): one ``OBIS:CLASS:ATTR`` per element of the
    notification body, in order; a register's scaler_unit (attribute 3) in the list scales
    its value (attribute 2); a class 40 element (the push setup's own name) is skipped."""

    name: str = Field(pattern=NAME_PATTERN)
    protocol: Literal["dlms-push"]
    bus: str
    system_title: str = Field(description="the device's system title, 16 hex digits (it names its pushes)")
    ek_file: str = Field(description="its global unicast encryption key, 32 hex digits")
    ak_file: str = Field(description="its authentication key, 32 hex digits")
    security: Literal["authenticated+encrypted", "authenticated"] = Field(
        "authenticated+encrypted", description="the protection each push must carry")
    objects: list[str] = Field(min_length=1, description="the push object list, OBIS:CLASS:ATTR each")
    expected_interval_s: float = Field(gt=0, le=31 * 86400, description="how often the device pushes")
    not_heard_after: int = Field(3, ge=1, le=1000, description="comm.failed after this many intervals of silence")
    previous_ek_file: str | None = None
    previous_ak_file: str | None = None
    key_overlap_until: datetime | None = None
    key_generation: int = Field(0, ge=0, description="counts key changes; invocation counters are kept per generation")

    @field_validator("system_title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not _HEX_TITLE.fullmatch(value):
            raise ValueError("must be 16 hex digits (8 bytes)")
        return value.upper()

    @field_validator("objects")
    @classmethod
    def _object_list(cls, value: list[str]) -> list[str]:
        return [_obis_text(item) for item in value]


Meter = Annotated[Union[MBusMeter, DlmsMeter, WMBusMeter, ModbusMeter, DlmsPushMeter], Field(discriminator="protocol")]


class MetricsSection(Model):
    """An optional Prometheus text endpoint (``GET /metrics``), off unless ``listen`` is set."""

    listen: str | None = Field(None, description="HOST:PORT, e.g. 127.0.0.1:9108; loopback only unless allow_remote")
    allow_remote: bool = Field(False, description="permit a non-loopback listen address (the figures are not secret "
                                                  "but reveal the installation)")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return None if value is None else _host_port(value)

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> MetricsSection:
        if self.listen is not None and not self.allow_remote and not is_loopback(self.host):
            raise ValueError(f"{self.host} is not a loopback address; set allow_remote = true to listen there")
        return self

    @property
    def host(self) -> str:
        return (self.listen or "").rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int((self.listen or ":0").rpartition(":")[2])


class DevicesSection(Model):
    """The device lifecycle (`gateway devices`): discovery, commissioning, key changes."""

    discover: bool = Field(True, description="register devices heard on the air (and not configured) as "
                                             "discovered, with a device.discovered event")
    commission_wait_s: float = Field(240, gt=0, le=86400, description="commissioning waits this long for a wireless "
                                                                      "device's telegram (it cannot be asked); an HES "
                                                                      "command is answered within 300 s")
    key_overlap_s: float = Field(7 * 86400, ge=0, le=366 * 86400, description="after a key change the previous key "
                                                                                "is still accepted this long")
    clock_tolerance_s: float = Field(60, gt=0, description="a device clock further off than this is drift (a "
                                                           "device's declaration may say otherwise)")


#: Operation names a permission may grant (gateway/operations/named.py) and ``cancel``.
OPERATION_NAMES = ("get", "set", "action", "disconnect", "reconnect", "disconnect-state", "limiter", "calendar",
                   "clock-set", "message", "firmware", "cancel", "*")


class OperationPermission(Model):
    """What one HES identity may do on which meters (``[[operations.permissions]]``)."""

    identity: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
                          description="an MQTT identity (the topic level after cmd/op/, which the broker's ACL ties "
                                      "to the client's credentials) or a DLMS/COSEM server's client, SERVER:SAP "
                                      "(\"dlms:1\": the management client of the server named dlms)")
    operations: list[str] = Field(description="operation names (get, set, action, disconnect, reconnect, "
                                              "disconnect-state, limiter, calendar, clock-set, message, firmware), "
                                              "cancel (others' operations), or \"*\"; get/set/action also cover "
                                              "every named operation made of those requests")
    meters: list[str] = Field(default_factory=lambda: ["*"],
                              description="meter names or device ids, shell patterns allowed (\"hall-*\")")

    @field_validator("operations")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in OPERATION_NAMES]
        if unknown:
            raise ValueError(f"unknown operation {unknown[0]!r} (one of {', '.join(OPERATION_NAMES)})")
        return value


class OperationsSection(Model):
    """The operations relay: HES operations (GET/SET/ACTION, disconnect, tariffs, firmware)
    carried to DLMS meters, queued while a meter is unreachable."""

    retry_s: float = Field(60, gt=0, le=86400, description="how soon an unreachable meter is tried again")
    default_deadline_s: float = Field(86400, gt=0, description="deadline of an operation submitted without one")
    max_deadline_s: float = Field(30 * 86400, gt=0, description="the latest deadline an operation may ask for")
    dlms_wait_s: float = Field(20, gt=0, le=600, description="how long the DLMS/COSEM server waits for the meter's "
                                                             "answer to an HES's SET/ACTION passed through")
    dlms_queue: bool = Field(False, description="an HES's SET/ACTION for an unreachable meter stays queued (until "
                                                "default_deadline_s) after the server answered temporary-failure")
    max_image_bytes: int = Field(16 << 20, gt=0, le=1 << 30, description="largest firmware image the gateway takes")
    poll_s: float = Field(1.0, gt=0, le=60, description="image transfer: interval of status polls while a meter "
                                                        "verifies or activates")
    permissions: list[OperationPermission] = Field(default_factory=list)


class GatewayConfig(Model):
    """The whole configuration. A DLMS meter without ``system_title`` gets the client
    system title derived from the gateway id (:func:`derived_system_title`)."""

    gateway: GatewaySection
    signing: SigningSection = Field(default_factory=SigningSection)
    store: StoreSection = Field(default_factory=StoreSection)
    uplinks: Uplinks = Field(default_factory=Uplinks)
    buses: list[Bus] = Field(default_factory=list)
    meters: list[Meter] = Field(default_factory=list)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    devices: DevicesSection = Field(default_factory=DevicesSection)
    operations: OperationsSection = Field(default_factory=OperationsSection)

    @model_validator(mode="before")
    @classmethod
    def _dlms_system_titles(cls, data: Any) -> Any:
        gateway_id = data.get("gateway", {}).get("id") if isinstance(data, dict) and \
            isinstance(data.get("gateway"), dict) else None
        meters = data.get("meters") if isinstance(data, dict) else None
        if not isinstance(gateway_id, str) or not isinstance(meters, list):
            return data
        title = derived_system_title(gateway_id).hex().upper()
        filled = [{**m, "system_title": title} if isinstance(m, dict) and m.get("protocol") == "dlms"
                  and "system_title" not in m else m for m in meters]
        return {**data, "meters": filled}

    @property
    def state_dir(self) -> Path:
        return self.gateway.state_dir

    @property
    def store_path(self) -> Path:
        return self.store.path or self.state_dir / "store.sqlite"

    @property
    def signing_key_path(self) -> Path:
        return self.signing.key_file or self.state_dir / "keys" / "signing-key.pem"

    @property
    def allows_test_keys(self) -> bool:
        """Published test keys are allowed only on a demonstration gateway."""
        return self.gateway.demo or self.gateway.id.lower().startswith("demo")


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
        if isinstance(meter, DlmsMeter):
            problems += _dlms_key_problems(index, meter, config.allows_test_keys)
    for index, bus in enumerate(config.buses):
        failing = getattr(bus, "failing_after", None) or config.gateway.failing_after
        if failing > (getattr(bus, "unreachable_after", None) or config.gateway.unreachable_after):
            problems.append((("buses", index, "failing_after"), "failing_after must not exceed unreachable_after "
                             "(this bus's or [gateway]'s)"))
    problems += _wireless_problems(config)
    problems += _modbus_problems(config)
    return problems


def _dlms_key_problems(index: int, meter: DlmsMeter, allowed: bool) -> list[tuple[tuple[str | int, ...], str]]:
    """Test keys in a production configuration. A key file that cannot be read here (a
    systemd credential outside the service) is checked again when the collector loads it."""
    problems = []
    for name, reference in meter.key_files().items():
        try:
            problem = published_key_problem(read_key(reference), allowed)
        except ConfigError:
            continue
        if problem:
            problems.append((("meters", index, name), f"{reference} {problem}"))
    return problems


def _wireless_problems(config: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Wireless meters that one telegram could not tell apart, and key files that cannot
    be used (missing, readable by others, not 32 hex digits)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    wireless = [(index, meter) for index, meter in enumerate(config.meters) if isinstance(meter, WMBusMeter)]
    for position, (index, meter) in enumerate(wireless):
        for _, earlier in wireless[:position]:
            if earlier.bus == meter.bus and meter.could_be(earlier):
                problems.append((("meters", index, "id"), f"meter {earlier.name!r} on bus {meter.bus!r} has the same "
                                 "identification; set manufacturer, version or device_type to tell them apart"))
        if meter.key_file is not None and (problem := key_file_problem(meter.key_file)):
            problems.append((("meters", index, "key_file"), problem))
    return problems


def _modbus_problems(config: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Two Modbus meters at one unit address of a line, and register maps of the
    operator's that cannot be used (one problem per line of the map's own report)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    units: dict[tuple[str, int], str] = {}
    for index, meter in enumerate(config.meters):
        if not isinstance(meter, ModbusMeter):
            continue
        from gateway.modbus_maps import load_map_file  # here: a gateway without Modbus never loads pymodbus

        other = units.setdefault((meter.bus, meter.unit), meter.name)
        if other != meter.name:
            problems.append((("meters", index, "unit"),
                             f"meter {other!r} on bus {meter.bus!r} has unit {meter.unit} too"))
        if meter.map_file is not None:
            try:
                load_map_file(meter.map_file)
            except ConfigError as exc:
                problems += [(("meters", index, "map_file"), problem) for problem in exc.problems]
    return problems


def key_file_problem(reference: str) -> str | None:
    """Why a meter's AES key file cannot be used, or None. The key itself is never quoted.
    A systemd credential outside systemd (no ``$CREDENTIALS_DIRECTORY``) is not checked."""
    if reference.startswith("credential:") and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return None
    try:
        text = read_secret(reference)
    except ConfigError as exc:
        return "; ".join(exc.problems)
    if not re.fullmatch(rb"[0-9A-Fa-f]{32}", text.replace(b" ", b"")):
        return f"{resolve_secret_path(reference)}: an AES-128 key file holds 32 hex digits, this one does not"
    return None


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
        title = server_system_title(server, config.gateway.id).hex().upper()
        clients = [meter.name for meter in config.meters if isinstance(meter, DlmsMeter)
                   and (meter.system_title or "").upper() == title]
        if server.enabled and clients:
            problems.append((("uplinks", "dlms", index, "system_title"),
                             f"{title} is the client system title of meter {clients[0]!r} too; the server and the "
                             "gateway as a client need titles of their own (set a different system_title)"))
        if server.push is not None and server.push.security != "none" and server.ek_file is None:
            problems.append((("uplinks", "dlms", index, "push", "security"),
                             "ciphered pushes need the management keys (ek_file, ak_file)"))
        if not server.enabled or server.ek_file is None or server.ak_file is None:
            continue
        for name, reference in (("ek_file", server.ek_file), ("ak_file", server.ak_file)):
            if reference.startswith("credential:") and not os.environ.get("CREDENTIALS_DIRECTORY"):
                continue  # checked when the server loads it, inside the service
            try:
                problem = published_key_problem(read_key(reference), config.allows_test_keys)
                problem = problem and f"{reference} {problem}"
            except ConfigError as exc:
                problem = "; ".join(exc.problems)
            if problem:
                problems.append((("uplinks", "dlms", index, name), problem))
    return problems



def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML configuration file; every problem is reported at once."""
    return parse_config(read_text(path, "configuration"), path)


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 file's text; ConfigError ``path: cannot read WHAT: reason`` when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror}"]) from None


def parse_config(text: str, path: str | Path = "<config>") -> GatewayConfig:
    return validate_config(parse_toml(text, path), text, path)


def parse_toml(text: str, path: str | Path = "<config>") -> dict[str, Any]:
    """The TOML document as data; a syntax error names its line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise ConfigError([f"{path}:{line}: TOML syntax: {exc.msg if hasattr(exc, 'msg') else exc}"]) from None


def validate_config(data: dict[str, Any], text: str, path: str | Path = "<config>") -> GatewayConfig:
    """Validate configuration data read from ``text`` (whose lines the errors name)."""
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
    return f"{path}:{line}: {field}: {error_reason(error)}"


def error_reason(error: dict[str, Any]) -> str:
    """The reason of one pydantic error as an operator reads it."""
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch" and error["ctx"].get("pattern") == NAME_PATTERN:
        reason = "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    elif error["type"] == "extra_forbidden":
        reason = "unknown setting (check the spelling; see `gateway config schema`)"
    elif error["type"] == "missing":
        reason = "required setting is missing"
    elif error["type"] == "union_tag_invalid":
        reason = f"unknown protocol {error['input'].get('protocol')!r}" if isinstance(error.get("input"), dict) else reason
    return reason


# pydantic puts the discriminator value in the location of union members; it is no field.
_UNION_TAGS = {"mbus", "dlms", "wmbus", "modbus", "dlms-push"}


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
