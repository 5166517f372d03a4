"""Hypothesis fuzzing of decode + metadata on mutated valid images. Bounded for CI (derandomised,
so every run tries the same examples); AIISCAN_FUZZ_EXAMPLES=N runs longer, with fresh examples."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..fuzz_targets import check, seeds

SEEDS = seeds()
EXAMPLES = int(os.environ.get("AIISCAN_FUZZ_EXAMPLES", "1000"))
LONG = "AIISCAN_FUZZ_EXAMPLES" in os.environ


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        elif op == "duplicate":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 256))]
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_decode_and_metadata_never_raise_on_mutated_images(data, tmp_path):
    check(data, str(tmp_path))


def test_seeds_are_valid_and_carry_metadata(tmp_path):
    for data in SEEDS:
        check(data, str(tmp_path))
