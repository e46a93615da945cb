"""Restart a failing child task alone, with capped and jittered back-off.

``supervise`` runs inside the application's one TaskGroup: a bus whose serial port
vanished, or a broker that refuses us, restarts without touching the others. Cancellation
always propagates: ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class ChildState:
    """What the supervisor knows of one child, for status."""

    name: str
    restarts: int = 0
    last_error: str | None = None
    running: bool = False


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off from ``initial_s`` to ``max_s`` with full jitter."""

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)


async def supervise(
    state: ChildState,
    factory: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff = Backoff(),
    on_failure: Callable[[ChildState, BaseException], Awaitable[None]] | None = None,
    healthy_after_s: float = 60.0,
) -> None:
    """Run ``factory()`` forever; when it raises, report, wait and run it again.

    A child that ran for ``healthy_after_s`` before failing starts its back-off afresh.
    A child that returns normally is done.
    """
    attempt = 0
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        state.running = True
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a supervisor's whole job is to catch and restart
            state.restarts += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            if loop.time() - started >= healthy_after_s:
                attempt = 0
            attempt += 1
            delay = backoff.delay(attempt)
            log.warning("%s failed (%s); restarting in %.1f s", state.name, state.last_error, delay)
            if on_failure is not None:
                await on_failure(state, exc)
        finally:
            state.running = False
        await asyncio.sleep(delay)
