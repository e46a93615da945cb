"""``gateway decode wmbus``: decode captured wireless M-Bus telegrams (EN 13757-4/-7, OMS) to JSON.

``gateway decode wmbus HEX [--key HEX | --decrypted]`` prints one JSON object;
``gateway decode wmbus -`` reads lines ``HEX``, ``HEX KEYHEX`` or ``HEX decrypted`` from stdin
and prints JSON Lines, a refused telegram giving ``{"rejected": "reason"}`` on its line.
"""

from __future__ import annotations

import argparse
import sys

from gateway.cli.output import print_json

DESCRIPTION = """\
Decode wireless M-Bus telegrams (EN 13757-4 link layer, ELL, AFL, TPL and security of
EN 13757-7 / OMS Volume 2, EN 13757-3 data records) to JSON.

  gateway decode wmbus 2E449315785634123303...           one telegram, one JSON object
  gateway decode wmbus 2E4493... --key 0102...0F11        decrypt with the meter's AES key
  gateway decode wmbus 2E4493... --decrypted              payload already decrypted by a receiver
  gateway decode wmbus - < telegrams.txt                  lines "HEX", "HEX KEYHEX" or
                                                          "HEX decrypted"; JSON Lines out

The object is that of "gateway decode mbus" ("link", "header", "records" ...) with the
wireless layers added: "link" (c, function, manufacturer, id, version, device_type, ci,
frame_format), "ell", "afl", "tpl" where present (security mode, encrypted blocks, message
counter, MAC ...) and "security" (mode, whether it was decrypted, by the key here or by the
receiver, whether a MAC was verified). A compact frame (CI 0x79/0x7B/0x73) decodes after a
full frame of the same format was seen earlier in the same run.

Telegram bytes: --format a or b when they still carry their frame format A or B CRC blocks
(each CRC is checked), stripped when a receiver removed them (L counts the bytes after it);
the default, auto, detects A and B where that is unambiguous and takes stripped otherwise.
"|", "_" and "#" inside the hex are ignored (as wmbusmeters logs print them).

A telegram is refused, exit 2 with one line on stderr (with "-": {"rejected": "..."} on its
line, the run goes on), when it is malformed, when a key is given and it fails its MAC,
payload CRC or 2F2F check or is not encrypted at all, when it is encrypted and no key is
given, or when its security mode is not supported. Keys are never printed.
"""

FORMATS = ("auto", "a", "b", "stripped")
_SEPARATORS = str.maketrans("", "", "|_#")
DECRYPTED_WORD = "decrypted"


def register(verbs) -> None:
    parser = verbs.protocol(
        "decode",
        "wmbus",
        _handle,
        help="decode a wireless M-Bus telegram (hex) to JSON",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "telegram",
        nargs="+",
        metavar="HEX",
        help="the telegram in hex from its L-field on, with or without spaces; '-' reads lines from stdin",
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--key", metavar="HEX", help="the meter's AES-128 key (32 hex digits)")
    secret.add_argument("--key-file", metavar="PATH", help="read the AES-128 key (hex) from a file")
    secret.add_argument(
        "--decrypted",
        action="store_true",
        help="the payload was already decrypted by a receiver (the security header is still in place)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="how the bytes arrive: with format A or B CRC blocks, stripped, or auto (default: "
        "detect A/B where unambiguous, else stripped)",
    )


def _key(text: str):
    from gateway.cli import UsageError
    from gateway.codecs.mbus.wmbus_security import AesKey

    try:
        return AesKey.from_hex(text.strip())
    except ValueError as exc:
        raise UsageError(f"bad key: {exc}") from None


def _telegram_bytes(text: str) -> bytes:
    from gateway.cli.decode_mbus import parse_hex

    return parse_hex(text.translate(_SEPARATORS))


def _handle(args: argparse.Namespace) -> int:
    from gateway.cli import UsageError
    from gateway.codecs.mbus.wireless import WMBusDecoder

    decoder = WMBusDecoder()
    if args.telegram == ["-"]:
        return _lines(decoder, sys.stdin, args.format)
    key = None
    if args.key is not None:
        key = _key(args.key)
    elif args.key_file is not None:
        try:
            with open(args.key_file, encoding="ascii") as handle:
                key = _key(handle.read())
        except OSError as exc:
            raise UsageError(f"cannot read the key file: {exc.strerror}") from None
    try:
        data = _telegram_bytes(" ".join(args.telegram))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    decoded = decoder.decode(data, key=key, decrypted=args.decrypted, frame_format=args.format, keep_trailing=True)
    print_json(decoded.as_dict())
    return 0


def _line_options(line: str) -> tuple[str, dict[str, object]]:
    """Split ``HEX``, ``HEX KEYHEX`` or ``HEX decrypted`` into the hex and decode options."""
    tokens = line.split()
    if len(tokens) >= 2 and tokens[-1].lower() == DECRYPTED_WORD:
        return " ".join(tokens[:-1]), {"decrypted": True}
    if len(tokens) >= 2 and len(tokens[-1]) == 32:
        return " ".join(tokens[:-1]), {"key": _key(tokens[-1])}
    return line, {}


def _lines(decoder, stream, frame_format: str) -> int:
    from gateway.cli import UsageError
    from gateway.codecs.mbus.errors import MBusError

    for line in stream:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            text, options = _line_options(line)
            obj = decoder.decode(
                _telegram_bytes(text), frame_format=frame_format, keep_trailing=True, **options
            ).as_dict()
        except MBusError as exc:
            obj = {"rejected": exc.describe()}
        except UsageError as exc:
            obj = {"rejected": str(exc)}
        except ValueError as exc:
            obj = {"rejected": str(exc)}
        print_json(obj)
    return 0
