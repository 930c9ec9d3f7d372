"""Spectral derivatives, streamfunction -> velocity, and the dealiased advection term."""

from __future__ import annotations

import torch

from solvers.grid import SpectralGrid


def streamfunction_hat(w_hat: torch.Tensor, grid: SpectralGrid) -> torch.Tensor:
    """Solve ``lap psi = -w`` in Fourier space: ``psi_hat = w_hat / |k|^2`` (mean mode 0)."""
    return w_hat * grid.inv_k2


def velocity(w_hat: torch.Tensor, grid: SpectralGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity ``u = grad^perp psi = (d_y psi, -d_x psi)`` in physical space.

    Args:
        w_hat: ``[..., n, n//2+1]`` vorticity spectrum.
    Returns:
        ``(u, v)``, each ``[..., n, n]``.
    """
    psi_hat = streamfunction_hat(w_hat, grid)
    uv = grid.to_physical(torch.stack((1j * grid.ky * psi_hat, -1j * grid.kx * psi_hat)))
    return uv[0], uv[1]


def gradient(w_hat: torch.Tensor, grid: SpectralGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d_x w, d_y w)`` in physical space, each ``[..., n, n]``."""
    d = grid.to_physical(torch.stack((1j * grid.kx * w_hat, 1j * grid.ky * w_hat)))
    return d[0], d[1]


def advection_hat(w_hat: torch.Tensor, grid: SpectralGrid, factors: torch.Tensor | None = None) -> torch.Tensor:
    """Dealiased spectrum of the advection term ``N(w) = u . grad w``.

    The spectra of ``(u, v, w_x, w_y)`` are formed with one broadcast multiply by
    ``grid.advection_factors``, transformed in one batched ``irfft2`` call, and the product
    ``u w_x + v w_y`` is transformed back once: five FFTs per evaluation. The 2/3 rule is
    applied to the product's spectrum.

    Args:
        w_hat: ``[..., n, n//2+1]`` vorticity spectrum.
        factors: ``[4, n, n//2+1]`` multipliers to use instead of ``grid.advection_factors``
            (the vorticity equation passes them with the velocity negated, giving ``-N``).
    Returns:
        ``[..., n, n//2+1]`` spectrum of ``u w_x + v w_y``.
    """
    factors = grid.advection_factors if factors is None else factors
    factors = factors.reshape(4, *([1] * (w_hat.ndim - 2)), *w_hat.shape[-2:])
    u, v, w_x, w_y = grid.to_physical(w_hat.unsqueeze(0) * factors).unbind(0)
    product = torch.mul(u, w_x).addcmul_(v, w_y)
    return grid.to_spectral(product).mul_(grid.dealias)


def advection(w: torch.Tensor, grid: SpectralGrid) -> torch.Tensor:
    """Physical-space advection term ``u . grad w`` of ``w`` ``[..., n, n]`` (dealiased)."""
    return grid.to_physical(advection_hat(grid.to_spectral(w), grid))
