"""Exact closure terms computed from DNS fields, on the coarse grid.

Convention used everywhere in this project: the closure term ``C`` is what is *added* to the
coarse model's right-hand side, ``dw/dt = coarse_rhs(w) + C``.

* Missing physics (the paper's main case): the coarse model has only forcing and viscosity,
  so ``C = H = -u . grad w + sigma xi``, evaluated on the DNS grid and sub-sampled.
* LES: the coarse model is the full Navier-Stokes equation on the filtered field, so
  ``C = -Pi`` with ``Pi = filter(N(w)) - N(filter(w))`` and ``N`` the dealiased advection term.
"""

from __future__ import annotations

import torch

from solvers.filters import LESFilter, subsample
from solvers.grid import SpectralGrid
from solvers.spectral_ops import advection_hat


def missing_physics_term(
    w_hat: torch.Tensor, fine: SpectralGrid, n_coarse: int, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """``H = -u . grad w + sigma xi`` on the fine grid, sub-sampled to ``[..., n, n]``.

    Args:
        w_hat: fine vorticity spectrum ``[members, N, N//2+1]``.
        noise: ``sigma xi`` in physical space ``[members, N, N]`` (None for no noise).
    """
    h = -fine.to_physical(advection_hat(w_hat, fine))
    if noise is not None:
        h = h + noise
    return subsample(h, n_coarse)


def les_subgrid_term(w_hat: torch.Tensor, les_filter: LESFilter) -> torch.Tensor:
    """``C = -Pi = N(filter(w)) - filter(N(w))`` on the coarse grid, ``[members, n, n]``."""
    coarse = les_filter.coarse
    filtered_advection = les_filter.apply_hat(advection_hat(w_hat, les_filter.fine))
    advection_of_filtered = advection_hat(les_filter.apply_hat(w_hat), coarse)
    return coarse.to_physical(advection_of_filtered - filtered_advection)
