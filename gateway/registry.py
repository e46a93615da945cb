"""The meter registry: meters registered from the command line (one by one, from a scan or
from what the radio heard, or imported from CSV) rather than written in the configuration.

``STATE_DIR/config/registry.json``::

    {"format": 1,
     "meters": [{"id": "7b0c…",                 # a UUID, stable for the meter's life
                 "name": "water-12",
                 "state": "in service",        # the lifecycle state (only this one for now)
                 "created_at": "…", "updated_at": "…",
                 "source": "cli" | "import:FILE" | "heard",
                 "meter": {"protocol": "wmbus", "bus": "radio", "id": "12345678",
                           "key_file": "/var/lib/gateway/keys/meters/water-12.key", …},
                 "history": [{"at": "…", "action": "registered", "actor": "root"}, …]}]}

``meter`` is exactly a ``[[meters]]`` table of the configuration (validated by the same
model when merged, :func:`gateway.config_versions.effective_config`), so a registered meter
behaves like a configured one. The lifecycle of a later issue (discovered, installed,
commissioned, suspended, exchanged …) adds states and history actions to these entries:
only meters whose ``state`` is in :data:`ACTIVE_STATES` are merged into the configuration.

Meter keys are written to ``STATE_DIR/keys/meters/NAME.key`` (mode 0600 in a 0700
directory) and the entry refers to the file; a key is never printed, logged or stored in
the registry itself.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config_versions import CONFIG_DIR, REGISTRY, write_private
from gateway.errors import ConfigError
from gateway.model import utc_now

FORMAT = 1
IN_SERVICE = "in service"
#: Lifecycle states whose meters are read (merged into the running configuration).
ACTIVE_STATES = frozenset({IN_SERVICE})
KEY_PATTERN = re.compile(r"[0-9A-Fa-f]{32}")


def parse_key(text: str, what: str) -> str:
    """A meter's AES-128 key as 32 upper-case hex digits; the error never quotes the key."""
    key = re.sub(r"\s", "", text)
    if not KEY_PATTERN.fullmatch(key):
        raise ConfigError([f"{what}: an AES-128 key is 32 hex digits; this one is not (it is not shown)"])
    return key.upper()


@dataclass
class MeterRegistry:
    """The registry file of one state directory. Methods change the in-memory copy;
    :meth:`save` writes it (atomically)."""

    state_dir: Path

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.path = self.state_dir / CONFIG_DIR / REGISTRY
        self.key_dir = self.state_dir / "keys" / "meters"
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            document = {"format": FORMAT, "meters": []}
        except (OSError, ValueError) as exc:
            raise ConfigError([f"{self.path}: cannot read the meter registry: {exc}"]) from None
        self.entries: list[dict[str, Any]] = document.get("meters", [])
        self._pending_keys: dict[str, str] = {}

    def meter_tables(self) -> list[dict[str, Any]]:
        return [{"name": entry["name"], **entry["meter"]} for entry in self.entries if entry["state"] in ACTIVE_STATES]

    def find(self, name: str) -> dict[str, Any] | None:
        return next((entry for entry in self.entries if entry["name"] == name), None)

    def add(self, name: str, meter: dict[str, Any], *, source: str, actor: str, key: str | None = None) -> dict[str, Any]:
        """Register a meter (``meter``: its ``[[meters]]`` table without the name)."""
        if self.find(name) is not None:
            raise ConfigError([f"{self.path}: a meter named {name!r} is registered already"])
        now = utc_now().isoformat()
        entry = {"id": str(uuid.uuid4()), "name": name, "state": IN_SERVICE, "created_at": now, "updated_at": now,
                 "source": source, "meter": {k: v for k, v in meter.items() if v is not None and k != "name"},
                 "history": [{"at": now, "action": "registered", "actor": actor}]}
        self.entries.append(entry)
        if key is not None:
            self.set_key(name, key, actor=actor, action=None)
        return entry

    def remove(self, name: str, *, actor: str) -> dict[str, Any]:
        entry = self.find(name)
        if entry is None:
            raise ConfigError([f"{self.path}: no meter named {name!r} is registered (`gateway meters list`)"])
        self.entries.remove(entry)
        return entry

    def set_key(self, name: str, key: str, *, actor: str, action: str | None = "key replaced") -> Path:
        """Give the meter ``key`` (32 hex digits), written to its key file at :meth:`save`."""
        entry = self.find(name)
        if entry is None:
            raise ConfigError([f"{self.path}: no meter named {name!r} is registered (`gateway meters list`)"])
        path = self.key_dir / f"{name}.key"
        self._pending_keys[name] = parse_key(key, f"key of meter {name}")
        entry["meter"]["key_file"] = str(path)
        entry["updated_at"] = utc_now().isoformat()
        if action is not None:
            entry["history"].append({"at": entry["updated_at"], "action": action, "actor": actor})
        return path

    def save(self) -> None:
        """Write the key files, then the registry that refers to them."""
        for name, key in self._pending_keys.items():
            write_private(self.key_dir / f"{name}.key", (key + "\n").encode("ascii"), owner_of=self.state_dir)
        self._pending_keys.clear()
        document = {"format": FORMAT, "meters": self.entries}
        write_private(self.path, json.dumps(document, indent=1).encode("utf-8"), owner_of=self.state_dir)

    def remove_key_file(self, entry: dict[str, Any]) -> None:
        key_file = entry["meter"].get("key_file")
        if key_file and Path(key_file).parent == self.key_dir:
            Path(key_file).unlink(missing_ok=True)
