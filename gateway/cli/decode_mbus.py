"""``gateway decode mbus``: decode captured wired M-Bus frames (EN 13757-2/-3) to JSON.

``gateway decode mbus HEX`` prints one JSON object; ``gateway decode mbus -`` reads one
frame per line from stdin and prints one JSON object per line (JSON Lines), a malformed
frame giving ``{"rejected": "reason at offset N"}`` on its line.
"""

from __future__ import annotations

import argparse
import string
import sys

from gateway.cli.output import print_json

DESCRIPTION = """\
Decode wired M-Bus frames (EN 13757-2 link layer, EN 13757-3 application layer) to JSON.

  gateway decode mbus 68 1A 1A 68 08 02 72 ... 16    one frame, one JSON object
  gateway decode mbus - < capture.txt                one frame per line, JSON Lines out

The object has "link" (C and A fields), "header" (id, manufacturer, version, medium,
access_number, status, signature, ci) and "records" (function, storage, tariff, subunit,
quantity, value, unit, dif, vif ...). Values are strings: exact decimals, ISO 8601 dates
(meter local time), text, or hex of binary data in transmission order. An application
error (CI 0x70) gives {"error": {...}} and exit 0.

A malformed frame exits 2 with one line on stderr naming the reason and byte offset; with
"-" it gives {"rejected": "..."} on its line instead and the run goes on (exit 0).
"""

_HEX_DIGITS = set(string.hexdigits)


def register(verbs) -> None:
    parser = verbs.protocol(
        "decode",
        "mbus",
        _handle,
        help="decode a wired M-Bus frame (hex) to JSON",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "frame",
        nargs="+",
        metavar="HEX",
        help="the whole frame in hex, with or without spaces; '-' reads one frame per line from stdin",
    )


def parse_hex(text: str) -> bytes:
    """Bytes from hex text: whitespace-separated tokens of whole bytes, or one run of
    digits. Raises ``ValueError`` naming the offending token and its position."""
    position = 0
    out = bytearray()
    for token in text.split():
        position = text.index(token, position)
        if not set(token) <= _HEX_DIGITS:
            raise ValueError(f"not hexadecimal: {token!r} at character {position}")
        if len(token) % 2:
            raise ValueError(f"odd number of hex digits: {token!r} at character {position}")
        out += bytes.fromhex(token)
        position += len(token)
    if not out:
        raise ValueError("no hex digits")
    return bytes(out)


def decode_to_json(text: str) -> dict[str, object]:
    """The JSON object for one frame given as hex text (raises on malformed input)."""
    from gateway.codecs.mbus.application import decode_response, response_to_json

    decoded = decode_response(parse_hex(text))
    return response_to_json(decoded.response, decoded.frame)


def _handle(args: argparse.Namespace) -> int:
    from gateway.cli import UsageError
    from gateway.codecs.mbus.errors import MBusError

    if args.frame == ["-"]:
        return _lines(sys.stdin)
    try:
        print_json(decode_to_json(" ".join(args.frame)))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except MBusError:
        raise
    return 0


def _lines(stream) -> int:
    from gateway.codecs.mbus.errors import MBusError

    for line in stream:
        if not line.strip():
            continue
        try:
            obj = decode_to_json(line)
        except MBusError as exc:
            obj = {"rejected": exc.describe()}
        except ValueError as exc:
            obj = {"rejected": str(exc)}
        print_json(obj)
    return 0
