"""The meter registry: every device the gateway knows beyond its configuration file, over its
whole life — found on the air or by a bus scan, commissioned to a metering point, exchanged,
decommissioned — and the metering points they served.

``STATE_DIR/config/registry.json``::

    {"format": 2,
     "meters": [{"id": "7b0c…",                 # a UUID, stable for the device's life
                 "name": "water-12",
                 "state": "in service",        # the lifecycle state (STATES)
                 "created_at": "…", "updated_at": "…",
                 "source": "cli" | "import:FILE" | "heard" | "scan" | "hes",
                 "meter": {"protocol": "wmbus", "bus": "radio", "id": "12345678",
                           "key_file": "/var/lib/gateway/keys/meters/water-12.key", …},
                 "device": "GWY-12345678-01-07",  # the identity its readings carry, once known
                 "identity": {…},               # what discovery saw (manufacturer, id, version …)
                 "first_seen": "…",
                 "point": "MP-0042",            # the metering point it serves (or null)
                 "declaration": {…},            # what the operator declared (DECLARATION)
                 "reason": "…",                 # why it is in its state (a failed check …)
                 "calibration": null | {…},     # the calibration under way
                 "calibrations": [{…}],         # closed calibration records
                 "keys": {"generation": 1, …},  # key changes (never a key)
                 "history": [{"at": "…", "action": "registered", "actor": "root"}, …]}],
     "points": {"MP-0042": {"created_at": "…",
                            "devices": [{"entry": "7b0c…", "name": "water-12",
                                         "from": "…", "to": null,
                                         "first_reading": {…}, "final_reading": {…}}]}}}

``meter`` is exactly a ``[[meters]]`` table of the configuration (validated by the same
model when merged, :func:`gateway.config_versions.effective_config`), so a registered device
behaves like a configured one. Only entries whose ``state`` is in :data:`ACTIVE_STATES` are
merged into the running configuration (read by their bus).

The lifecycle (:data:`TRANSITIONS`; :mod:`gateway.lifecycle` carries it out)::

    discovered ─▶ installed ─▶ commissioned ─▶ in service ◀─▶ suspended
                    ▲  │ (a failed check:                 ◀─▶ faulty
                    └──┘  installed, with the reason)
    any state but the two ends ─▶ exchanged | decommissioned

A format 1 file (entries without the lifecycle fields) is read as it is: its entries are
in service and serve no metering point.

Meter keys are written to ``STATE_DIR/keys/meters/NAME.key`` (DLMS: ``NAME.ek``,
``NAME.ak``, ``NAME.kek``; a replaced key as ``NAME.prev.key`` … during the overlap) with
mode 0600 in a 0700 directory, and the entry refers to the files; a key is never printed,
logged or stored in the registry itself.

Writers take :meth:`MeterRegistry.locked` (an exclusive lock on ``registry.lock``, then a
fresh read): the daemon (discovery, commissioning) and ``gateway meters`` may write at
the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config_versions import CONFIG_DIR, REGISTRY, write_private
from gateway.errors import ConfigError
from gateway.model import utc_now

FORMAT = 2
DISCOVERED = "discovered"
INSTALLED = "installed"
COMMISSIONED = "commissioned"
IN_SERVICE = "in service"
SUSPENDED = "suspended"
FAULTY = "faulty"
EXCHANGED = "exchanged"
DECOMMISSIONED = "decommissioned"
#: The lifecycle states, in the order of a device's life.
STATES = (DISCOVERED, INSTALLED, COMMISSIONED, IN_SERVICE, SUSPENDED, FAULTY, EXCHANGED, DECOMMISSIONED)
#: Lifecycle states whose meters are read (merged into the running configuration). A faulty
#: device is still read, so that its recovery is seen.
ACTIVE_STATES = frozenset({COMMISSIONED, IN_SERVICE, FAULTY})
#: The states that end a device's life (its entry stays, for the audit trail).
FINAL_STATES = frozenset({EXCHANGED, DECOMMISSIONED})
#: Allowed transitions: from state → the states it may go to. A check that fails during
#: commissioning leaves a device installed (installed → installed, with the reason).
TRANSITIONS: dict[str, frozenset[str]] = {
    DISCOVERED: frozenset({INSTALLED, DECOMMISSIONED}),
    INSTALLED: frozenset({INSTALLED, COMMISSIONED, EXCHANGED, DECOMMISSIONED}),
    COMMISSIONED: frozenset({IN_SERVICE, INSTALLED, EXCHANGED, DECOMMISSIONED}),
    IN_SERVICE: frozenset({SUSPENDED, FAULTY, EXCHANGED, DECOMMISSIONED}),
    SUSPENDED: frozenset({IN_SERVICE, EXCHANGED, DECOMMISSIONED}),
    FAULTY: frozenset({IN_SERVICE, SUSPENDED, EXCHANGED, DECOMMISSIONED}),
    EXCHANGED: frozenset(),
    DECOMMISSIONED: frozenset(),
}
#: Discovered devices kept at most (a gateway in a dense street hears its neighbours'
#: meters): beyond it the oldest discovered entry is forgotten.
MAX_DISCOVERED = 1000
KEY_PATTERN = re.compile(r"[0-9A-Fa-f]{32}")
LOCK = "registry.lock"
#: The [[meters]] table fields that name key (or password) files.
KEY_FILES = ("key_file", "previous_key_file", "ek_file", "ak_file", "kek_file", "previous_ek_file", "previous_ak_file",
             "password_file")


def parse_key(text: str, what: str) -> str:
    """A meter's AES-128 key as 32 upper-case hex digits; the error never quotes the key."""
    key = re.sub(r"\s", "", text)
    if not KEY_PATTERN.fullmatch(key):
        raise ConfigError([f"{what}: an AES-128 key is 32 hex digits; this one is not (it is not shown)"])
    return key.upper()


