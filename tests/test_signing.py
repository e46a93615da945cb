"""The signing key and its envelope, checked against an independent JOSE library (jwcrypto)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from gateway.errors import ConfigError, SecurityError
from gateway.signing import MalformedJWS, SigningKey, b64url, b64url_decode, load_public_key, verify_jws

KEY = SigningKey.generate()
PAYLOAD = b'{"gateway":"gw-1","first_seq":1,"last_seq":1,"records":[]}'


def jwcrypto_verify(message: dict, public: jwk.JWK) -> bytes:
    token = jws.JWS()
    token.deserialize(json.dumps(message))
    token.verify(public, alg="ES256")
    return token.payload


def test_jwcrypto_verifies_a_signed_message_with_the_exported_pem_alone():
    public = jwk.JWK.from_pem(KEY.public_pem().encode())
    assert jwcrypto_verify(KEY.sign(PAYLOAD), public) == PAYLOAD


def test_jwcrypto_verifies_with_the_exported_jwk_alone():
    public = jwk.JWK(**KEY.public_jwk())
    assert not public.has_private
    assert jwcrypto_verify(KEY.sign(PAYLOAD), public) == PAYLOAD


def test_the_kid_is_the_rfc_7638_thumbprint_and_travels_in_the_protected_header():
    public = jwk.JWK.from_pem(KEY.public_pem().encode())
    assert KEY.kid == public.thumbprint()
    header = json.loads(b64url_decode(KEY.sign(PAYLOAD)["protected"], "header"))
    assert header == {"alg": "ES256", "kid": KEY.kid}


def test_the_signature_is_r_and_s_as_64_raw_bytes():
    assert len(b64url_decode(KEY.sign(PAYLOAD)["signature"], "signature")) == 64


def flip_payload_byte(message: dict, index: int = 5) -> dict:
    payload = bytearray(b64url_decode(message["payload"], "payload"))
    payload[index] ^= 0x01
    return {**message, "payload": b64url(bytes(payload))}


def test_a_flipped_payload_byte_fails_here_and_in_jwcrypto():
    tampered = flip_payload_byte(KEY.sign(PAYLOAD))
    with pytest.raises(SecurityError, match="signature does not verify"):
        verify_jws(tampered, KEY.public_key)
    with pytest.raises(JWException):
        jwcrypto_verify(tampered, jwk.JWK.from_pem(KEY.public_pem().encode()))


def test_a_message_signed_by_jwcrypto_verifies_here():
    private = jwk.JWK.generate(kty="EC", crv="P-256")
    token = jws.JWS(PAYLOAD)
    token.add_signature(private, alg="ES256", protected={"alg": "ES256", "kid": private.thumbprint()})
    message = json.loads(token.serialize())
    public = load_public_key(private.export_to_pem())
    assert verify_jws(message, {private.thumbprint(): public}) == PAYLOAD


@settings(max_examples=30, deadline=None)
@given(payload=st.binary(max_size=2000))
def test_any_payload_signs_and_verifies_from_json_text(payload):
    assert verify_jws(json.dumps(KEY.sign(payload)), KEY.public_key) == payload


def test_keys_are_chosen_by_kid_and_an_unknown_kid_is_refused():
    other = SigningKey.generate()
    keys = {KEY.kid: KEY.public_key, other.kid: other.public_key}
    assert verify_jws(other.sign(PAYLOAD), keys) == PAYLOAD
    with pytest.raises(SecurityError, match="unknown kid"):
        verify_jws(other.sign(PAYLOAD), {KEY.kid: KEY.public_key})
    with pytest.raises(SecurityError, match="unknown kid"):
        verify_jws(other.sign(PAYLOAD), KEY.public_key)


def forged(header: dict, message: dict | None = None) -> dict:
    message = message or KEY.sign(PAYLOAD)
    return {**message, "protected": b64url(json.dumps(header).encode())}


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "none", "kid": KEY.kid}, "unsupported alg 'none'"),
        ({"alg": "HS256", "kid": KEY.kid}, "unsupported alg 'HS256'"),
        ({"alg": "ES256", "kid": KEY.kid, "crit": ["b64"], "b64": False}, "critical header"),
        ({"alg": "ES256", "kid": KEY.kid, "typ": "JOSE+JSON"}, "signature does not verify"),
    ],
)
def test_a_changed_protected_header_is_refused(header, reason):
    with pytest.raises(SecurityError, match=reason):
        verify_jws(forged(header), KEY.public_key)


@pytest.mark.parametrize(
    "message",
    [b"not json", b"[1]", b'{"payload": "e30"}', {"protected": "!!", "payload": "e30", "signature": "AA"},
     {**KEY.sign(PAYLOAD), "signature": b64url(bytes(63))}],
    ids=["text", "array", "members", "base64", "short-signature"],
)
def test_a_malformed_message_is_refused_as_malformed(message):
    with pytest.raises(MalformedJWS, match="malformed JWS"):
        verify_jws(message, KEY.public_key)


def test_a_created_key_file_is_private_in_a_private_directory(tmp_path):
    path = tmp_path / "state" / "keys" / "signing-key.pem"
    key = SigningKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert SigningKey.load_or_create(path).kid == key.kid  # loaded, not replaced
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert repr(key) == f"SigningKey(kid={key.kid!r})"  # never the private key


def test_a_key_file_others_can_read_is_refused_with_the_chmod_to_run(tmp_path):
    path = tmp_path / "signing-key.pem"
    KEY.save(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=rf"{path}: .*readable by other users.*run: chmod 600 {path}"):
        SigningKey.load(path)


def test_saving_never_replaces_a_key_unless_asked(tmp_path):
    path = tmp_path / "signing-key.pem"
    KEY.save(path)
    with pytest.raises(FileExistsError):
        SigningKey.generate().save(path)
    other = SigningKey.generate().save(path, overwrite=True)
    assert SigningKey.load(path).kid == other.kid != KEY.kid
    assert [p.name for p in tmp_path.iterdir()] == ["signing-key.pem"]


def test_a_missing_key_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="gateway keys generate"):
        SigningKey.load(tmp_path / "nothing.pem")


def test_a_key_of_another_curve_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "p384.pem"
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="P-256"):
        SigningKey.load(path)


def test_public_keys_load_from_pem_jwk_and_a_private_pem():
    for data in (KEY.public_pem(), json.dumps(KEY.public_jwk())):
        assert load_public_key(data).public_numbers() == KEY.public_key.public_numbers()
    with pytest.raises(SecurityError, match="not a PEM"):
        load_public_key(b"garbage")


@settings(max_examples=50)
@given(st.binary(max_size=3000))
def test_the_size_of_a_signed_message_is_known_before_signing(payload):
    assert KEY.envelope_size(len(payload)) == len(json.dumps(KEY.sign(payload), separators=(",", ":")))
