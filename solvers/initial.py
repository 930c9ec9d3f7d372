"""Initial vorticity fields: Gaussian random fields, Taylor-Green vortices, fields from .npy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from solvers.grid import SpectralGrid
from solvers.random import MemberRandom


def gaussian_random_field(
    grid: SpectralGrid, rng: MemberRandom, alpha: float = 2.5, tau: float = 7.0
) -> torch.Tensor:
    """Gaussian random field with covariance ``sigma_g^2 (-lap + tau^2)^(-alpha)``.

    Fourier coefficients ``n^2 sqrt(2) sigma_g (4 pi^2 |k|^2 + tau^2)^(-alpha/2) (a + i b)``
    with ``a, b`` standard normal and ``sigma_g = tau^(alpha - 1)``; mean mode zero; the field
    is the real part of the inverse FFT (numpy normalisation).

    Returns:
        ``[members, n, n]`` in the grid's dtype.
    """
    n = grid.n
    cycles = torch.fft.fftfreq(n, d=1.0 / n, device=grid.device, dtype=grid.dtype)
    k2 = 4 * math.pi**2 * (cycles[:, None] ** 2 + cycles[None, :] ** 2)
    sigma_g = tau ** (alpha - 1)
    amplitude = n**2 * math.sqrt(2.0) * sigma_g * (k2 + tau**2) ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    z = rng.randn(2, n, n, device=grid.device, dtype=grid.dtype)
    coeffs = amplitude * torch.complex(z[:, 0], z[:, 1])
    return torch.fft.ifft2(coeffs).real


def taylor_green(grid: SpectralGrid, wavenumber: int = 1, amplitude: float = 1.0) -> torch.Tensor:
    """Taylor-Green vorticity ``A * 2 k sin(2 pi k x) sin(2 pi k y) * 2 pi``, ``[n, n]``.

    It is an exact steady solution of the Euler equations (the advection term vanishes), so
    under viscosity ``nu`` and drag ``r`` it decays as ``exp(-(nu * 2 (2 pi k)^2 + r) t)``.
    """
    x, y = grid.coordinates()
    kk = 2 * math.pi * wavenumber
    return amplitude * 2 * kk * torch.sin(kk * x) * torch.sin(kk * y)


def load_field(path: str | Path) -> np.ndarray:
    """Load a vorticity field ``[N, N]`` or ``[members, N, N]`` from ``.npy`` as ``[members, N, N]``.

    Raises:
        ValueError: with a one-line message naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        field = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one user error
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if field.ndim == 2:
        field = field[None]
    if field.ndim != 3 or field.shape[-1] != field.shape[-2]:
        raise ValueError(f"{path}: expected shape [N, N] or [members, N, N], got {list(field.shape)}")
    if field.shape[-1] < 4 or field.shape[-1] % 2:
        raise ValueError(f"{path}: grid size N must be even and >= 4, got N = {field.shape[-1]}")
    if not np.issubdtype(field.dtype, np.floating) and not np.issubdtype(field.dtype, np.integer):
        raise ValueError(f"{path}: expected a real array, got dtype {field.dtype}")
    bad = ~np.isfinite(field)
    if bad.any():
        member, i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{path}: non-finite value at member {member}, index ({i}, {j})")
    return field.astype(np.float64, copy=False)
