"""What an HES does with the gateway's MQTT messages, written with an independent JOSE
library (jwcrypto) and the public key alone: verify, unpack, deduplicate by seq."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk, jws

DATA_TOPICS = ("readings", "events")


def public_key_of(private_key_file: Path) -> jwk.JWK:
    """The public half of the gateway's key, as an HES would be given it (PEM)."""
    private = serialization.load_pem_private_key(Path(private_key_file).read_bytes(), password=None)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    return jwk.JWK.from_pem(public_pem)


def verified_batch(payload: bytes, key: jwk.JWK) -> dict[str, Any]:
    """The batch inside one data message; raises if the ES256 signature does not verify."""
    token = jws.JWS()
    token.deserialize(payload.decode())
    token.verify(key, alg="ES256")
    return json.loads(token.payload)


def received_records(messages: Iterable[Any], private_key_file: Path) -> dict[int, dict[str, Any]]:
    """Every record received on the data topics, verified, by seq. A seq received twice
    must carry the same record (at-least-once delivery: duplicates are identical)."""
    key = public_key_of(private_key_file)
    records: dict[int, dict[str, Any]] = {}
    for message in messages:
        if str(message.topic).rsplit("/", 1)[-1] not in DATA_TOPICS:
            continue
        for record in verified_batch(message.payload, key)["records"]:
            previous = records.setdefault(record["seq"], record)
            assert previous == record, f"seq {record['seq']} arrived twice with different content"
    return records
