"""``gateway run``, ``gateway check-config`` and ``gateway config schema``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys


def register(verbs) -> None:
    run = verbs.verb("run", run_command)
    run.add_argument("--config", required=True, metavar="FILE", help="the gateway's TOML configuration")
    run.add_argument("--refuse-placeholders", action="store_true",
                     help="exit 2 if the configuration still holds the example's placeholder values "
                          "(the packaged systemd unit passes this)")

    check = verbs.verb("check-config", check_config_command)
    check.add_argument("file", metavar="FILE", help="configuration to validate")
    check.epilog = "Exit 0 when valid; exit 2 with one line per problem, as FILE:LINE: FIELD: REASON."

    config = verbs.verb("config")
    sub = config.add_subparsers(title="actions", metavar="ACTION")
    schema = sub.add_parser("schema", help="print the JSON Schema of the configuration file")
    schema.set_defaults(handler=schema_command)


def check_config_command(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.placeholders import placeholder_problems

    config = load_config(args.file)
    for problem in placeholder_problems(config, args.file):
        print(f"warning: {problem} (the packaged service refuses to start with it)", file=sys.stderr)
    counts = [_count(len(config.buses), "bus", "buses"), _count(len(config.meters), "meter", "meters"),
              _count(len(config.uplinks.mqtt), "MQTT uplink", "MQTT uplinks")]
    print(f"{args.file}: ok ({', '.join(counts)})")
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def schema_command(_args: argparse.Namespace) -> int:
    from gateway.config import GatewayConfig

    json.dump(GatewayConfig.model_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.errors import ConfigError
    from gateway.logging_setup import configure_logging, enable_fault_tracebacks
    from gateway.placeholders import placeholder_problems

    configure_logging(args.verbose)
    enable_fault_tracebacks()
    config = load_config(args.config)
    if args.refuse_placeholders and (problems := placeholder_problems(config, args.config)):
        raise ConfigError(problems)
    return asyncio.run(run_until_signalled(Gateway(config)))


async def run_until_signalled(gateway) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly (exit 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await gateway.run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
