"""Longer fuzz run of the DLMS APDU and A-XDR decoders over mutated vectors.

    python tests/bench/fuzz_dlms_apdu.py [COUNT] [SEED]

Prints one JSON line: how many inputs decoded, how many were refused (DLMSError), by error
class and field, and how many raised anything else (must be 0; their inputs are listed)."""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from gateway.codecs.dlms.apdu import decode_apdu  # noqa: E402
from gateway.codecs.dlms.axdr import decode_data  # noqa: E402
from gateway.codecs.dlms.errors import DLMSError  # noqa: E402
from tests.codecs.dlms.mutations import mutations  # noqa: E402


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 12345
    outcomes = collections.Counter()
    fields = collections.Counter()
    crashes = []
    started = time.process_time()
    for raw in mutations(count, seed):
        for name, decoder, data in (("apdu", decode_apdu, raw), ("axdr", decode_data, raw[1:])):
            try:
                decoder(data)
                outcomes[f"{name}_decoded"] += 1
            except DLMSError as exc:
                outcomes[f"{name}_refused"] += 1
                fields[f"{type(exc).__name__}:{exc.field}"] += 1
            except Exception as exc:  # noqa: BLE001 - the point is to find these
                outcomes[f"{name}_crashed"] += 1
                if len(crashes) < 20:
                    crashes.append({"decoder": name, "input": data.hex(), "error": repr(exc)})
    print(json.dumps({
        "bench": "fuzz_dlms_apdu",
        "inputs": count,
        "seed": seed,
        "cpu_s": round(time.process_time() - started, 2),
        **dict(sorted(outcomes.items())),
        "crashed": sum(v for k, v in outcomes.items() if k.endswith("crashed")),
        "top_refusals": dict(fields.most_common(8)),
        "crash_inputs": crashes,
    }))
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
