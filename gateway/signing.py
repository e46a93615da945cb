"""The gateway's signing key and the signed envelope of every message that leaves for the HES.

The envelope is a JWS (RFC 7515) in the flattened JSON serialization (§7.2.2)::

    {"protected": BASE64URL(header), "payload": BASE64URL(payload), "signature": BASE64URL(R || S)}

with the protected header ``{"alg": "ES256", "kid": KID}``: ECDSA on P-256 with SHA-256
over ``protected + "." + payload`` (RFC 7518 §3.4; the signature is R and S as 32-byte
big-endian integers, not DER). ``kid`` is the key's RFC 7638 JWK thumbprint, so an HES can
verify with any JOSE library and the public key alone, and keys can be rotated.

The private key lives in a PEM file (PKCS #8) readable only by the service: created with mode
0600 in a 0700 directory, and refused, as ssh does, when group or others can read it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from gateway.errors import ConfigError, SecurityError

ALGORITHM = "ES256"
COORDINATE_BYTES = 32  # P-256 (RFC 7518 §6.2.1.2: fixed length, leading zeros kept)
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")

PublicKey = ec.EllipticCurvePublicKey


class MalformedJWS(SecurityError):
    """A message that is no ES256 JWS in the flattened JSON serialization at all."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _base64url_length(size: int) -> int:
    return (4 * size + 2) // 3


def b64url_decode(text: str, what: str) -> bytes:
    if not isinstance(text, str) or not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise MalformedJWS(f"malformed JWS: {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedJWS(f"malformed JWS: {what} is not base64url") from None


def public_jwk(public_key: PublicKey) -> dict[str, str]:
    """The required members of an EC public JWK (RFC 7518 §6.2.1), in thumbprint order."""
    _require_p256(public_key)
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(COORDINATE_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(COORDINATE_BYTES, "big")),
    }


def thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexicographic
    order, no whitespace."""
    canonical = json.dumps(public_jwk(public_key), separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _require_p256(public_key: Any) -> None:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise SecurityError("the key is not an ECDSA P-256 key")


class SigningKey:
    """An ECDSA P-256 private key and what is derived from it."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        _require_p256(private_key.public_key())
        self._private_key = private_key
        self.public_key: PublicKey = private_key.public_key()
        self.kid = thumbprint(self.public_key)
        self._protected = b64url(json.dumps({"alg": ALGORITHM, "kid": self.kid}, separators=(",", ":")).encode())

    def __repr__(self) -> str:  # never the private key
        return f"SigningKey(kid={self.kid!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """Load a PEM private key, refusing a file that group or others can read."""
        path = Path(path)
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise ConfigError(
                    [f"{path}: signing key file is readable by other users (mode {mode:o}); run: chmod 600 {path}"]
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError([f"{path}: no signing key here; run: gateway keys generate"]) from None
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read the signing key: {exc.strerror}"]) from None
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError([f"{path}: not an unencrypted PEM private key ({exc})"]) from None
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(private_key.curve, ec.SECP256R1):
            raise ConfigError([f"{path}: the signing key must be an ECDSA P-256 key"])
        return cls(private_key)

    @classmethod
    def load_or_create(cls, path: str | Path) -> SigningKey:
        """Load the key at ``path``; create it first when the file is missing."""
        path = Path(path)
        if not path.exists():
            try:
                return cls.generate().save(path)
            except FileExistsError:  # created meanwhile by someone else: use theirs
                pass
        return cls.load(path)

    def save(self, path: str | Path, *, overwrite: bool = False) -> SigningKey:
        """Write the key as PEM with mode 0600 (its directory 0700 when created here),
        atomically; refuses to replace an existing file unless ``overwrite``."""
        path = Path(path)
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
            os.chmod(path.parent, 0o700)
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(temporary, path)
            else:
                os.link(temporary, path)  # fails if the file appeared meanwhile
        finally:
            temporary.unlink(missing_ok=True)
        return self

    def sign(self, payload: bytes) -> dict[str, str]:
        """The payload as a flattened JWS JSON object signed with ES256."""
        encoded = b64url(payload)
        der = self._private_key.sign(f"{self._protected}.{encoded}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")
        return {"protected": self._protected, "payload": encoded, "signature": b64url(signature)}

    def envelope_size(self, payload_size: int) -> int:
        """The length of the compact JSON of :meth:`sign` for a payload of ``payload_size``
        bytes, known before signing: base64url without padding turns n bytes into
        ceil(4n/3) characters; the signature is R || S."""
        encoded = len('{"protected":"","payload":"","signature":""}') + len(self._protected)
        return encoded + _base64url_length(payload_size) + _base64url_length(2 * COORDINATE_BYTES)

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK with its ``kid``, ``alg`` and ``use``."""
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")


