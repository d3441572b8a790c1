"""Each CPU level's bits are what they were recorded as (tests/fingerprints.py): short fits of
every algorithm, hashed, against the record for this level, CPU vendor and compiler."""

from __future__ import annotations

import json

import pytest

import metafast as mf
from fingerprints import RECORD, at_level

RECORDED = json.loads(RECORD.read_text())


@pytest.mark.parametrize("level", mf.build_info()["levels_supported"])
def test_fits_give_the_recorded_bits(level):
    got = at_level(level)
    if got["key"] not in RECORDED:
        pytest.skip(f"no fingerprints recorded for {got['key']} (python tests/fingerprints.py --record)")
    expected = RECORDED[got["key"]]
    assert set(got["fits"]) == set(expected)
    differing = {name: (value, expected[name]) for name, value in got["fits"].items() if value != expected[name]}
    assert not differing, f"bits changed at {got['key']}: {differing}"
    # one thread and two give the same bits
    assert all(got["fits"][name] == got["fits"][name.replace("-t1", "-t2")] for name in got["fits"] if name.endswith("-t1"))
