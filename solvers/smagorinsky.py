"""Smagorinsky and dynamic Smagorinsky closures for the LES case (vorticity form).

The subgrid vorticity flux is modelled as down-gradient diffusion with an eddy viscosity,

    sigma_i = bar(u_i w) - bar(u_i) bar(w) ~ -nu_t d_i bar(w),   nu_t = c Delta^2 |S|,
    C = -div(sigma) = div(nu_t grad bar(w)),

with ``|S| = sqrt(2 S_ij S_ij)`` of the resolved velocity and ``c = C_s^2`` (Smagorinsky 1963).
The dynamic model (Germano et al. 1991, least squares of Lilly 1992) computes ``c`` per member
from the resolved field with a Gaussian test filter of width ``alpha Delta`` (alpha = 2):

    L_i = hat(u_i w) - hat(u_i) hat(w),
    M_i = Delta^2 (hat(|S| d_i w) - alpha^2 |hat S| d_i hat(w)),
    c   = max(0, <L . M> / <M . M>)      (domain averages).
"""

from __future__ import annotations

import torch

from solvers.filters import gaussian_kernel_hat
from solvers.grid import SpectralGrid
from solvers.random import MemberRandom
from solvers.spectral_ops import streamfunction_hat


def resolved_fields(w_hat: torch.Tensor, grid: SpectralGrid) -> dict[str, torch.Tensor]:
    """Physical ``u, v, w_x, w_y`` and strain magnitude ``|S|`` of ``w_hat``, each ``[M, n, n]``."""
    psi = streamfunction_hat(w_hat, grid)
    kx, ky = grid.kx, grid.ky
    u, v, w_x, w_y, s11, s12 = grid.to_physical(
        torch.stack(
            (
                1j * ky * psi,  # u = d_y psi
                -1j * kx * psi,  # v = -d_x psi
                1j * kx * w_hat,
                1j * ky * w_hat,
                -kx * ky * psi,  # S11 = d_x u = d_x d_y psi
                0.5 * (kx**2 - ky**2) * psi,  # S12 = (d_y u + d_x v)/2 = (d_yy - d_xx) psi / 2
            )
        )
    ).unbind(0)
    strain = 2.0 * torch.sqrt(s11**2 + s12**2)  # sqrt(2 S_ij S_ij) with S22 = -S11
    return {"u": u, "v": v, "w_x": w_x, "w_y": w_y, "strain": strain}


def _eddy_diffusion(nu_t: torch.Tensor, fields: dict[str, torch.Tensor], grid: SpectralGrid) -> torch.Tensor:
    """``div(nu_t grad w)`` on the grid, dealiased, ``[M, n, n]``."""
    flux_hat = grid.to_spectral(torch.stack((nu_t * fields["w_x"], nu_t * fields["w_y"])))
    div_hat = 1j * grid.kx * flux_hat[0] + 1j * grid.ky * flux_hat[1]
    return grid.to_physical(grid.dealias * div_hat)


class Smagorinsky:
    """Static Smagorinsky closure ``C = div(C_s^2 Delta^2 |S| grad w)``.

    Args:
        grid: the coarse grid.
        cs: Smagorinsky constant ``C_s`` (default 0.17).
        width: filter width ``Delta`` (default ``2 / n``, the LES filter's width).
    """

    def __init__(self, grid: SpectralGrid, cs: float = 0.17, width: float | None = None) -> None:
        self.grid, self.cs = grid, float(cs)
        self.width = 2.0 / grid.n if width is None else float(width)

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        g = self.grid
        fields = resolved_fields(g.to_spectral(vorticity.to(g.dtype)), g)
        nu_t = (self.cs * self.width) ** 2 * fields["strain"]
        return _eddy_diffusion(nu_t, fields, g).to(vorticity.dtype)


class DynamicSmagorinsky:
    """Dynamic Smagorinsky: ``c`` from the Germano identity, per member, clipped at 0.

    Args:
        grid: the coarse grid.
        width: grid filter width ``Delta`` (default ``2 / n``).
        test_ratio: test-filter width over grid-filter width (``alpha``, default 2).
    """

    def __init__(self, grid: SpectralGrid, width: float | None = None, test_ratio: float = 2.0) -> None:
        self.grid, self.test_ratio = grid, float(test_ratio)
        self.width = 2.0 / grid.n if width is None else float(width)
        self.test_kernel = gaussian_kernel_hat(grid, self.test_ratio * self.width)

    def coefficient(self, w_hat: torch.Tensor, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        """Least-squares ``c = max(0, <L.M>/<M.M>)`` per member, ``[M, 1, 1]``.

        Args:
            w_hat: ``[M, n, n//2+1]`` resolved vorticity spectrum.
            fields: :func:`resolved_fields` of ``w_hat``.
        """
        g, kernel = self.grid, self.test_kernel

        def test_filter(a: torch.Tensor) -> torch.Tensor:
            return g.to_physical(kernel * g.to_spectral(a))

        w = g.to_physical(w_hat)
        test = resolved_fields(kernel * w_hat, g)  # velocity, gradient, strain of hat(w)
        w_test = g.to_physical(kernel * w_hat)
        delta2, alpha2 = self.width**2, self.test_ratio**2
        lm = mm = 0.0
        for velocity, gradient in (("u", "w_x"), ("v", "w_y")):
            leonard = test_filter(fields[velocity] * w) - test[velocity] * w_test
            model = delta2 * (
                test_filter(fields["strain"] * fields[gradient]) - alpha2 * test["strain"] * test[gradient]
            )
            lm = lm + (leonard * model).mean(dim=(-2, -1), keepdim=True)
            mm = mm + (model**2).mean(dim=(-2, -1), keepdim=True)
        return torch.clamp(lm / mm.clamp_min(torch.finfo(mm.dtype).tiny), min=0.0)

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        g = self.grid
        w_hat = g.to_spectral(vorticity.to(g.dtype))
        fields = resolved_fields(w_hat, g)
        nu_t = self.coefficient(w_hat, fields) * self.width**2 * fields["strain"]
        return _eddy_diffusion(nu_t, fields, g).to(vorticity.dtype)
