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


#: adjtimex(2): the kernel's clock state TIME_ERROR (5) means "not synchronised"
#: (STA_UNSYNC set); ``struct timex`` is 208 bytes on 64-bit Linux, ``maxerror`` (µs) at
#: offset 24. ``modes = 0`` (a zeroed structure) only reads.
TIME_ERROR = 5
TIMEX_SIZE = 256
MAXERROR_OFFSET = 24
#: systemd-timesyncd touches this file once it has synchronised the clock.
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"


def time_quality(flag_file: str = TIMESYNC_FLAG) -> dict[str, object]:
    """Whether the gateway's own clock is synchronised (part of the status: readings are
    stamped with it): ``{"synchronized": bool | None, "source", "max_error_ms"}``. From
    the kernel (adjtimex, as ``timedatectl`` reports "System clock synchronized"), else
    from systemd-timesyncd's flag file (a sandbox may refuse adjtimex), else unknown."""
    import ctypes
    import struct
    from pathlib import Path

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = ctypes.create_string_buffer(TIMEX_SIZE)
        state = libc.adjtimex(buffer)
    except (OSError, AttributeError):
        state = -1
    if state >= 0:
        (max_error_us,) = struct.unpack_from("@l", buffer.raw, MAXERROR_OFFSET)
        return {"synchronized": state != TIME_ERROR, "source": "adjtimex", "max_error_ms": max_error_us // 1000}
    if Path(flag_file).exists():
        return {"synchronized": True, "source": "systemd-timesyncd", "max_error_ms": None}
    return {"synchronized": None, "source": "unknown", "max_error_ms": None}
