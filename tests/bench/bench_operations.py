"""Throughput of the operations relay against the simulated DLMS meter on loopback.

    python tests/bench/bench_operations.py [OPERATIONS] [IMAGE_KIB]

Queues OPERATIONS ``disconnect-state`` operations (three GETs each) at once and times them to
their last ``operation.result`` (each operation: queued, started and done are three durable
store transactions, plus one association with the meter), then one ``firmware`` transfer of
an IMAGE_KIB image in 64-byte blocks (one ACTION per block). Prints one JSON line: operations
per second, milliseconds per operation, image blocks per second, and fsync'd store writes per
operation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from gateway.operations import Outcome  # noqa: E402
from gateway.simulators.dlms import SimulatedDlmsMeter  # noqa: E402
from tests.operations.helpers import rig  # noqa: E402


async def main(operations: int, image_kib: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        image = os.urandom(image_kib * 1024)
        digest = hashlib.sha256(image).hexdigest()
        (tmp / "images").mkdir()
        (tmp / "images" / digest).write_bytes(image)
        async with rig(tmp, SimulatedDlmsMeter(), retry_s=60) as r:
            await r.outcome(await r.submit("disconnect-state"))  # identified, warm
            started = time.perf_counter()
            queued = [await r.submit("disconnect-state") for _ in range(operations)]
            done = [await r.outcome(o, 600) for o in queued]
            elapsed = time.perf_counter() - started
            assert all(d.outcome is Outcome.SUCCESS for d in done)
            started = time.perf_counter()
            transfer = await r.outcome(await r.submit("firmware", {"image": digest, "identifier": "B"}), 600)
            transfer_s = time.perf_counter() - started
            assert transfer.outcome is Outcome.SUCCESS
    blocks = transfer.progress["blocks"]
    return {"bench": "operations", "operations": operations, "ops_per_s": round(operations / elapsed, 1),
            "ms_per_op": round(1000 * elapsed / operations, 2), "image_kib": image_kib, "blocks": blocks,
            "blocks_per_s": round(blocks / transfer_s, 1), "durable_writes_per_op": 3}


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    kib = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    print(json.dumps(asyncio.run(main(count, kib))))
