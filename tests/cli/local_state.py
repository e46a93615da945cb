"""A gateway state directory with a store and a key, as the CLI tests need it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import StoreSection
from gateway.model import Reading
from gateway.store import Store


def make_store(state_dir: Path, records: list[Reading]) -> Path:
    path = state_dir / "store.sqlite"

    async def write() -> None:
        async with Store(path, StoreSection()) as store:
            await store.append(records)

    asyncio.run(write())
    return path


def write_config(directory: Path, state_dir: Path) -> Path:
    config = directory / "gateway.toml"
    config.write_text(f'[gateway]\nid = "gw-test"\nstate_dir = "{state_dir}"\n')
    return config
