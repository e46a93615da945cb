"""For commands that read the gateway's local state (store, signing key) rather than talk
to meters: ``--config FILE`` or ``--state-dir DIR``.

The configuration wins when both are given. From a state directory the store is
``STATE_DIR/store.sqlite`` and the key ``STATE_DIR/keys/signing-key.pem``, the same defaults
as :class:`~gateway.config.GatewayConfig`. The store is opened read-only, which works while
the daemon runs (WAL).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli import UsageError
from gateway.config import GatewayConfig, StoreSection, load_config

if TYPE_CHECKING:
    from gateway.store import Store


@dataclass(frozen=True, slots=True)
class LocalState:
    """Where one gateway keeps its state."""

    store_path: Path
    key_path: Path
    store: StoreSection
    config: GatewayConfig | None = None
    state_dir: Path | None = None


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the gateway keeps its state")
    where.add_argument("--config", metavar="FILE", type=Path, help="the gateway's configuration file (wins over --state-dir)")
    where.add_argument("--state-dir", metavar="DIR", type=Path, help="the gateway's state directory (e.g. /var/lib/gateway)")


def local_state(args: argparse.Namespace) -> LocalState:
    """The state named by ``--config`` or ``--state-dir``; a :class:`UsageError` (exit 2)
    when neither is given."""
    if args.config is not None:
        config = load_config(args.config)
        return LocalState(config.store_path, config.signing_key_path, config.store, config, config.state_dir)
    if args.state_dir is not None:
        reference = GatewayConfig.model_validate({"gateway": {"id": "local", "state_dir": args.state_dir}})
        return LocalState(reference.store_path, reference.signing_key_path, reference.store, None, reference.state_dir)
    raise UsageError("say where the gateway keeps its state: --config FILE or --state-dir DIR")


@asynccontextmanager
async def open_store(state: LocalState) -> AsyncIterator[Store]:
    """The store, read-only; a :class:`UsageError` (exit 2) when there is none."""
    from gateway.store import Store

    if not state.store_path.exists():
        raise UsageError(f"no store at {state.store_path}: the gateway has not run with this state yet, or the path is wrong")
    async with Store(state.store_path, state.store, read_only=True) as store:
        yield store


def default_demo_state_dir() -> Path:
    """Where ``gateway demo`` keeps its state unless told: ``$XDG_STATE_HOME/gateway/demo``."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gateway" / "demo"
