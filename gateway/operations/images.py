"""Firmware images the gateway holds for image transfers: ``STATE_DIR/images/<sha256>``.

An image gets there from a file the operator gives (``gateway op submit METER firmware
--image-file F`` copies it in) or from the HES over MQTT in chunks (``cmd/op-image/IDENTITY``,
:meth:`ImageStore.receive`): ``{"sha256", "size", "offset", "data"}`` (base64), each chunk
at the offset where the previous one ended (the answer says how much is held, so an
interrupted upload resumes there); the image is kept only once its SHA-256 matches. Images
are named by their hash, so an image transfer operation names exactly the bytes it sends.

Bounded: ``max_image_bytes`` per image, :data:`MAX_CHUNK` per chunk, :data:`MAX_FILES`
images and partial uploads in all (an upload beyond that is refused until one is removed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config_versions import write_private
from gateway.errors import GatewayError

MAX_CHUNK = 256 * 1024
MAX_FILES = 16
PARTIAL = ".part"
_HASH = re.compile(r"[0-9a-f]{64}")


class ImageError(GatewayError):
    """An image that cannot be taken or found."""


@dataclass(frozen=True, slots=True)
class Upload:
    """Where an upload stands: bytes held of ``size``; ``complete`` once verified."""

    sha256: str
    size: int
    received: int
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "received": self.received, "complete": self.complete}


class ImageStore:
    """Images by SHA-256 in ``directory`` (created 0700 on first use)."""

    def __init__(self, directory: Path, max_image_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_image_bytes = max_image_bytes

    def path(self, sha256: str) -> Path:
        return self.directory / _checked_hash(sha256)

    def read(self, sha256: str) -> bytes:
        """The image's bytes, checked against its name."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"no image {sha256} on the gateway (upload it first)") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ImageError(f"image {sha256} on the gateway is damaged: its content no longer matches its hash")
        return data

    def add_file(self, source: Path) -> str:
        """Copy ``source`` in; its SHA-256."""
        data = Path(source).read_bytes()
        if len(data) > self.max_image_bytes:
            raise ImageError(f"{source}: {len(data)} bytes, more than max_image_bytes ({self.max_image_bytes})")
        if not data:
            raise ImageError(f"{source}: an empty image")
        digest = hashlib.sha256(data).hexdigest()
        self._room_for(digest)
        self._keep(digest, data)
        return digest

    def receive(self, sha256: str, size: int, offset: int, chunk_base64: str) -> Upload:
        """Take one chunk of an upload (see the module docstring)."""
        sha256 = _checked_hash(sha256)
        if not 0 < size <= self.max_image_bytes:
            raise ImageError(f"size must be 1..{self.max_image_bytes} (max_image_bytes)")
        final = self.path(sha256)
        if final.exists():
            return Upload(sha256, size, size, True)
        try:
            chunk = base64.b64decode(chunk_base64, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ImageError("data is not base64") from None
        if len(chunk) > MAX_CHUNK:
            raise ImageError(f"a chunk is at most {MAX_CHUNK} bytes, this one has {len(chunk)}")
        partial = final.with_name(sha256 + PARTIAL)
        held = partial.stat().st_size if partial.exists() else 0
        if offset != held:
            raise ImageError(f"chunk at offset {offset}, but {held} bytes are held: send the chunk at offset {held}")
        if held + len(chunk) > size:
            raise ImageError(f"the chunk goes beyond the announced size {size}")
        if held == 0:
            self._room_for(sha256)
        with open(partial, "ab") as out:
            out.write(chunk)
        held += len(chunk)
        if held < size:
            return Upload(sha256, size, held, False)
        data = partial.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            partial.unlink()
            raise ImageError(f"the image received does not have the SHA-256 {sha256}; it was discarded")
        self._keep(sha256, data)
        partial.unlink()
        return Upload(sha256, size, size, True)

    def _keep(self, sha256: str, data: bytes) -> None:
        """Write the image atomically and durably (a reader never sees half of one), 0600
        and owned like the state directory when root writes it (``gateway op`` as root)."""
        write_private(self.path(sha256), data, owner_of=self.directory.parent)

    def _room_for(self, sha256: str) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        held = [p for p in self.directory.iterdir() if p.name.split(".")[0] != sha256]
        if len(held) >= MAX_FILES:
            raise ImageError(f"the gateway holds {len(held)} images and uploads already (at most {MAX_FILES}); "
                             f"remove some from {self.directory}")


def _checked_hash(sha256: Any) -> str:
    if not isinstance(sha256, str) or not _HASH.fullmatch(sha256.lower()):
        raise ImageError("an image is named by its SHA-256: 64 hex digits")
    return sha256.lower()

