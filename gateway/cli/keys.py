"""``gateway keys generate|export``: the gateway's signing key (ECDSA P-256).

The private key never leaves its file: ``generate`` prints the key id, ``export`` the public
key (PEM or JWK) with its key id.
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
    add_state_arguments(export)
    export.set_defaults(handler=export_key)


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
    from gateway.signing import SigningKey

    key = SigningKey.load(local_state(args).key_path)
    if args.format == "jwk":
        print(json.dumps(key.public_jwk(), indent=2))
    else:
        # RFC 7468 §5.2: text before the BEGIN line is allowed and ignored by parsers
        print(f"kid: {key.kid}")
        sys.stdout.write(key.public_pem())
    return 0
