"""Fuzzing the DLMS lower layers: whatever bytes arrive, in whatever chunks, the decoders raise
nothing but DLMSError subclasses and always come to rest (a longer run:
tests/bench/fuzz_dlms_link.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.codecs.dlms.link_fuzz_targets import SEEDS, TARGETS, mutate

edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=6)
mutated = st.builds(mutate, st.sampled_from(SEEDS), edits)
spliced = st.lists(st.sampled_from(SEEDS) | st.binary(max_size=20), min_size=1, max_size=5).map(b"".join)
inputs = st.binary(max_size=400) | mutated | spliced

EXAMPLES = {"hdlc_parser": 2000, "hdlc_connections": 1000, "wrapper": 1000, "mode_e": 1000}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_decoders_raise_only_dlms_errors_on_any_input(target):
    @settings(max_examples=EXAMPLES[target], deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=inputs, chunk=st.sampled_from([1, 3, 7, 64, 4096]))
    def run(data, chunk):
        TARGETS[target](data, chunk)

    run()
