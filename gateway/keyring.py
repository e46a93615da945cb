"""Rotating the signing key, and the public keys of the retired ones.

The private key lives in ``signing-key.pem`` (:class:`gateway.signing.SigningKey`). A
rotation writes a new one in its place (atomically, 0600); the old private key is gone,
but its *public* key is kept in ``retired/KID.pem`` beside it, so data signed before the
rotation stays verifiable (``gateway keys export --all``).
"""

from __future__ import annotations

from pathlib import Path

from gateway.config_versions import write_private
from gateway.signing import SigningKey, load_public_key, thumbprint

RETIRED = "retired"


def retired_dir(key_path: Path) -> Path:
    return Path(key_path).parent / RETIRED


def rotate(key_path: Path, owner_of: Path | None = None) -> tuple[SigningKey | None, SigningKey]:
    """Replace the signing key at ``key_path`` by a new one; the old public key is kept.
    Returns (old key or None, new key)."""
    key_path = Path(key_path)
    old = SigningKey.load(key_path) if key_path.exists() else None
    if old is not None:
        write_private(retired_dir(key_path) / f"{old.kid}.pem", old.public_pem().encode("ascii"), owner_of=owner_of)
    new = SigningKey.generate().save(key_path, overwrite=True)
    return old, new


def retired_public_keys(key_path: Path) -> dict[str, str]:
    """kid → PEM of every retired public key, oldest file name first."""
    keys: dict[str, str] = {}
    directory = retired_dir(key_path)
    for path in sorted(directory.glob("*.pem")) if directory.exists() else ():
        pem = path.read_text(encoding="ascii")
        keys[thumbprint(load_public_key(pem))] = pem
    return keys
