"""Deterministic forcing and the stochastic Q-Wiener forcing of the vorticity equation."""

from __future__ import annotations

import math

import torch

from solvers.grid import SpectralGrid
from solvers.random import MemberRandom


def kolmogorov_forcing(grid: SpectralGrid, amplitude: float = 0.1) -> torch.Tensor:
    """``f(x, y) = A (sin 2 pi (x + y) + cos 2 pi (x + y))``, ``[n, n]`` (the paper's, A = 0.1)."""
    x, y = grid.coordinates()
    phase = 2 * torch.pi * (x + y)
    return amplitude * (torch.sin(phase) + torch.cos(phase))


class QWienerForcing:
    """Spectrum of ``sigma xi`` for one step of a Q-Wiener process (Lord, Powell & Shardlow 2014).

    Per member and step: ``Z`` is a complex field on the full ``n x n`` Fourier grid whose real
    and imaginary parts are independent ``N(0, kappa)`` (the sum of ``kappa`` standard complex
    fields), scaled by ``b(lambda) = exp(-alpha |lambda|^2 / 2) n^2 / sqrt(dt)`` with
    ``lambda = 2 pi k``. ``xi = Re(ifft2(b Z))``; its ``rfft2`` spectrum is formed directly as
    ``b (Z(k) + conj Z(-k)) / 2`` on the half plane, which saves two FFTs and is exact.

    The step adds ``dt * sigma * xi_hat`` to ``w_hat`` (a full ``dt``), see :meth:`increment_hat`.

    Args:
        grid: spectral grid.
        sigma: amplitude (5e-5 in the paper).
        alpha: spectral decay (0.005).
        kappa: number of summed complex fields (10).
        dt: time step (enters ``b`` as ``1/sqrt(dt)``).
    """

    def __init__(self, grid: SpectralGrid, sigma: float, alpha: float, kappa: int, dt: float) -> None:
        self.grid, self.sigma, self.dt = grid, float(sigma), float(dt)
        self.kappa = int(kappa)
        n = grid.n
        cycles = torch.fft.fftfreq(n, d=1.0 / n, device=grid.device, dtype=grid.dtype)
        lam2 = (2 * torch.pi) ** 2 * (cycles[:, None] ** 2 + cycles[None, :] ** 2)
        self.b_full = torch.exp(-alpha * lam2 / 2) * n**2 / math.sqrt(dt)  # [n, n]
        self.half = n // 2 + 1

    def xi_hat(self, rng: MemberRandom) -> torch.Tensor:
        """``rfft2`` spectrum of ``xi`` for each member, ``[members, n, n//2+1]`` complex."""
        g, n = self.grid, self.grid.n
        z = rng.randn(2, n, n, device=g.device, dtype=g.dtype) * math.sqrt(self.kappa)
        z = torch.complex(z[:, 0], z[:, 1])  # [M, n, n]
        z_neg = torch.roll(torch.flip(z, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))  # Z(-k)
        return (self.b_full * (z + z_neg.conj()) / 2)[..., : self.half]

    def increment_hat(self, rng: MemberRandom) -> torch.Tensor:
        """``dt * sigma * xi_hat``: what one step adds to ``w_hat``."""
        return (self.dt * self.sigma) * self.xi_hat(rng)

    def field(self, rng: MemberRandom) -> torch.Tensor:
        """``sigma xi`` in physical space, ``[members, n, n]`` (part of the closure term H)."""
        return self.sigma * self.grid.to_physical(self.xi_hat(rng))
