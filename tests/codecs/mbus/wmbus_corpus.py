"""The wireless M-Bus test data: the wmbusmeters telegram corpus and the OMS Annex N examples.

Both are data files in ``tests/data`` (see its README for their origin and licences); this
module only reads them and sorts the telegrams by what the corpus says about their security.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).parents[2] / "data"
CORPUS = DATA / "wmbus-wmbusmeters" / "telegrams.jsonl"
OMS = DATA / "wmbus-oms" / "annex_n.json"

# The "crypto" notes of the corpus that decide how a telegram is fed to the decoder.
MODE5_CIPHERTEXT = "mode 5 ciphertext (key given)"
ELL_CIPHERTEXT = "ELL-AES-CTR ciphertext (key given)"
STORED_DECRYPTED = (
    "mode 5 header, payload stored decrypted (2F2F)",
    "ELL-AES-CTR header, payload stored decrypted (payload CRC OK)",
    "mode 7 header, payload stored decrypted (2F2F)",
)
AES_REMOVED = "negative-aes-removed"


@dataclass(frozen=True)
class CorpusTelegram:
    """One telegram of one corpus record (a record may hold a full and a compact telegram)."""

    record: dict
    index: int
    hex: str

    @property
    def id(self) -> str:
        return f"{self.record['id']}#{self.index}"

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.hex)

    @property
    def wired(self) -> bool:
        return self.hex[:2] == "68"

    @property
    def crypto(self) -> str:
        notes = self.record["crypto"]
        return notes[min(self.index, len(notes) - 1)].get("crypto", "")

    @property
    def analysis(self) -> dict:
        notes = self.record["analysis"]
        return notes[min(self.index, len(notes) - 1)]

    @property
    def key_hex(self) -> str | None:
        return self.record["key"]


@cache
def records() -> tuple[dict, ...]:
    return tuple(json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip())


@cache
def telegrams() -> tuple[CorpusTelegram, ...]:
    return tuple(
        CorpusTelegram(record, index, text) for record in records() for index, text in enumerate(record["telegrams_hex"])
    )


def is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def wireless() -> tuple[CorpusTelegram, ...]:
    """Every wireless telegram that is well-formed hex."""
    return tuple(t for t in telegrams() if is_hex(t.hex) and not t.wired)


def by_crypto(note: str) -> tuple[CorpusTelegram, ...]:
    return tuple(t for t in wireless() if t.crypto == note)


def aes_removed() -> tuple[CorpusTelegram, ...]:
    return tuple(t for t in wireless() if t.record["source"] == AES_REMOVED)


@cache
def oms_examples() -> dict:
    return json.loads(OMS.read_text())
