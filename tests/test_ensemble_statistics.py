"""Streaming statistics: merged chunk reductions equal the statistics of all members at once."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.crps import crps_fair
from ensemble.run_config import EnsembleSection
from ensemble.statistics import (
    Aggregator, GroupStatistics, MemberFields, Reference, StatisticsBins, _histogram_counts, _mean_and_m2,
    _time_blocks, member_relative_error, uniform_bin_index,
)

N, T = 8, 3


def members(m: int, seed: int) -> MemberFields:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(m, T, N, N)) * 0.8
    spectrum = np.exp(rng.normal(size=(m, T, N // 2 + 1)) - 5.0 * np.arange(N // 2 + 1))
    return MemberFields(
        vorticity=w, closure=0.1 * rng.normal(size=(m, T, N, N)), closure_valid=np.array([False, True, True]),
        energy=spectrum.sum(-1), enstrophy=0.5 * (w**2).mean(axis=(-2, -1)), spectrum=spectrum,
    )


def reference(seed: int = 99) -> Reference:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(T, N, N)) * 0.8
    return Reference(w, np.full(T, 0.02), 0.5 * (w**2).mean(axis=(-2, -1)), np.array([True, True, False]))


def concat(parts: list[MemberFields]) -> MemberFields:
    names = ("vorticity", "closure", "energy", "enstrophy", "spectrum")
    kw = {k: np.concatenate([getattr(p, k) for p in parts]) for k in names}
    return MemberFields(closure_valid=parts[0].closure_valid, **kw)


@pytest.fixture
def bins() -> StatisticsBins:
    return StatisticsBins.from_section(EnsembleSection(probes_per_side=2, rank_bins=4, crps_bins_per_decade=16), N)


def test_merged_chunks_equal_one_pass(bins):
    parts = [members(m, s) for m, s in ((5, 0), (1, 1), (11, 2))]
    ref = reference()
    agg = Aggregator(T, bins)
    for i, part in enumerate(parts):
        assert agg.add(i, {0: GroupStatistics.from_members(part, bins, ref)})
    assert not agg.add(1, {0: GroupStatistics.from_members(parts[1], bins, ref)})  # a duplicate is ignored
    merged, direct = agg.groups[0], GroupStatistics.from_members(concat(parts), bins, ref)
    for name, value in direct.arrays().items():
        np.testing.assert_allclose(merged.arrays()[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_columns_equal_numpy_on_all_members(bins):
    data, ref = members(17, 5), reference()
    cols = GroupStatistics.from_members(data, bins, ref).columns(bins, ref)
    w = data.vorticity
    mean, var = w.mean(0), w.var(0, ddof=1)
    np.testing.assert_allclose(cols["spread"], np.sqrt(var.mean(axis=(-2, -1))), rtol=1e-12)
    np.testing.assert_allclose(cols["std_field_max"], np.sqrt(var).max(axis=(-2, -1)), rtol=1e-12)
    np.testing.assert_allclose(cols["energy_std"], data.energy.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(cols["spectrum_mean"], data.spectrum.mean(0), rtol=1e-12)
    rmse = np.sqrt(((mean - ref.vorticity) ** 2).mean(axis=(-2, -1)))
    rel = np.linalg.norm((mean - ref.vorticity).reshape(T, -1), axis=1) / np.linalg.norm(ref.vorticity.reshape(T, -1), axis=1)
    ok = ref.valid
    np.testing.assert_allclose(cols["rmse"][ok], rmse[ok], rtol=1e-12)
    np.testing.assert_allclose(cols["rel_error_mean"][ok], rel[ok], rtol=1e-12)
    ratio = np.sqrt(18 / 17 * var.mean(axis=(-2, -1))) / rmse
    np.testing.assert_allclose(cols["spread_skill"][ok], ratio[ok], rtol=1e-12)
    assert np.isnan(cols["rmse"][~ok]).all() and np.isnan(cols["crps_energy"][~ok]).all()
    # CRPS of energy and at the probes, against the exact fair estimator
    i, j = bins.probes[:, 0], bins.probes[:, 1]
    exact_probe = crps_fair(w[:, :, i, j], ref.vorticity[:, i, j]).mean(-1)
    exact_energy = crps_fair(data.energy, ref.energy)
    assert np.all(np.abs(cols["crps_vorticity"][ok] - exact_probe[ok]) <= cols["crps_vorticity_bound"][ok] + 1e-12)
    assert np.all(np.abs(cols["crps_energy"][ok] - exact_energy[ok]) <= cols["crps_energy_bound"][ok] + 1e-15)
    # rank histogram: rank = members below the reference, bin = rank * B // (M + 1)
    ranks = (w[:, :, i, j] < ref.vorticity[None, :, i, j]).sum(0)
    expected = [np.bincount(r * 4 // 18, minlength=4).tolist() for r in ranks]
    assert cols["rank_histogram"][0] == expected[0] and cols["rank_histogram"][1] == expected[1]
    assert cols["rank_histogram"][2] == [0, 0, 0, 0]  # no reference at t[2]
    # PDFs: densities on the fixed bins integrate to the fraction inside the range
    width = bins.vorticity_edges[1] - bins.vorticity_edges[0]
    inside = np.array(cols["vorticity_pdf"]).sum(-1) * width
    np.testing.assert_allclose(inside + cols["vorticity_outside"], 1.0, rtol=1e-12)
    counts, _ = np.histogram(w[:, 1], bins=bins.vorticity_edges)
    np.testing.assert_allclose(np.array(cols["vorticity_pdf"][1]) * width * w[:, 1].size, counts, atol=1e-9)
    assert np.isnan(cols["closure_pdf"][0]).all()  # no closure term at the first output
    closure_width = bins.closure_edges[1] - bins.closure_edges[0]
    counts, _ = np.histogram(data.closure[:, 2], bins=bins.closure_edges)
    np.testing.assert_allclose(np.array(cols["closure_pdf"][2]) * closure_width * w[:, 2].size, counts, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("edges", [np.linspace(-4.0, 4.0, 129), np.linspace(-0.5, 0.5, 129), np.linspace(0.1, 0.7, 7)])
def test_uniform_bin_index_is_searchsorted_exactly(edges, dtype):
    """On every edge, one ulp either side of it, outside the range, at +-inf and NaN, and on
    random values, the arithmetic index equals ``np.searchsorted(..., side="right")``."""
    on_edges = edges.astype(dtype)
    near = np.concatenate([on_edges, np.nextafter(on_edges, dtype(-np.inf)), np.nextafter(on_edges, dtype(np.inf))])
    special = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0], dtype)
    spread = np.random.default_rng(0).normal(scale=edges[-1] - edges[0], size=10_000).astype(dtype)
    values = np.concatenate([near, special, spread])[None]  # [1, V]: any leading shape
    np.testing.assert_array_equal(uniform_bin_index(values, edges), np.searchsorted(edges, values, side="right"))


def test_block_reductions_equal_numpy_over_all_times():
    """Histograms, mean and M2 and the members' relative errors, computed a few times at a time,
    equal NumPy's over the whole array (float32 fields, as the workers record them)."""
    rng = np.random.default_rng(7)
    w = rng.normal(scale=2.0, size=(6, 300, 16, 16)).astype(np.float32)
    assert len(_time_blocks(w)) >= 2  # the blocks split the times
    edges = np.linspace(-4.0, 4.0, 65)
    counts = _histogram_counts(w, edges)
    flat = w.reshape(6, 300, -1)
    for t in (0, 151, 299):
        inside, _ = np.histogram(flat[:, t], bins=edges)
        below, above = (flat[:, t] < edges[0]).sum(), (flat[:, t] >= edges[-1]).sum()
        last_edge = (flat[:, t] == edges[-1]).sum()  # np.histogram's last bin is closed, ours sends it above
        np.testing.assert_array_equal(counts[t], [below, *inside[:-1], inside[-1] - last_edge, above])
    mean, m2 = _mean_and_m2(w)
    w64 = w.astype(np.float64)
    np.testing.assert_allclose(mean, w64.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(m2, ((w64 - w64.mean(0)) ** 2).sum(0), rtol=1e-12)
    ref = Reference(rng.normal(size=(300, 16, 16)).astype(np.float32), np.ones(300), np.ones(300),
                    np.arange(300) % 7 != 0)
    rel = member_relative_error(w, ref)
    expected = np.linalg.norm((w64 - ref.vorticity).reshape(6, 300, -1), axis=-1) / np.linalg.norm(
        ref.vorticity.astype(np.float64).reshape(300, -1), axis=-1)
    np.testing.assert_allclose(rel[:, ref.valid], expected[:, ref.valid], rtol=1e-5)
    assert np.isnan(rel[:, ~ref.valid]).all()


def test_run_without_closure_term_has_no_closure_pdf(bins):
    data = members(6, 3)
    data.closure_valid[:] = False
    cols = GroupStatistics.from_members(data, bins, None).columns(bins, None)
    assert np.isnan(np.array(cols["closure_pdf"])).all()


def test_spectrum_quantiles_within_one_bin_ratio(bins):
    data = members(200, 7)
    cols = GroupStatistics.from_members(data, bins, None).columns(bins, None)
    ratio = 10 ** (1 / EnsembleSection().spectrum_bins_per_decade)
    for q, name in ((0.05, "spectrum_q05"), (0.5, "spectrum_q50"), (0.95, "spectrum_q95")):
        exact = np.quantile(data.spectrum, q, axis=0)
        got = np.array(cols[name])
        assert np.all(got <= exact * ratio * (1 + 1e-9)) and np.all(got >= exact / ratio * (1 - 1e-9)), name


def test_state_round_trip(bins, tmp_path):
    agg = Aggregator(T, bins)
    agg.add(3, {1: GroupStatistics.from_members(members(4, 0), bins, reference())})
    np.savez(tmp_path / "s.npz", **agg.state_arrays())
    back = Aggregator(T, bins)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        back.load_state(dict(f))
    assert back.merged_chunks == {3} and set(back.groups) == {1}
    for name, value in agg.groups[1].arrays().items():
        np.testing.assert_array_equal(back.groups[1].arrays()[name], value)
