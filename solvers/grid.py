"""Spectral grid on the periodic unit square: wavenumbers, Laplacian, 2/3 dealias mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SpectralGrid:
    """Wavenumbers of an ``n x n`` periodic grid in the ``rfft2`` layout.

    Physical fields are ``[..., n, n]`` with ``w[..., i, j]`` at ``(x, y) = (i/n, j/n)``, so
    dimension ``-2`` is x and dimension ``-1`` (the halved one after ``rfft2``) is y.
    Spectral fields are ``[..., n, n//2 + 1]`` complex.

    Attributes (all precomputed, broadcastable to ``[n, n//2 + 1]``):
        kx, ky:    angular wavenumbers ``2*pi*k`` along x and y.
        k2:        ``|2*pi*k|^2``; the Laplacian is ``-k2``.
        inv_k2:    ``1/k2`` with the mean mode set to 0 (solves ``-lap psi = w``).
        dealias:   the 2/3-rule mask (1 where both ``|k_x|, |k_y| < n/3``).
        wavenumber_magnitude: ``|k|`` in cycles per unit length.
        shell:     integer shell ``round(|k|)``, clamped to ``n/2`` (int64): the bins of every
            shell-summed spectrum and of the per-shell normalisation.
        advection_factors: ``[4, n, n//2+1]`` complex multipliers taking ``w_hat`` to the
            spectra of ``(u, v, d_x w, d_y w)``: ``(i k_y, -i k_x) / |k|^2`` and ``(i k_x, i k_y)``.
    """

    n: int
    device: torch.device | str = "cpu"
    dtype: torch.dtype = torch.float64
    kx: torch.Tensor = field(init=False, repr=False)
    ky: torch.Tensor = field(init=False, repr=False)
    k2: torch.Tensor = field(init=False, repr=False)
    inv_k2: torch.Tensor = field(init=False, repr=False)
    dealias: torch.Tensor = field(init=False, repr=False)
    wavenumber_magnitude: torch.Tensor = field(init=False, repr=False)
    shell: torch.Tensor = field(init=False, repr=False)
    advection_factors: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n < 4 or self.n % 2:
            raise ValueError(f"grid size must be an even integer >= 4, got {self.n}")
        set_ = object.__setattr__
        set_(self, "device", torch.device(self.device))
        kwargs = dict(device=self.device, dtype=self.dtype)
        cycles_x = torch.fft.fftfreq(self.n, d=1.0 / self.n, **kwargs)[:, None]
        cycles_y = torch.fft.rfftfreq(self.n, d=1.0 / self.n, **kwargs)[None, :]
        kx = 2 * torch.pi * cycles_x
        ky = 2 * torch.pi * cycles_y
        k2 = kx**2 + ky**2
        inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        cutoff = self.n / 3.0
        dealias = ((cycles_x.abs() < cutoff) & (cycles_y.abs() < cutoff)).to(self.dtype)
        set_(self, "kx", kx)
        set_(self, "ky", ky)
        set_(self, "k2", k2)
        set_(self, "inv_k2", inv_k2)
        set_(self, "dealias", dealias)
        set_(self, "wavenumber_magnitude", torch.sqrt(cycles_x**2 + cycles_y**2))
        set_(self, "shell", torch.round(self.wavenumber_magnitude).long().clamp(max=self.n // 2))
        zero = torch.zeros_like(k2)
        factors = torch.stack(
            (
                torch.complex(zero, ky * inv_k2),  # u = d_y psi,  psi_hat = w_hat / |k|^2
                torch.complex(zero, -kx * inv_k2),  # v = -d_x psi
                torch.complex(zero, kx + zero),  # d_x w
                torch.complex(zero, ky + zero),  # d_y w
            )
        )
        set_(self, "advection_factors", factors)

    @property
    def complex_dtype(self) -> torch.dtype:
        return torch.complex128 if self.dtype == torch.float64 else torch.complex64

    @property
    def spacing(self) -> float:
        return 1.0 / self.n

    def coordinates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)``, each ``[n, n]``, with ``x[i, j] = i/n`` and ``y[i, j] = j/n``."""
        s = torch.arange(self.n, device=self.device, dtype=self.dtype) / self.n
        return torch.meshgrid(s, s, indexing="ij")

    def to_spectral(self, w: torch.Tensor) -> torch.Tensor:
        """``[..., n, n]`` real -> ``[..., n, n//2+1]`` complex (unnormalised rfft2)."""
        return torch.fft.rfft2(w)

    def to_physical(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_spectral`."""
        return torch.fft.irfft2(w_hat, s=(self.n, self.n))