def load_public_key(data: bytes | str) -> PublicKey:
    """A P-256 public key from a PEM (public or private key) or a JWK (JSON object)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if text.lstrip().startswith("{"):
        try:
            jwk = json.loads(text)
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                raise SecurityError("the JWK is not an EC P-256 key")
            x = int.from_bytes(b64url_decode(jwk["x"], "JWK x"), "big")
            y = int.from_bytes(b64url_decode(jwk["y"], "JWK y"), "big")
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except (ValueError, KeyError, AttributeError) as exc:
            raise SecurityError(f"not a usable JWK: {exc}") from None
    raw = text.encode("utf-8")
    try:
        key: Any = serialization.load_pem_public_key(raw)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(raw, password=None).public_key()
        except (ValueError, TypeError):
            raise SecurityError("not a PEM public key, PEM private key or JWK") from None
    _require_p256(key)
    return key


Keys = Union[Mapping[str, Union[PublicKey, SigningKey]], PublicKey, SigningKey]


def verify_jws(message: dict[str, Any] | bytes | str, keys: Keys) -> bytes:
    """Verify a flattened JWS signed with ES256 and return its payload.

    ``keys`` is one public key or a mapping of kid to public key. Raises
    :class:`SecurityError` for a malformed message, an algorithm other than ES256, an
    unknown kid, or a signature that does not verify.
    """
    jws = _parse_jws(message)
    header = _json_object(b64url_decode(jws["protected"], "protected header"), "protected header")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise SecurityError(f"unsupported alg {alg!r}: only {ALGORITHM} is accepted")
    if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not understand
        raise SecurityError(f"critical header parameters not understood: {header['crit']!r}")
    kid = header.get("kid")
    public_key = _key_for(kid, keys)
    signature = b64url_decode(jws["signature"], "signature")
    if len(signature) != 2 * COORDINATE_BYTES:
        raise MalformedJWS(f"malformed JWS: an ES256 signature has 64 bytes, this one {len(signature)}")
    payload = b64url_decode(jws["payload"], "payload")
    der = encode_dss_signature(
        int.from_bytes(signature[:COORDINATE_BYTES], "big"), int.from_bytes(signature[COORDINATE_BYTES:], "big")
    )
    try:
        public_key.verify(der, f"{jws['protected']}.{jws['payload']}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SecurityError("signature does not verify") from None
    return payload


def _parse_jws(message: dict[str, Any] | bytes | str) -> dict[str, Any]:
    if isinstance(message, (bytes, str)):
        try:
            message = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            raise MalformedJWS("malformed JWS: not JSON") from None
    if not isinstance(message, dict):
        raise MalformedJWS("malformed JWS: not a JSON object")
    for member in ("protected", "payload", "signature"):
        if not isinstance(message.get(member), str):
            raise MalformedJWS(f"malformed JWS: no {member!r} member (flattened JSON serialization expected)")
    return message


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedJWS(f"malformed JWS: {what} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedJWS(f"malformed JWS: {what} is not a JSON object")
    return value


def _key_for(kid: Any, keys: Keys) -> PublicKey:
    if isinstance(keys, SigningKey):
        keys = keys.public_key
    if isinstance(keys, ec.EllipticCurvePublicKey):
        _require_p256(keys)
        if kid is not None and kid != thumbprint(keys):
            raise SecurityError(f"unknown kid {kid!r} (the key given has kid {thumbprint(keys)!r})")
        return keys
    if kid is None:
        raise SecurityError("the message names no kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise SecurityError(f"unknown kid {kid!r}")
    if isinstance(key, SigningKey):
        key = key.public_key
    _require_p256(key)
    return key
