"""``gateway keys generate|export|rotate``: the gateway's signing key (ECDSA P-256).

The private key never leaves its file: ``generate`` prints the key id, ``export`` the public
key (PEM or JWK) with its key id, ``export --all`` the retired public keys too (data signed
before a rotation stays verifiable), ``rotate`` replaces the key (through the running daemon,
whose uplinks sign with the new one from their next message) and records it in the audit log.
"""

from __future__ import annotations

import argparse
import json
import sys

from gateway.cli import Verbs
from gateway.cli.local_state import add_state_arguments, local_state


def register(verbs: Verbs) -> None:
    actions = verbs.verb("keys").add_subparsers(title="actions", metavar="ACTION")
    generate = actions.add_parser(
        "generate",
        help="create the signing key if it is missing and print its key id",
        description="Create the gateway's signing key (mode 0600 in a 0700 directory) if it is missing; print its key id.",
    )
    generate.add_argument("--force", action="store_true", help="replace an existing key with a new one")
    add_state_arguments(generate)
    generate.set_defaults(handler=generate_key)
    export = actions.add_parser(
        "export", help="print the public key with its key id", description="Print the public signing key with its key id."
    )
    export.add_argument("--format", choices=("pem", "jwk"), default="pem", help="PEM (default) or JSON Web Key")
    export.add_argument("--all", action="store_true", help="also the public keys retired by rotations (JWK: a JWK Set)")
    add_state_arguments(export)
    export.set_defaults(handler=export_key)
    rotate = actions.add_parser(
        "rotate", help="replace the signing key with a new one (the old public key stays exportable)",
        description="Replace the signing key; print the new key id. The running daemon signs with it from its next "
                    "message; the old public key is kept for `gateway keys export --all`.")
    add_state_arguments(rotate)
    rotate.set_defaults(handler=rotate_key)


def generate_key(args: argparse.Namespace) -> int:
    from gateway.signing import SigningKey

    path = local_state(args).key_path
    if args.force and path.exists():
        old = SigningKey.load(path)
        key = SigningKey.generate().save(path, overwrite=True)
        print(
            f"replaced the key {old.kid} in {path}; messages signed with it verify only with its public key",
            file=sys.stderr,
        )
    elif path.exists():
        key = SigningKey.load(path)
        print(f"the key in {path} exists already (use --force to replace it)", file=sys.stderr)
    else:
        key = SigningKey.load_or_create(path)
        print(f"created {path}", file=sys.stderr)
    print(key.kid)
    return 0


def export_key(args: argparse.Namespace) -> int:
    from gateway.keyring import retired_public_keys
    from gateway.signing import SigningKey, load_public_key, public_jwk

    path = local_state(args).key_path
    key = SigningKey.load(path)
    retired = retired_public_keys(path) if args.all else {}
    if args.format == "jwk":
        if args.all:
            jwks = [key.public_jwk(), *({**public_jwk(load_public_key(pem)), "kid": kid, "alg": "ES256", "use": "sig"}
                                        for kid, pem in retired.items())]
            print(json.dumps({"keys": jwks}, indent=2))
        else:
            print(json.dumps(key.public_jwk(), indent=2))
        return 0
    # RFC 7468 §5.2: text before the BEGIN line is allowed and ignored by parsers
    print(f"kid: {key.kid}")
    sys.stdout.write(key.public_pem())
    for kid, pem in retired.items():
        print(f"kid: {kid} (retired)")
        sys.stdout.write(pem)
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.audit import local_actor, record
    from gateway.control import DaemonNotRunning, request
    from gateway.keyring import rotate

    state = local_state(args)
    assert state.state_dir is not None
    try:
        answer = asyncio.run(request(state.state_dir, "keys.rotate", {"actor": local_actor()}))
    except DaemonNotRunning:
        old, new = rotate(state.key_path, state.state_dir)
        old_kid = old.kid if old is not None else ""

        async def audit() -> None:
            from gateway.store import Store

            state.store_path.parent.mkdir(parents=True, exist_ok=True)
            async with Store(state.store_path, state.store) as store:
                await record(store, "key_rotated", local_actor(), {"old_kid": old_kid, "new_kid": new.kid})

        asyncio.run(audit())
        result = {"old_kid": old_kid, "new_kid": new.kid}
    else:
        if not answer.get("ok"):
            from gateway.cli import CommandFailed

            raise CommandFailed(f"the daemon did not rotate the key: {answer.get('error')}")
        result = answer["result"]
    print(f"the key {result['old_kid']} is retired (its public key stays exportable)", file=sys.stderr)
    print(result["new_kid"])
    return 0
