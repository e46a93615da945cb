"""Firmware image transfer to a meter (Image transfer, class 18, Blue Book 4.4.6).

The procedure, in phases kept in the operation's ``progress`` (durably, so that a gateway
restart or a meter outage resumes where it stopped)::

    initiate   image_transfer_enabled (attribute 5) must be true; image_block_size (2) read;
               image_transfer_initiate (method 1) with the identifier and size
    transfer   image_transfer_status (6) still "initiated"; the blocks the meter has not got,
               from image_transferred_blocks_status (3, a bit per block) and
               image_first_not_transferred_block_number (4), sent with image_block_transfer
               (method 2): a resumed transfer sends only the missing blocks
    verify     image_verify (method 3); a meter still verifying answers temporary-failure and
               image_transfer_status is polled until "verification successful" (or failed)
    activate   image_activate (method 4), polled the same way
    done

Re-running initiate, transfer or verify is harmless (the meter's bitmap says what it has;
verification can be asked again), so an image transfer interrupted in those phases is
queued again and resumes. Activation is not repeated: the phase is stored before the
request goes out, and a crash after that ends the operation as ``unknown``.

``progress`` as ``op-status`` shows it: ``phase``, ``size``, ``block_size``, ``blocks``,
``transferred`` (blocks the meter holds, as of the last look), ``sent`` (blocks sent in all
attempts), ``resumed`` (attempts that continued an earlier one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.codecs.dlms.axdr import BitString, Data, DataType, octet_string, structure
from gateway.codecs.dlms.obis import Obis
from gateway.collectors.dlms_session import DlmsSession
from gateway.operations.executor import run_step
from gateway.operations.model import Kind, Outcome, Step, StepResult

CLASS_ID = 18
#: Attributes and methods (Blue Book 4.4.6, class 18 version 0).
BLOCK_SIZE, BLOCKS_STATUS, FIRST_NOT_TRANSFERRED, ENABLED, STATUS = 2, 3, 4, 5, 6
INITIATE, BLOCK_TRANSFER, VERIFY, ACTIVATE = 1, 2, 3, 4
#: image_transfer_status values.
NOT_INITIATED, INITIATED, VERIFYING, VERIFIED, VERIFY_FAILED, ACTIVATING, ACTIVATED, ACTIVATE_FAILED = range(8)
#: What each asynchronous phase waits for: (status while busy, success, failure).
_AWAITED = {VERIFY: (VERIFYING, VERIFIED, VERIFY_FAILED), ACTIVATE: (ACTIVATING, ACTIVATED, ACTIVATE_FAILED)}
TEMPORARY_FAILURE = 2
#: The progress is saved every this many blocks (it is informational: the meter's bitmap
#: is what a resumed transfer goes by).
SAVE_EVERY = 32
#: Passes over the missing blocks before the meter is deemed not to take them.
PASSES = 2

Progress = dict[str, Any]


class ImageTransfer:
    """One attempt at an image transfer in an association (see the module docstring).
    ``progress`` is the operation's (None: not begun); ``save`` stores it durably."""

    def __init__(self, session: DlmsSession, obis: Obis, image: bytes, identifier: bytes, activate: bool,
                 progress: Progress | None, save: Callable[[Progress], Awaitable[None]], *,
                 poll_s: float = 1.0, polls: int = 60) -> None:
        self.session = session
        self.obis = obis
        self.image = image
        self.identifier = identifier
        self.activate = activate
        self.progress: Progress = dict(progress or {"phase": "initiate", "size": len(image), "sent": 0, "resumed": 0})
        self.save = save
        self.poll_s = poll_s
        self.polls = polls
        self.results: list[StepResult] = []

    async def run(self) -> Outcome:
        """Carry on from the current phase; the outcome, with the meter's answers in ``results``."""
        if self.progress["phase"] != "initiate":
            self.progress["resumed"] += 1
        phases = {"initiate": self._initiate, "transfer": self._transfer, "verify": self._verify,
                  "activate": self._activate}
        while self.progress["phase"] != "done":
            if not await phases[self.progress["phase"]]():
                return Outcome.DATA_ACCESS_RESULT
        return Outcome.SUCCESS

    # --- phases: each returns False when the meter refused ---------------------------------

    async def _initiate(self) -> bool:
        enabled = await self._get(ENABLED)
        if enabled is None:
            return False
        if enabled.value is not True:
            self.results.append(StepResult(self._step(Kind.GET, ENABLED), "image transfer disabled", enabled,
                                           code=None))
            return False
        block_size = await self._get(BLOCK_SIZE)
        if block_size is None:
            return False
        size = self._integer(BLOCK_SIZE, block_size)
        if size is None:
            return False
        if size <= 0:
            self.results.append(StepResult(self._step(Kind.GET, BLOCK_SIZE), "no usable block size", block_size,
                                           code=None))
            return False
        parameters = structure(octet_string(self.identifier), Data(DataType.DOUBLE_LONG_UNSIGNED, len(self.image)))
        if not await self._act(INITIATE, parameters):
            return False
        blocks = -(-len(self.image) // size)
        await self._next("transfer", block_size=size, blocks=blocks, transferred=0)
        return True

    async def _transfer(self) -> bool:
        status = await self._get(STATUS)
        if status is None:
            return False
        if status.value == NOT_INITIATED:  # the meter forgot the transfer: start it again
            await self._next("initiate")
            return True
        for done_passes in range(PASSES + 1):
            missing = await self._missing()
            if missing is None:
                return False
            if not missing:
                await self._next("verify")
                return True
            if done_passes == PASSES:
                break
            for number in missing:
                if not await self._send_block(number):
                    return False
            await self.save(self.progress)
        self.results.append(StepResult(self._step(Kind.GET, BLOCKS_STATUS), "blocks not taken", code=None,
                                       note=f"{len(missing)} blocks still missing after {PASSES} passes"))
        return False

    async def _verify(self) -> bool:
        if not await self._asynchronous(VERIFY):
            return False
        if self.activate:
            await self._next("activate")  # stored before image_activate goes out: never repeated
        else:
            await self._next("done")
        return True

    async def _activate(self) -> bool:
        if not await self._asynchronous(ACTIVATE):
            return False
        await self._next("done")
        return True

    # --- helpers ---------------------------------------------------------------------------

    def _integer(self, attribute: int, data: Data) -> int | None:
        """An attribute that must be an integer (Blue Book 4.4.6: double-long-unsigned);
        anything else from the meter ends the transfer with the reason, never a crash."""
        if isinstance(data.value, bool) or not isinstance(data.value, int):
            self.results.append(StepResult(self._step(Kind.GET, attribute),
                                           f"type-unmatched: {data.type.name.lower()}, not an integer", data,
                                           code=None))
            return None
        return data.value

    async def _missing(self) -> list[int] | None:
        """Block numbers the meter does not hold, from its bitmap and first missing block."""
        blocks = self.progress["blocks"]
        bitmap = await self._get(BLOCKS_STATUS)
        first = await self._get(FIRST_NOT_TRANSFERRED)
        if bitmap is None or first is None:
            return None
        first_missing = self._integer(FIRST_NOT_TRANSFERRED, first)
        if first_missing is None:
            return None
        if not isinstance(bitmap.value, BitString):
            self.results.append(StepResult(self._step(Kind.GET, BLOCKS_STATUS), "type-unmatched: not a bit-string",
                                           bitmap, code=None))
            return None
        bits = bitmap.value
        held = {n for n in range(min(blocks, bits.length)) if bits[n]}
        held |= set(range(min(first_missing, blocks)))  # everything below the first missing one
        self.progress["transferred"] = len(held)
        return [n for n in range(blocks) if n not in held]

    async def _send_block(self, number: int) -> bool:
        size = self.progress["block_size"]
        block = self.image[number * size:(number + 1) * size]
        step = self._step(Kind.ACTION, BLOCK_TRANSFER,
                          structure(Data(DataType.DOUBLE_LONG_UNSIGNED, number), octet_string(block)))
        result = await run_step(self.session, step)
        if not result.success:
            self.results.append(result)
            return False
        self.progress["sent"] += 1
        self.progress["transferred"] += 1
        if self.progress["sent"] % SAVE_EVERY == 0:
            await self.save(self.progress)
        return True

    async def _asynchronous(self, method: int) -> bool:
        """Verify or activate: success now, or temporary-failure and then the status polled
        until the meter says it succeeded (or failed)."""
        result = await run_step(self.session, self._step(Kind.ACTION, method, Data(DataType.INTEGER, 0)))
        self.results.append(result)
        if result.success:
            return True
        if result.code != TEMPORARY_FAILURE:
            return False
        busy, done, failed = _AWAITED[method]
        for _ in range(self.polls):
            await asyncio.sleep(self.poll_s)
            status = await self._get(STATUS)
            if status is None or status.value == failed:
                return False
            if status.value == done:
                self.results.append(StepResult(self._step(Kind.GET, STATUS), "success", status))
                return True
            if status.value != busy:
                break
        self.results.append(StepResult(self._step(Kind.GET, STATUS), "not completed", code=None,
                                       note=f"image_transfer_status did not reach {done}"))
        return False

    async def _get(self, attribute: int) -> Data | None:
        result = await run_step(self.session, self._step(Kind.GET, attribute))
        if not result.success:
            self.results.append(result)
            return None
        return result.data

    async def _act(self, method: int, parameters: Data) -> bool:
        result = await run_step(self.session, self._step(Kind.ACTION, method, parameters))
        self.results.append(result)
        return result.success

    async def _next(self, phase: str, **facts: Any) -> None:
        self.progress.update(phase=phase, **facts)
        await self.save(self.progress)

    def _step(self, kind: Kind, index: int, data: Data | None = None) -> Step:
        return Step(kind, CLASS_ID, self.obis, index, data)
