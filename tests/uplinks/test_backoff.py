"""Capped, jittered exponential back-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.uplinks.backoff import Backoff


def test_delays_double_up_to_the_cap_and_stay_in_the_upper_half_of_each_step() -> None:
    lowest = Backoff(1.0, 60.0, random_fraction=lambda: 0.0)
    highest = Backoff(1.0, 60.0, random_fraction=lambda: 1.0)
    assert [lowest.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert [highest.next_delay() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(1.0, 60.0, random_fraction=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 1.0


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_no_delay_is_ever_zero_or_above_the_cap(attempts: int, fraction: float) -> None:
    backoff = Backoff(1.0, 60.0, random_fraction=lambda: fraction)
    backoff.attempt = attempts
    assert 0.5 <= backoff.next_delay() <= 60.0


def test_an_initial_delay_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(10.0, 1.0)
