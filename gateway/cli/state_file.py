"""Durable small state for commands that run without the daemon's store: one JSON file.

``gateway read dlms`` keeps its DLMS invocation counters here, so a second run never
reuses a counter (the meter would refuse it as a replay, and GCM would reuse an IV).
Every change is written to a temporary file, fsynced and renamed over the old one, under
an exclusive lock, so two commands running at once take turns and a crash leaves either
the old or the new file. The file is created mode 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

from gateway.errors import StoreError


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/gateway``, or ``~/.local/state/gateway`` (XDG base directories)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gateway"


class JsonStateFile:
    """A :class:`~gateway.collectors.base.StateStore` in one JSON file of strings."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def get_state(self, key: str) -> str | None:
        return self._locked(lambda values: (values.get(key), None))

    async def set_state(self, key: str, value: str) -> None:
        self._locked(lambda values: (None, {**values, key: str(value)}))

    async def increment_state(self, key: str, by: int = 1) -> int:
        def change(values: dict[str, str]) -> tuple[int, dict[str, str]]:
            try:
                value = int(values.get(key, "0")) + by
            except ValueError:
                raise StoreError(f"{self.path}: {key!r} holds {values[key]!r}, not an integer") from None
            return value, {**values, key: str(value)}

        return self._locked(change)

    def _locked(self, change: Callable[[dict[str, str]], tuple[object, dict[str, str] | None]]):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                result, new = change(self._load())
                if new is not None:
                    self._write(new)
                return result
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot keep state: {exc.strerror}") from None

    def _load(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{self.path}: not a JSON state file ({exc}); move it away to start afresh") from None
        if not isinstance(values, dict):
            raise StoreError(f"{self.path}: not a JSON object of state values")
        return {str(k): str(v) for k, v in values.items()}

    def _write(self, values: dict[str, str]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(values, indent=1, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
