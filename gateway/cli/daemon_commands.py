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
    from pathlib import Path

    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.config_versions import ConfigVersions, effective_config
    from gateway.errors import ConfigError
    from gateway.logging_setup import configure_logging, enable_fault_tracebacks
    from gateway.placeholders import placeholder_problems

    configure_logging(args.verbose)
    enable_fault_tracebacks()
    operator_file = Path(args.config)
    operator = load_config(operator_file)
    if args.refuse_placeholders and (problems := placeholder_problems(operator, args.config)):
        raise ConfigError(problems)
    versions = ConfigVersions(operator.state_dir, operator.gateway.config_versions)
    operator_text = operator_file.read_text(encoding="utf-8")
    text, source = versions.startup_text(operator_text)
    registry = versions.registry_meters()
    try:
        config = effective_config(text, registry, operator_file if source == "operator file" else versions.directory)
    except ConfigError as exc:
        if source == "operator file":
            raise
        import logging

        logging.getLogger(__name__).error("the active configuration cannot be used (%s); starting from %s",
                                          "; ".join(exc.problems), operator_file)
        text, source = operator_text, "operator file"
        config = effective_config(text, registry, operator_file)
    gateway = Gateway(config, config_text=text, config_source=source, operator_file=operator_file)
    return asyncio.run(run_until_signalled(gateway))


async def run_until_signalled(gateway) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly (exit 0); SIGHUP reloads the
    configuration (when the gateway has an operator's file to read)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_by(signum: signal.Signals) -> None:
        gateway.stop_reason = f"signal {signum.name}"
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_by, signum)
    if hasattr(gateway, "request_reload"):
        loop.add_signal_handler(signal.SIGHUP, gateway.request_reload)
    try:
        await gateway.run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    return 0
