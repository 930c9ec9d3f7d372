"""Energy, enstrophy and the isotropic energy spectrum of vorticity fields."""

from __future__ import annotations

import torch

from solvers.grid import SpectralGrid


def _half_plane_weights(grid: SpectralGrid) -> torch.Tensor:
    """Multiplicity of each ``rfft2`` column in a full-plane sum (1 for y-mode 0 and Nyquist, else 2)."""
    w = torch.full((grid.n // 2 + 1,), 2.0, device=grid.device, dtype=grid.dtype)
    w[0] = 1.0
    w[-1] = 1.0
    return w


def energy_spectrum(w: torch.Tensor, grid: SpectralGrid) -> torch.Tensor:
    """Shell-summed kinetic energy spectrum ``E(k)``, ``k = 0 .. n/2``: ``[..., n//2+1]``.

    ``E(k) = sum_{k - 1/2 <= |k'| < k + 1/2} |u_hat(k')|^2 / 2`` with ``|u_hat|^2 = |w_hat|^2/|2 pi k|^2``
    and the transform normalised by ``n^2`` (so ``sum_k E(k)`` is the mean kinetic energy).
    """
    w_hat = grid.to_spectral(w) / grid.n**2
    density = 0.5 * (w_hat.abs() ** 2) * grid.inv_k2 * _half_plane_weights(grid)
    flat = density.reshape(*density.shape[:-2], -1)
    out = torch.zeros(*density.shape[:-2], grid.n // 2 + 1, device=w.device, dtype=density.dtype)
    return out.index_add_(-1, grid.shell.reshape(-1), flat)


def energy(w: torch.Tensor, grid: SpectralGrid) -> torch.Tensor:
    """Mean kinetic energy ``<|u|^2>/2`` per field, ``[...]``."""
    return energy_spectrum(w, grid).sum(-1)


def enstrophy(w: torch.Tensor) -> torch.Tensor:
    """Mean enstrophy ``<w^2>/2`` per field, ``[...]``."""
    return 0.5 * (w**2).mean(dim=(-2, -1))


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Frobenius relative error per field: ``||a - b|| / ||b||`` over the last two dims."""
    num = torch.linalg.vector_norm(estimate - reference, dim=(-2, -1))
    return num / torch.linalg.vector_norm(reference, dim=(-2, -1))
