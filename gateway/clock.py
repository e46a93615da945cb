"""Noticing a step of the gateway's wall clock (NTP after boot, someone setting the time).

The monotonic clock never jumps; the wall clock does. :class:`ClockWatch` keeps the offset
between the two and reports when it changed by more than a threshold since the last look.
The offset is taken afresh at every look, so NTP's slow slewing (well under a second per
look) never adds up to a false step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True)
class ClockStep:
    step_s: float
    before: datetime  # what the wall clock would say now had it not stepped
    after: datetime  # what it says


class ClockWatch:
    def __init__(self, threshold_s: float, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.threshold_s = threshold_s
        self._wall = wall
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def check(self) -> ClockStep | None:
        now = self._wall()
        offset = now - self._monotonic()
        step, self._offset = offset - self._offset, offset
        if abs(step) <= self.threshold_s:
            return None
        return ClockStep(step, datetime.fromtimestamp(now - step, timezone.utc), datetime.fromtimestamp(now, timezone.utc))
