"""Fifty SIGKILLs at random moments while polling and publishing lose nothing and invent nothing."""

from __future__ import annotations

import os

import pytest

from tests.reliability.crash_loop import CrashLoop, DelayingProxy, HesSubscriber

KILLS = int(os.environ.get("GATEWAY_CRASH_KILLS", "50"))


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_loses_and_invents_nothing(tmp_path, mosquitto):
    with HesSubscriber(mosquitto.port) as hes, DelayingProxy(mosquitto.port) as link:
        result = CrashLoop(tmp_path, link.port, seed=20261122).run(KILLS, hes)
        result.bytes_lost_in_flight = link.dropped_bytes
    assert result.kills >= 50 or "GATEWAY_CRASH_KILLS" in os.environ
    assert result.integrity_failures == []
    assert result.committed > 0
    assert result.bytes_lost_in_flight > 0, "no kill landed with bytes in flight: the loop proved little"
    assert result.missing == [], f"committed but never received: {result.missing}"
    assert result.invented == [], f"received but never committed: {result.invented}"
    assert result.differing == [], f"a seq arrived with other content than stored: {result.differing}"