def device_name(identity: str) -> str:
    """A registry name for a discovered device: its identity with what a name may not
    hold replaced (``@@@-12345678-00-0f`` → ``x-12345678-00-0f``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "x", identity).lstrip("._-") or "device"
    return name[:64]


class TransitionRefused(ConfigError):
    """A lifecycle operation that the device's state does not allow."""


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
        self.points: dict[str, dict[str, Any]] = document.get("points", {})
        self._pending_keys: dict[Path, str] = {}
        self._removed_keys: set[Path] = set()

    @classmethod
    @contextlib.contextmanager
    def locked(cls, state_dir: Path) -> Iterator[MeterRegistry]:
        """The registry read under an exclusive lock, held for the block (read, change,
        :meth:`save`): two writers never lose each other's changes."""
        directory = Path(state_dir) / CONFIG_DIR
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield cls(state_dir)
        finally:
            os.close(fd)  # closing releases the lock

    # -- reading --

    def meter_tables(self) -> list[dict[str, Any]]:
        return [{"name": entry["name"], **entry["meter"]} for entry in self.entries if entry["state"] in ACTIVE_STATES]

    def find(self, name: str) -> dict[str, Any] | None:
        return next((entry for entry in self.entries if entry["name"] == name), None)

    def get(self, name: str) -> dict[str, Any]:
        """The entry named ``name``, or the entry of the device ``name`` (its identity)."""
        entry = self.find(name) or self.live_entry_of(name)
        if entry is None:
            raise ConfigError([f"{self.path}: no device named {name!r} is registered (`gateway devices list`)"])
        return entry

    def live_entry_of(self, device: str) -> dict[str, Any] | None:
        """The entry whose device identity is ``device`` and whose life has not ended."""
        return next((entry for entry in self.entries
                     if entry.get("device") == device and entry["state"] not in FINAL_STATES), None)

    def serving(self, point: str) -> dict[str, Any] | None:
        """The entry that serves metering point ``point`` now."""
        return next((entry for entry in self.entries
                     if entry.get("point") == point and entry["state"] not in FINAL_STATES | {DISCOVERED}), None)

    # -- changing --

    def add(self, name: str, meter: dict[str, Any], *, source: str, actor: str, key: str | None = None,
            state: str = IN_SERVICE, **fields: Any) -> dict[str, Any]:
        """Register a device (``meter``: its ``[[meters]]`` table without the name) in
        ``state``; ``fields`` are more lifecycle fields (device, identity, first_seen …)."""
        if self.find(name) is not None:
            raise ConfigError([f"{self.path}: a meter named {name!r} is registered already"])
        now = utc_now().isoformat()
        action = DISCOVERED if state == DISCOVERED else "registered"
        entry = {"id": str(uuid.uuid4()), "name": name, "state": state, "created_at": now, "updated_at": now,
                 "source": source, "meter": {k: v for k, v in meter.items() if v is not None and k != "name"},
                 **fields, "history": [{"at": now, "action": action, "actor": actor}]}
        self.entries.append(entry)
        if key is not None:
            self.set_key(name, key, actor=actor, action=None)
        if state == DISCOVERED:
            self._forget_oldest_discovered()
        return entry

    def remove(self, name: str, *, actor: str) -> dict[str, Any]:
        entry = self.find(name)
        if entry is None:
            raise ConfigError([f"{self.path}: no meter named {name!r} is registered (`gateway meters list`)"])
        self.entries.remove(entry)
        return entry

    def transition(self, entry: dict[str, Any], state: str, *, actor: str, reason: str | None = None,
                   action: str | None = None) -> str:
        """Move ``entry`` to ``state`` (:data:`TRANSITIONS`); the previous state. Raises
        :class:`TransitionRefused` for a move its state does not allow."""
        previous = entry["state"]
        if state not in TRANSITIONS.get(previous, frozenset()):
            allowed = ", ".join(sorted(TRANSITIONS.get(previous, ()))) or "nothing: its life has ended"
            raise TransitionRefused([f"device {entry['name']} is {previous}: it cannot become {state} "
                                     f"(from {previous}: {allowed})"])
        now = utc_now().isoformat()
        entry["state"] = state
        entry["reason"] = reason
        entry["updated_at"] = now
        entry["history"].append({"at": now, "action": action or state, "actor": actor,
                                 **({"reason": reason} if reason else {})})
        return previous

    def note(self, entry: dict[str, Any], action: str, *, actor: str, **details: Any) -> None:
        """Add a history line that changes no state (a key change, a calibration …)."""
        entry["updated_at"] = utc_now().isoformat()
        entry["history"].append({"at": entry["updated_at"], "action": action, "actor": actor, **details})

    def set_key(self, name: str, key: str, *, actor: str, action: str | None = "key replaced",
                field: str = "key_file", suffix: str = "key") -> Path:
        """Give the meter ``key`` (32 hex digits) in its table's ``field``, written to
        ``NAME.SUFFIX`` at :meth:`save`."""
        entry = self.find(name)
        if entry is None:
            raise ConfigError([f"{self.path}: no meter named {name!r} is registered (`gateway meters list`)"])
        path = self.key_dir / f"{name}.{suffix}"
        self._pending_keys[path] = parse_key(key, f"key of meter {name}")
        self._removed_keys.discard(path)
        entry["meter"][field] = str(path)
        entry["updated_at"] = utc_now().isoformat()
        if action is not None:
            entry["history"].append({"at": entry["updated_at"], "action": action, "actor": actor})
        return path

    def move_key(self, entry: dict[str, Any], field: str, to_field: str, suffix: str) -> None:
        """Keep the key of ``field`` as ``to_field`` (``NAME.SUFFIX``): the previous key
        during a key change's overlap."""
        current = entry["meter"].get(field)
        if current is None:
            return
        target = self.key_dir / f"{entry['name']}.{suffix}"
        pending = self._pending_keys.pop(Path(current), None)
        if pending is None:
            try:
                pending = parse_key(Path(current).read_text(encoding="ascii", errors="replace"), str(current))
            except OSError as exc:
                raise ConfigError([f"{current}: cannot read the key to keep it: {exc.strerror}"]) from None
        self._pending_keys[target] = pending
        entry["meter"][to_field] = str(target)

    def drop_key(self, entry: dict[str, Any], field: str) -> None:
        """Forget a key of the entry; its file (if the registry wrote it) goes at :meth:`save`."""
        path = entry["meter"].pop(field, None)
        if path is not None and Path(path).parent == self.key_dir:
            self._pending_keys.pop(Path(path), None)
            self._removed_keys.add(Path(path))

    def point(self, point: str) -> dict[str, Any]:
        """The metering point's record, made when first used."""
        return self.points.setdefault(point, {"created_at": utc_now().isoformat(), "devices": []})

    def save(self) -> None:
        """Write the key files, then the registry that refers to them, then remove the key
        files it no longer refers to."""
        for path, key in self._pending_keys.items():
            write_private(path, (key + "\n").encode("ascii"), owner_of=self.state_dir)
        self._pending_keys.clear()
        document = {"format": FORMAT, "meters": self.entries, "points": self.points}
        write_private(self.path, json.dumps(document, indent=1).encode("utf-8"), owner_of=self.state_dir)
        for path in self._removed_keys:
            path.unlink(missing_ok=True)
        self._removed_keys.clear()

    def remove_key_file(self, entry: dict[str, Any]) -> None:
        for field in KEY_FILES:
            key_file = entry["meter"].get(field)
            if key_file and Path(key_file).parent == self.key_dir:
                Path(key_file).unlink(missing_ok=True)

    def _forget_oldest_discovered(self) -> None:
        discovered = [entry for entry in self.entries if entry["state"] == DISCOVERED]
        for entry in discovered[:max(0, len(discovered) - MAX_DISCOVERED)]:
            self.entries.remove(entry)
