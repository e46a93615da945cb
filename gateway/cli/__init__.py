"""The ``gateway`` command: ``gateway VERB [PROTOCOL] ...``.

Each verb's (or protocol's) commands live in their own module here and register their
parsers through :func:`register`; handlers import heavy modules only when they run, so
``gateway --help`` stays fast. Results go to stdout, progress and logs to stderr.
Exit 0 on success, 1 when the operation failed (a meter did not answer), 2 for bad
usage, bad input or bad configuration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gateway import __version__
from gateway.errors import (
    ConfigError,
    GatewayError,
    ProtocolError,
)

#: Modules that add commands. Each has ``register(verbs: Verbs) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.daemon_commands",
    "gateway.cli.decode_mbus",
    "gateway.cli.decode_wmbus",
    "gateway.cli.keys",
    "gateway.cli.verify",
    "gateway.cli.readings",
    "gateway.cli.status",
    "gateway.cli.mbus_bus",
    "gateway.cli.dlms_read",
    "gateway.cli.modbus_read",
    "gateway.cli.wmbus_listen",
    "gateway.cli.demo",
    "gateway.cli.operations",
    "gateway.cli.devices",
    "gateway.cli.op",
)

VERB_HELP = {
    "run": "run the gateway daemon from a configuration file",
    "demo": "run the whole pipeline against simulated meters (no hardware needed)",
    "check-config": "validate a configuration file and print every problem",
    "config": "configuration schema and transactional changes",
    "decode": "decode a captured frame or telegram to JSON",
    "scan": "find the meters on a bus",
    "read": "read one meter now and print its values",
    "listen": "show what is heard on a radio dongle",
    "readings": "print stored readings",
    "status": "show the gateway's health",
    "keys": "create and export the gateway's signing key",
    "verify": "verify a signed message saved from the uplink",
    "devices": "device registry and lifecycle",
    "op": "operations on meters (GET/SET/ACTION)",
}


class CommandFailed(GatewayError):
    """An operation that ran but did not succeed (exit 1), e.g. a meter did not answer."""


class UsageError(GatewayError):
    """Bad usage or bad input (exit 2)."""


Handler = Callable[[argparse.Namespace], int | None]


class Verbs:
    """The verb parsers, created on first use, so modules can add protocols to a verb."""

    def __init__(self, root: argparse._SubParsersAction) -> None:
        self._root = root
        self._verbs: dict[str, argparse.ArgumentParser] = {}
        self._protocols: dict[str, argparse._SubParsersAction] = {}

    def verb(self, name: str, handler: Handler | None = None, **kwargs) -> argparse.ArgumentParser:
        """The parser of ``gateway NAME``; ``handler`` runs when it is chosen."""
        if name not in self._verbs:
            kwargs.setdefault("help", VERB_HELP.get(name))
            kwargs.setdefault("description", VERB_HELP.get(name))
            parser = self._root.add_parser(name, **kwargs)
            parser.set_defaults(handler=handler or _missing_subcommand(parser))
            self._verbs[name] = parser
        return self._verbs[name]

    def protocol(self, verb: str, protocol: str, handler: Handler, **kwargs) -> argparse.ArgumentParser:
        """The parser of ``gateway VERB PROTOCOL``."""
        if verb not in self._protocols:
            parent = self.verb(verb)
            self._protocols[verb] = parent.add_subparsers(title="protocols", metavar="PROTOCOL")
        parser = self._protocols[verb].add_parser(protocol, **kwargs)
        parser.set_defaults(handler=handler)
        return parser


def _missing_subcommand(parser: argparse.ArgumentParser) -> Handler:
    def handler(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Data concentrator for smart metering (M-Bus, wireless M-Bus, DLMS/COSEM).",
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    root = parser.add_subparsers(title="commands", metavar="VERB")
    verbs = Verbs(root)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        return 130
    except CommandFailed as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except (UsageError, ProtocolError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _configure_logging(verbosity: int) -> None:
    import logging

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
