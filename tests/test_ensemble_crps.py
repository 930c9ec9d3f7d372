"""CRPS: the exact fair estimator and the mergeable sketch, checked against ``scoringrules``."""

from __future__ import annotations

import numpy as np
import pytest
import scoringrules as sr

from ensemble.crps import DeviationSketch, crps_fair, signed_log_edges


def test_exact_fair_crps_matches_scoringrules():
    rng = np.random.default_rng(0)
    ensemble = rng.normal(size=(37, 5, 3)) * rng.uniform(0.1, 3, size=(5, 3))
    obs = rng.normal(size=(5, 3))
    expected = sr.crps_ensemble(obs, np.moveaxis(ensemble, 0, -1), estimator="fair")
    np.testing.assert_allclose(crps_fair(ensemble, obs), expected, rtol=1e-12, atol=1e-14)


def test_exact_fair_crps_two_members_by_hand():
    # (|0-1| + |2-1|)/2 - (|0-2| + |2-0|)/(2*2*1) = 1 - 1 = 0
    assert crps_fair(np.array([0.0, 2.0]), 1.0) == pytest.approx(0.0)
    # (|0-3| + |2-3|)/2 - 4/4 = 2 - 1 = 1
    assert crps_fair(np.array([0.0, 2.0]), 3.0) == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 300.0])
def test_sketch_is_within_its_bound_of_scoringrules(scale):
    """Merged chunk sketches give the fair CRPS within the error bound they report."""
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, 6)) * scale
    ensemble = obs + scale * (0.3 * rng.normal(size=(90, 4, 6)) + 0.1)
    edges = signed_log_edges(1e-10, 1e4, 8)
    merged = DeviationSketch.empty((4, 6), edges)
    for part in np.array_split(ensemble, 5):  # five chunks of 18 members
        sketch = DeviationSketch.empty((4, 6), edges)
        sketch.add(part - obs)
        merged.merge(sketch)
    score, bound = merged.crps()
    expected = sr.crps_ensemble(obs, np.moveaxis(ensemble, 0, -1), estimator="fair")
    assert np.all(np.abs(score - expected) <= bound + 1e-12 * scale)
    assert np.all(bound < 0.05 * expected)  # the bound is informative, not vacuous
    assert np.all(np.abs(score - expected) < 0.01 * expected)


def test_sketch_exact_when_every_bin_holds_at_most_two_members():
    edges = signed_log_edges(1e-3, 1e3, 50)
    values = np.array([-2.0, -1.0, 0.5, 0.5001, 3.0, 40.0])[:, None]
    sketch = DeviationSketch.empty((1,), edges)
    sketch.add(values)
    score, bound = sketch.crps()
    assert bound[0] == 0.0
    assert score[0] == pytest.approx(crps_fair(values, 0.0)[0], rel=1e-12)


def test_sketch_masks_invalid_entries_and_rejects_nan():
    edges = signed_log_edges(1e-6, 1e2, 4)
    sketch = DeviationSketch.empty((2,), edges)
    sketch.add(np.array([[1.0, 0.0], [2.0, 0.0]]), valid=np.array([True, False]))
    score, _ = sketch.crps()
    assert np.isfinite(score[0]) and np.isnan(score[1])
    with pytest.raises(ValueError, match="non-finite"):
        sketch.add(np.array([[np.nan, 0.0]]))
