"""Capped, jittered exponential back-off between reconnection attempts."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays ``initial_s, 2·initial_s, 4·initial_s … cap_s``, each drawn uniformly from
    the upper half of its step ("equal jitter"): never zero, so a broker that refuses at
    once is not hammered, and spread out, so gateways that lost the same broker do not
    come back in lock-step.
    """

    def __init__(self, initial_s: float = 1.0, cap_s: float = 60.0, *,
                 random_fraction: Callable[[], float] = random.random) -> None:
        if not 0 < initial_s <= cap_s:
            raise ValueError("need 0 < initial_s <= cap_s")
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.attempt = 0
        self._random = random_fraction

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the step up to the cap."""
        step = min(self.cap_s, self.initial_s * 2 ** min(self.attempt, 62))
        self.attempt += 1
        return step / 2 + self._random() * step / 2

    def reset(self) -> None:
        """After a connection that worked: start again from ``initial_s``."""
        self.attempt = 0
