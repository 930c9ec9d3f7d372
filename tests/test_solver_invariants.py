"""Invariants of the discrete operators (float64).

* The dealiased advection term of a field band-limited to the 2/3 region conserves energy and
  enstrophy: ``<psi, N(w)> = <w, N(w)> = 0`` to round-off (relative 1e-12).
* The Q-Wiener shortcut ``xi_hat = b (Z(k) + conj Z(-k)) / 2`` equals ``rfft2(Re(ifft2(b Z)))``.
* ``E|xi_hat(k)|^2 = kappa b(k)^2`` away from the self-conjugate modes (Monte Carlo, 5 %).
* Smagorinsky closures only remove enstrophy: ``<w, C> <= 0``; the dynamic coefficient is >= 0.
"""

from __future__ import annotations

import math

import torch

from solvers.forcing import QWienerForcing
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field
from solvers.random import MemberRandom
from solvers.smagorinsky import DynamicSmagorinsky, Smagorinsky, resolved_fields
from solvers.spectral_ops import advection_hat, streamfunction_hat


def band_limited_field(grid: SpectralGrid, members: int = 3) -> torch.Tensor:
    w = 5 * gaussian_random_field(grid, MemberRandom(range(members)))
    return grid.to_physical(grid.dealias * grid.to_spectral(w))


def test_dealiased_advection_conserves_energy_and_enstrophy_to_1e_12() -> None:
    grid = SpectralGrid(48, dtype=torch.float64)
    w = band_limited_field(grid)
    w_hat = grid.to_spectral(w)
    n_phys = grid.to_physical(advection_hat(w_hat, grid))
    psi = grid.to_physical(streamfunction_hat(w_hat, grid))
    scale_w = (w.norm(dim=(-2, -1)) * n_phys.norm(dim=(-2, -1)))
    scale_psi = (psi.norm(dim=(-2, -1)) * n_phys.norm(dim=(-2, -1)))
    enstrophy_rate = (w * n_phys).sum(dim=(-2, -1)) / scale_w
    energy_rate = (psi * n_phys).sum(dim=(-2, -1)) / scale_psi
    assert enstrophy_rate.abs().max() < 1e-12
    assert energy_rate.abs().max() < 1e-12


def test_qwiener_shortcut_equals_real_part_of_inverse_fft() -> None:
    grid = SpectralGrid(16, dtype=torch.float64)
    noise = QWienerForcing(grid, sigma=1.0, alpha=0.005, kappa=10, dt=1e-3)
    rng_seeds, key = [3, 4], (0, 9)
    xi_hat = noise.xi_hat(MemberRandom(rng_seeds, key))
    z = MemberRandom(rng_seeds, key).randn(2, 16, 16, dtype=torch.float64) * math.sqrt(10)
    xi = torch.fft.ifft2(noise.b_full * torch.complex(z[:, 0], z[:, 1])).real
    torch.testing.assert_close(xi_hat, torch.fft.rfft2(xi), rtol=1e-12, atol=1e-9)


def test_qwiener_mode_variance_is_kappa_b_squared_within_5_percent() -> None:
    grid = SpectralGrid(16, dtype=torch.float64)
    noise = QWienerForcing(grid, sigma=1.0, alpha=0.005, kappa=10, dt=1e-3)
    samples = noise.xi_hat(MemberRandom(range(4000), (0, 0)))
    mode = (1, 2)  # not self-conjugate
    measured = samples[:, mode[0], mode[1]].abs().pow(2).mean()
    expected = 10 * noise.b_full[mode] ** 2
    assert abs(measured / expected - 1) < 0.05


def test_smagorinsky_closures_remove_enstrophy() -> None:
    grid = SpectralGrid(32, dtype=torch.float64)
    w = band_limited_field(grid, members=4)
    rng = MemberRandom(range(4))
    dynamic = DynamicSmagorinsky(grid)
    for closure in (Smagorinsky(grid), dynamic):
        c = closure(w, 0.0, rng)
        assert c.shape == w.shape and torch.isfinite(c).all()
        assert ((w * c).mean(dim=(-2, -1)) <= 0).all()
    w_hat = grid.to_spectral(w)
    assert (dynamic.coefficient(w_hat, resolved_fields(w_hat, grid)) >= 0).all()



def test_cn_euler_step_is_the_papers_update() -> None:
    """The fused stage ``a u + b h`` equals ``(w + dt F - dt/2 (nu|k|^2 + r) w) / (1 + dt/2 (nu|k|^2 + r))``."""
    from solvers.navier_stokes import VorticityEquation
    from solvers.stepping import make_stepper

    grid = SpectralGrid(16, dtype=torch.float64)
    forcing = band_limited_field(grid, members=1)[0]
    eq = VorticityEquation(grid, viscosity=1e-2, drag=0.1, forcing=forcing)
    u = grid.to_spectral(band_limited_field(grid))
    dt, rate = 0.05, 1e-2 * grid.k2 + 0.1
    explicit = -advection_hat(u, grid) + grid.to_spectral(forcing)
    expected = (u + dt * explicit - 0.5 * dt * rate * u) / (1 + 0.5 * dt * rate)
    torch.testing.assert_close(make_stepper(eq, dt, "cn_euler")(u), expected, rtol=1e-12, atol=1e-12)


def test_dynamic_coefficient_is_invariant_to_the_field_amplitude() -> None:
    """``L`` and ``M`` are both quadratic in ``w``, so ``c`` must not change when ``w -> a w``."""
    grid = SpectralGrid(32, dtype=torch.float64)
    dynamic = DynamicSmagorinsky(grid)
    w_hat = grid.to_spectral(band_limited_field(grid, members=2))
    c = dynamic.coefficient(w_hat, resolved_fields(w_hat, grid))
    c_scaled = dynamic.coefficient(7 * w_hat, resolved_fields(7 * w_hat, grid))
    assert (c > 0).all()
    torch.testing.assert_close(c_scaled, c, rtol=1e-10, atol=0)
