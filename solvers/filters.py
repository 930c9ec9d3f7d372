"""Fine-to-coarse maps: sub-sampling and Gaussian filtering with spectral truncation."""

from __future__ import annotations

import torch

from solvers.grid import SpectralGrid


def subsample(w: torch.Tensor, n_coarse: int) -> torch.Tensor:
    """Keep every ``N/n_coarse``-th point: ``[..., N, N] -> [..., n_coarse, n_coarse]``."""
    n = w.shape[-1]
    if n % n_coarse:
        raise ValueError(f"coarse size {n_coarse} does not divide fine size {n}")
    step = n // n_coarse
    return w[..., ::step, ::step]


def truncate_spectrum(w_hat: torch.Tensor, n_fine: int, n_coarse: int) -> torch.Tensor:
    """Keep the modes a ``n_coarse`` grid resolves, rescaled for the unnormalised ``rfft2``.

    ``[..., n_fine, n_fine//2+1] -> [..., n_coarse, n_coarse//2+1]``; the coarse Nyquist row
    and column are set to zero so the result is the spectrum of a real field.
    """
    half = n_coarse // 2
    scale = (n_coarse / n_fine) ** 2
    rows = torch.cat((w_hat[..., :half, : half + 1], w_hat[..., n_fine - half :, : half + 1]), dim=-2)
    out = rows * scale
    out[..., half, :] = 0
    out[..., :, half] = 0
    return out


def gaussian_kernel_hat(grid: SpectralGrid, width: float) -> torch.Tensor:
    """Transfer function of a Gaussian filter of width ``delta``: ``exp(-delta^2 |k|^2 / 24)``."""
    return torch.exp(-(width**2) * grid.k2 / 24.0)


class LESFilter:
    """Gaussian filter of width ``delta`` followed by spectral truncation to the coarse grid.

    Args:
        fine, coarse: spectral grids (``fine.n`` a multiple of ``coarse.n``).
        width: filter width ``delta``; default ``2 / coarse.n`` (twice the coarse spacing).
    """

    def __init__(self, fine: SpectralGrid, coarse: SpectralGrid, width: float | None = None) -> None:
        if fine.n % coarse.n:
            raise ValueError(f"coarse size {coarse.n} does not divide fine size {fine.n}")
        self.fine, self.coarse = fine, coarse
        self.width = 2.0 / coarse.n if width is None else float(width)
        self.kernel_hat = gaussian_kernel_hat(fine, self.width)

    def apply_hat(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Fine spectrum ``[..., N, N//2+1]`` -> filtered coarse spectrum ``[..., n, n//2+1]``."""
        return truncate_spectrum(w_hat * self.kernel_hat, self.fine.n, self.coarse.n)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """Fine field ``[..., N, N]`` -> filtered coarse field ``[..., n, n]``."""
        return self.coarse.to_physical(self.apply_hat(self.fine.to_spectral(w)))
