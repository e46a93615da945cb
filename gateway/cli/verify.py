"""``gateway verify [--key FILE] MESSAGE``: check a signed message saved from the uplink.

Exit 0 and the payload on stdout when the signature verifies; exit 1 with the reason when it
does not (bad signature, unknown kid, wrong algorithm); exit 2 for a message that is no JWS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli import CommandFailed, UsageError, Verbs
from gateway.cli.local_state import add_state_arguments, local_state


def register(verbs: Verbs) -> None:
    parser = verbs.verb("verify", verify)
    parser.add_argument("message", metavar="MESSAGE", help="a JWS (flattened JSON) in a file, or - for stdin")
    parser.add_argument(
        "--key", metavar="FILE", type=Path, help="public key as PEM or JWK (default: the gateway's own key, see --config/--state-dir)"
    )
    add_state_arguments(parser)


def verify(args: argparse.Namespace) -> int:
    from gateway.errors import SecurityError
    from gateway.signing import MalformedJWS, SigningKey, load_public_key, verify_jws

    message = _read_message(args.message)
    if args.key is not None:
        try:
            key = load_public_key(args.key.read_bytes())
        except OSError as exc:
            raise UsageError(f"{args.key}: cannot read the key: {exc.strerror}") from None
        except SecurityError as exc:
            raise UsageError(f"{args.key}: {exc}") from None
    else:
        key = SigningKey.load(local_state(args).key_path).public_key
    try:
        payload = verify_jws(message, key)
    except MalformedJWS as exc:
        raise UsageError(str(exc)) from None
    except SecurityError as exc:
        raise CommandFailed(str(exc)) from None
    sys.stdout.write(payload.decode("utf-8", "replace") + "\n")
    return 0


def _read_message(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"{name}: cannot read the message: {exc.strerror}") from None
