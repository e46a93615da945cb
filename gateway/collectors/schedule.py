"""When meters are due: intervals aligned to the clock, not to when the gateway started.

A 15-minute meter is read at :00, :15, :30 and :45 local time; a daily one at midnight (plus
the configured offset). Alignment is to local midnight in the gateway's time zone for
intervals that divide a day, and to the Unix epoch for longer ones. Computation is done in
UTC from the aware local midnight, so a DST change never produces a time that does not exist.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

DAY_S = 86_400


def next_due(after: datetime, interval_s: int, offset_s: int, tz: ZoneInfo) -> datetime:
    """The first aligned time strictly after ``after`` (aware), in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    if interval_s <= DAY_S and DAY_S % interval_s == 0:
        # Slots restart at every local midnight: a 23- or 25-hour DST day keeps
        # "daily at 00:00" at midnight and quarter hours on the quarter hour.
        local_day = after.astimezone(tz).date()
        anchor = _local_midnight(local_day, tz)
        next_midnight = _local_midnight(local_day + timedelta(days=1), tz)
        due = _slot_after(after, anchor, interval_s, offset_s)
        # On a 25-hour day a slot counted from midnight can fall off the wall-clock grid
        # (a daily read at 23:00); keep only slots whose local time is on the grid.
        while due < next_midnight and not _on_grid(due, tz, interval_s, offset_s):
            due += timedelta(seconds=interval_s)
        if due >= next_midnight:
            due = _slot_after(after, next_midnight, interval_s, offset_s)
        return due
    return _slot_after(after, datetime(1970, 1, 1, tzinfo=timezone.utc), interval_s, offset_s)


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)


def _on_grid(moment: datetime, tz: ZoneInfo, interval_s: int, offset_s: int) -> bool:
    local = moment.astimezone(tz)
    wall_s = local.hour * 3600 + local.minute * 60 + local.second
    return (wall_s - offset_s) % interval_s == 0


def _slot_after(after: datetime, anchor: datetime, interval_s: int, offset_s: int) -> datetime:
    """The first ``anchor + offset + k·interval`` (k ≥ 0) strictly after ``after``."""
    elapsed = (after - anchor).total_seconds() - offset_s
    slots = max(0, math.floor(elapsed / interval_s) + 1)
    due = anchor + timedelta(seconds=slots * interval_s + offset_s)
    if due <= after:  # float rounding at an exact boundary
        due += timedelta(seconds=interval_s)
    return due
