"""A-priori metrics against exact answers: fair CRPS, Parseval for the spectrum, a calibrated ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data import ClosurePairs
from models.evaluation import evaluate_closure, fair_crps, markdown_table, pick_samples, power_spectrum
from models.sampling_options import SamplerOptions
from solvers.grid import SpectralGrid
from solvers.random import MemberRandom


def test_fair_crps_matches_pairwise_definition_and_scoringrules():
    gen = torch.Generator().manual_seed(0)
    ens = torch.randn(7, 5, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    m = ens.shape[0]
    pairwise = (ens[:, None] - ens[None, :]).abs().sum((0, 1)) / (2 * m * (m - 1))
    brute = (ens - y).abs().mean(0) - pairwise
    assert torch.allclose(fair_crps(ens, y), brute, atol=1e-12)
    sr = pytest.importorskip("scoringrules")
    ref = sr.crps_ensemble(y.numpy(), np.moveaxis(ens.numpy(), 0, -1), estimator="fair")
    assert np.allclose(fair_crps(ens, y).numpy(), ref, atol=1e-12)


def test_power_spectrum_obeys_parseval():
    grid = SpectralGrid(16, dtype=torch.float64)
    f = torch.randn(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(power_spectrum(f, grid).sum(-1), 0.5 * (f**2).mean((-2, -1)), rtol=1e-10)


class GaussianClosure:
    """C = mean(w) + std * noise: the exact conditional law of the synthetic pairs below."""

    method, grid_size, options, model = "gaussian", 8, SamplerOptions(), object()

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, w: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        return 0.5 * w + self.std * rng.randn(*w.shape[1:])


def synthetic_pairs(std: float, count: int = 200) -> ClosurePairs:
    gen = np.random.default_rng(0)
    w = gen.standard_normal((count, 8, 8)).astype(np.float32)
    c = (0.5 * w + std * gen.standard_normal((count, 8, 8))).astype(np.float32)
    return ClosurePairs(w, c, {}, None)


def test_calibrated_ensemble_has_unit_spread_skill_and_known_errors():
    std, members = 0.3, 16
    result = evaluate_closure(GaussianClosure(std), synthetic_pairs(std), members=members, samples=100)
    assert result["spread_skill"] == pytest.approx(1.0, abs=0.05)
    # E||mean - C||^2 = std^2 (1 + 1/M) per point; ||C||^2 = 0.25 + std^2 per point.
    expected = np.sqrt(std**2 * (1 + 1 / members) / (0.25 + std**2))
    assert result["relative_error_mean"] == pytest.approx(expected, rel=0.05)
    # White error on a white field: every shell misses by the same fraction.
    assert result["relative_error_mean_by_shell"][1:5] == pytest.approx([expected] * 4, rel=0.15)
    # CRPS of N(0, s^2) against its own draws: s / sqrt(pi).
    assert result["crps"] == pytest.approx(std / np.sqrt(np.pi), rel=0.05)
    assert "rel. err. mean" in markdown_table([result | {"sampler": SamplerOptions().to_dict()}])


def test_overconfident_ensemble_has_spread_skill_below_one():
    result = evaluate_closure(GaussianClosure(0.05), synthetic_pairs(0.3), members=8, samples=50)
    assert result["spread_skill"] < 0.3


def test_pick_samples_evenly_spaced():
    assert pick_samples(10, 3).tolist() == [0, 4, 9]  # linspace 0, 4.5, 9 rounded half to even
    assert pick_samples(5, 0).tolist() == [0, 1, 2, 3, 4]
