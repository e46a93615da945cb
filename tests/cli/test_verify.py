"""``gateway verify``: exit 0 with the payload, 1 with the reason, 2 for no JWS at all."""

from __future__ import annotations

import io
import json

import pytest
from jwcrypto import jwk, jws

from gateway.cli import main
from gateway.signing import SigningKey, b64url, b64url_decode

PAYLOAD = b'{"gateway":"gw-1","first_seq":1,"last_seq":2,"records":[]}'


@pytest.fixture
def key(tmp_path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "keys" / "signing-key.pem")


def save(tmp_path, message) -> str:
    path = tmp_path / "message.json"
    path.write_text(json.dumps(message))
    return str(path)


def test_a_message_signed_by_the_gateways_own_key_verifies(tmp_path, key, capsys):
    assert main(["verify", "--state-dir", str(tmp_path), save(tmp_path, key.sign(PAYLOAD))]) == 0
    assert capsys.readouterr().out == PAYLOAD.decode() + "\n"


@pytest.mark.parametrize("form", ["pem", "jwk"])
def test_a_message_verifies_with_a_public_key_file(tmp_path, key, capsys, form):
    public = tmp_path / f"public.{form}"
    public.write_text(key.public_pem() if form == "pem" else json.dumps(key.public_jwk()))
    assert main(["verify", "--key", str(public), save(tmp_path, key.sign(PAYLOAD))]) == 0
    assert json.loads(capsys.readouterr().out)["last_seq"] == 2


def test_a_message_is_read_from_stdin(tmp_path, key, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(key.sign(PAYLOAD)).encode())))
    assert main(["verify", "--state-dir", str(tmp_path), "-"]) == 0


def test_a_tampered_message_fails_with_exit_1_and_the_reason(tmp_path, key, capsys):
    message = key.sign(PAYLOAD)
    payload = bytearray(b64url_decode(message["payload"], "payload"))
    payload[-3] ^= 0x20
    message["payload"] = b64url(bytes(payload))
    assert main(["verify", "--state-dir", str(tmp_path), save(tmp_path, message)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "signature does not verify" in captured.err


def test_a_message_of_another_key_fails_with_unknown_kid(tmp_path, key, capsys):
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    token = jws.JWS(PAYLOAD)
    token.add_signature(other, alg="ES256", protected={"alg": "ES256", "kid": other.thumbprint()})
    assert main(["verify", "--state-dir", str(tmp_path), save(tmp_path, json.loads(token.serialize()))]) == 1
    assert f"unknown kid '{other.thumbprint()}'" in capsys.readouterr().err


def test_a_file_that_is_no_jws_is_bad_input(tmp_path, key, capsys):
    path = tmp_path / "message.json"
    path.write_text("hello")
    assert main(["verify", "--state-dir", str(tmp_path), str(path)]) == 2
    assert "malformed JWS" in capsys.readouterr().err


def test_a_missing_message_file_is_bad_input(tmp_path, key, capsys):
    assert main(["verify", "--state-dir", str(tmp_path), str(tmp_path / "none.json")]) == 2
    assert "cannot read the message" in capsys.readouterr().err
