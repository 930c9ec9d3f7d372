"""A-priori identity: the coarse model plus the exact closure term reproduces the filtered DNS
tendency, ``P(rhs_fine(w)) = rhs_coarse(P w) + C`` (float64, relative 1e-10).

* LES: ``P`` = Gaussian filter + spectral truncation, ``C = -Pi``, coarse forcing ``P f``.
  Exact for any field, since the linear terms commute with ``P``.
* Missing physics: ``P`` = sub-sampling, ``C = H = -u.grad w`` (no noise here). Exact for fields
  whose modes the coarse grid resolves (sub-sampling then commutes with the Laplacian).
"""

from __future__ import annotations

import torch

from solvers.closure_terms import les_subgrid_term, missing_physics_term
from solvers.filters import LESFilter, subsample
from solvers.forcing import kolmogorov_forcing
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field
from solvers.navier_stokes import VorticityEquation
from solvers.random import MemberRandom

NU, DRAG = 1e-3, 0.05


def equation(grid: SpectralGrid, advect: bool, forcing: torch.Tensor | None = None) -> VorticityEquation:
    forcing = kolmogorov_forcing(grid) if forcing is None else forcing
    return VorticityEquation(grid, NU, DRAG, forcing=forcing, advect=advect)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_les_identity_to_1e_10() -> None:
    fine, coarse = SpectralGrid(64, dtype=torch.float64), SpectralGrid(16, dtype=torch.float64)
    les = LESFilter(fine, coarse)
    w_hat = fine.to_spectral(4 * gaussian_random_field(fine, MemberRandom([1, 2])))
    filtered_tendency = les.apply_hat(equation(fine, advect=True).tendency(w_hat))
    coarse_eq = equation(coarse, advect=True, forcing=les(kolmogorov_forcing(fine)))
    coarse_eq.closure_hat = coarse.to_spectral(les_subgrid_term(w_hat, les))
    assert relative(coarse_eq.tendency(les.apply_hat(w_hat)), filtered_tendency) < 1e-10


def test_missing_physics_identity_for_resolved_fields_to_1e_10() -> None:
    fine, coarse = SpectralGrid(64, dtype=torch.float64), SpectralGrid(32, dtype=torch.float64)
    w = 4 * gaussian_random_field(fine, MemberRandom([3]))
    w_hat = fine.to_spectral(w)
    cycles = fine.wavenumber_magnitude  # keep modes with |k_x|, |k_y| < 8: resolved, and N(w) too
    kx = torch.fft.fftfreq(64, d=1 / 64, dtype=torch.float64)[:, None].abs()
    ky = torch.fft.rfftfreq(64, d=1 / 64, dtype=torch.float64)[None, :]
    w_hat = w_hat * ((kx < 8) & (ky < 8)) * (cycles > 0)
    fine_tendency = fine.to_physical(equation(fine, advect=True).tendency(w_hat))
    coarse_eq = equation(coarse, advect=False)
    coarse_eq.closure_hat = coarse.to_spectral(missing_physics_term(w_hat, fine, 32))
    w_coarse_hat = coarse.to_spectral(subsample(fine.to_physical(w_hat), 32))
    coarse_tendency = coarse.to_physical(coarse_eq.tendency(w_coarse_hat))
    assert relative(coarse_tendency, subsample(fine_tendency, 32)) < 1e-10
