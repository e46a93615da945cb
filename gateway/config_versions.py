"""Where the running configuration lives, and the last applied versions.

``/etc/gateway/gateway.toml`` is the operator's file: read-only to the service (systemd's
``ProtectSystem=strict``), read at start and on SIGHUP. The configuration the daemon
*runs* lives in its state directory, because ``gateway config apply`` and the HES's
``config`` command change it without touching ``/etc``::

    STATE_DIR/config/active.toml        the running configuration's TOML text
    STATE_DIR/config/registry.json      meters registered with `gateway meters` (merged in)
    STATE_DIR/config/versions/          the last N applied texts, NNNNNN-HASH.toml
    STATE_DIR/config/index.json         {"active": {...}, "operator_hash", "versions": [...]}

At start the daemon runs ``active.toml`` unless the operator's file changed since it was
last adopted (its hash differs from ``operator_hash``): then the operator's file wins. The
*effective* configuration is the TOML text with the registry's meters added to its
``[[meters]]``; its hash (:func:`config_hash`, SHA-256 of the validated model's canonical
JSON, first 16 hex digits) names the version in events, status and the index.

Writes are atomic (temporary file, fsync, rename), files are 0600, and when a command run
as root writes here the files are given to the state directory's owner, so the service can
read them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_toml, validate_config
from gateway.errors import ConfigError
from gateway.model import utc_now

CONFIG_DIR = "config"
ACTIVE = "active.toml"
INDEX = "index.json"
REGISTRY = "registry.json"
VERSIONS = "versions"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_hash(config: GatewayConfig) -> str:
    """The version hash of an effective configuration (registry meters included)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def effective_config(text: str, registry_meters: list[dict[str, Any]], path: str | Path = "<config>") -> GatewayConfig:
    """The configuration ``text`` with the registry's meters added; a meter name in both is
    an error that names the registry."""
    data = parse_toml(text, path)
    own = {meter.get("name") for meter in data.get("meters", []) if isinstance(meter, dict)}
    clashes = sorted(str(m["name"]) for m in registry_meters if m.get("name") in own)
    if clashes:
        raise ConfigError([f"{path}: meters: {', '.join(clashes)} also registered with `gateway meters`; "
                           "a meter name must be unique across the file and the registry"])
    if registry_meters:
        data["meters"] = [*data.get("meters", []), *registry_meters]
    return validate_config(data, text, path)


def write_private(path: Path, data: bytes, *, owner_of: Path | None = None) -> None:
    """Replace ``path`` atomically and durably with mode 0600; owned like ``owner_of``
    (the state directory) when written by root."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if owner_of is not None and os.geteuid() == 0:
        owner = owner_of.stat()
        for target in (temporary, path.parent):
            os.chown(target, owner.st_uid, owner.st_gid)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    os.fsync(directory)  # the rename itself survives a power cut
    os.close(directory)


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    hash: str
    applied_at: str
    source: str
    file: str

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "hash": self.hash, "applied_at": self.applied_at, "source": self.source,
                "file": self.file}


class ConfigVersions:
    """The configuration part of a state directory (see the module docstring)."""

    def __init__(self, state_dir: Path, keep: int = 10) -> None:
        self.state_dir = Path(state_dir)
        self.directory = self.state_dir / CONFIG_DIR
        self.keep = keep

    # -- reading --

    def index(self) -> dict[str, Any]:
        try:
            return json.loads((self.directory / INDEX).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"active": None, "operator_hash": None, "versions": []}
        except (OSError, ValueError) as exc:
            raise ConfigError([f"{self.directory / INDEX}: cannot read the configuration index: {exc}"]) from None

    def active_text(self) -> str | None:
        try:
            return (self.directory / ACTIVE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def versions(self) -> list[Version]:
        return [Version(**entry) for entry in self.index().get("versions", [])]

    def registry_meters(self) -> list[dict[str, Any]]:
        """The meters of the registry in service, as ``[[meters]]`` tables."""
        from gateway.registry import MeterRegistry

        return MeterRegistry(self.state_dir).meter_tables()

    def startup_text(self, operator_text: str) -> tuple[str, str]:
        """The text to run at start, and why: the active one, unless the operator's file
        changed since it was last adopted."""
        index = self.index()
        active = self.active_text()
        if active is not None and index.get("operator_hash") == text_hash(operator_text):
            return active, "active"
        return operator_text, "operator file"

    # -- writing --

    def record(self, text: str, config: GatewayConfig, source: str, *, operator_text: str | None = None,
               now: datetime | None = None) -> Version:
        """Make ``text`` the active configuration and keep it as a new version (the oldest
        beyond ``keep`` are removed). ``operator_text``: the operator's file was adopted."""
        index = self.index()
        versions = index.get("versions", [])
        number = (versions[-1]["number"] + 1) if versions else 1
        digest = config_hash(config)
        name = f"{number:06d}-{digest}.toml"
        version = Version(number, digest, (now or utc_now()).isoformat(), source, name)
        write_private(self.directory / VERSIONS / name, text.encode("utf-8"), owner_of=self.state_dir)
        write_private(self.directory / ACTIVE, text.encode("utf-8"), owner_of=self.state_dir)
        versions = [*versions, version.as_dict()]
        for old in versions[:-self.keep]:
            (self.directory / VERSIONS / old["file"]).unlink(missing_ok=True)
        index["versions"] = versions[-self.keep:]
        index["active"] = version.as_dict()
        if operator_text is not None:
            index["operator_hash"] = text_hash(operator_text)
        write_private(self.directory / INDEX, json.dumps(index, indent=1).encode(), owner_of=self.state_dir)
        return version
