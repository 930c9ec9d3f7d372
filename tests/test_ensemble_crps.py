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
def test_binned_sketch_is_within_its_bound_of_scoringrules(scale):
    """Merged binned chunk sketches give the fair CRPS within the error bound they report."""
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, 6)) * scale
    ensemble = obs + scale * (0.3 * rng.normal(size=(90, 4, 6)) + 0.1)
    edges = signed_log_edges(1e-10, 1e4, 8)
    merged = DeviationSketch.empty((4, 6), edges, exact_limit=0)
    for part in np.array_split(ensemble, 5):  # five chunks of 18 members
        sketch = DeviationSketch.empty((4, 6), edges, exact_limit=0)
        sketch.add(part - obs)
        merged.merge(sketch)
    assert not merged.exact
    score, bound = merged.crps()
    expected = sr.crps_ensemble(obs, np.moveaxis(ensemble, 0, -1), estimator="fair")
    assert np.all(np.abs(score - expected) <= bound + 1e-12 * scale)
    assert np.all(bound < 0.05 * expected)  # the bound is informative, not vacuous
    assert np.all(np.abs(score - expected) < 0.01 * expected)


def test_sketch_exact_when_every_bin_holds_at_most_two_members():
    edges = signed_log_edges(1e-3, 1e3, 50)
    values = np.array([-2.0, -1.0, 0.5, 0.5001, 3.0, 40.0])[:, None]
    sketch = DeviationSketch.empty((1,), edges, exact_limit=0)
    sketch.add(values)
    score, bound = sketch.crps()
    assert bound[0] == 0.0
    assert score[0] == pytest.approx(crps_fair(values, 0.0)[0], rel=1e-12)


@pytest.mark.parametrize("exact_limit", [None, 0])
def test_sketch_masks_invalid_entries_and_rejects_nan(exact_limit):
    edges = signed_log_edges(1e-6, 1e2, 4)
    sketch = DeviationSketch.empty((2,), edges, exact_limit)
    sketch.add(np.array([[1.0, 0.0], [2.0, 0.0]]), valid=np.array([True, False]))
    score, _ = sketch.crps()
    assert np.isfinite(score[0]) and np.isnan(score[1])
    with pytest.raises(ValueError, match="non-finite"):
        sketch.add(np.array([[np.nan, 0.0]]))


def test_exact_form_matches_scoringrules_then_bins_past_its_limit():
    """Up to ``exact_limit`` members the sketch keeps the deviations and scores them exactly
    (zero bound), however the members were split; a merge or add past the limit bins everything
    held so far, and the score stays within the binned bound."""
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(3, 5))
    ensemble = obs + 0.3 * rng.normal(size=(90, 3, 5)) + 0.1
    expected = sr.crps_ensemble(obs, np.moveaxis(ensemble, 0, -1), estimator="fair")
    edges = signed_log_edges(1e-8, 1e3, 8)
    for splits in (1, 5, 9):
        merged = DeviationSketch.empty((3, 5), edges, exact_limit=90)
        for part in np.array_split(ensemble, splits):
            chunk = DeviationSketch.empty((3, 5), edges, exact_limit=90)
            chunk.add(part - obs)
            merged.merge(chunk)
        score, bound = merged.crps()
        assert merged.exact and np.all(bound == 0)
        np.testing.assert_allclose(score, expected, rtol=1e-12)
    small = DeviationSketch.empty((3, 5), edges, exact_limit=50)
    for part in np.array_split(ensemble, 5):  # 18, 36, then 54 > 50 members
        small.add(part - obs)
        assert small.exact == (small.members.max() <= 50)
    score, bound = small.crps()
    assert not small.exact and np.all(np.abs(score - expected) <= bound + 1e-12)
    assert np.all(bound > 0)


def test_exact_form_with_masked_entries_is_the_exact_crps_of_the_valid_members():
    edges = signed_log_edges(1e-6, 1e2, 4)
    sketch = DeviationSketch.empty((2,), edges)
    sketch.add(np.array([[1.0, 5.0], [2.0, 6.0]]), valid=np.array([True, False]))
    sketch.add(np.array([[-0.5, 7.0]]))
    score, bound = sketch.crps()
    assert sketch.exact and sketch.members.tolist() == [3, 1]
    assert score[0] == pytest.approx(crps_fair(np.array([1.0, 2.0, -0.5]), 0.0), rel=1e-12) and bound[0] == 0
    assert np.isnan(score[1])  # one member: no fair CRPS


@pytest.mark.parametrize("exact_limit", [None, 0])
def test_sketch_round_trips_through_its_arrays(exact_limit):
    rng = np.random.default_rng(3)
    edges = signed_log_edges(1e-6, 1e2, 4)
    sketch = DeviationSketch.empty((4,), edges, exact_limit)
    sketch.add(rng.normal(size=(12, 4)))
    loaded = DeviationSketch.from_arrays(dict(sketch.arrays("s.")), "s.")
    assert loaded.exact == sketch.exact and loaded.exact_limit == sketch.exact_limit
    np.testing.assert_array_equal(loaded.crps()[0], sketch.crps()[0])
    if not sketch.exact:  # a state saved before the exact form existed has no exact_limit
        old = {k: v for k, v in sketch.arrays("s.").items() if not k.endswith("exact_limit")}
        assert DeviationSketch.from_arrays(old, "s.").exact_limit == 4 * (len(edges) + 1)
