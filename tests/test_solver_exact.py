"""The solver against exact solutions (float64).

* Taylor-Green: ``w = 2 (2 pi k) sin(2 pi k x) sin(2 pi k y)`` has zero advection and decays as
  ``exp(-(nu |2 pi k|^2 + r) t)`` with ``|2 pi k|^2 = 2 (2 pi k)^2``.
* Laminar forced response: any ``w = g(x + y)`` has zero advection, so from ``w = 0`` the
  Kolmogorov forcing (wavevector (1, 1)) gives ``w = f (1 - exp(-lambda t)) / lambda`` with
  ``lambda = nu 8 pi^2 + r``.
"""

from __future__ import annotations

import math

import pytest
import torch

from solvers.forcing import kolmogorov_forcing
from solvers.grid import SpectralGrid
from solvers.initial import taylor_green
from solvers.navier_stokes import VorticityEquation
from solvers.simulation import Simulation

SCHEMES = ["cn_euler", "cn_rk3"]


def final_state(sim: Simulation, w0: torch.Tensor, n_steps: int) -> torch.Tensor:
    *_, last = sim.run(w0, list(range(w0.shape[0])), n_steps, n_steps)
    return last.vorticity


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("drag", [0.0, 0.1])
def test_taylor_green_decay_within_1e_4_relative(scheme: str, drag: float) -> None:
    grid = SpectralGrid(32, dtype=torch.float64)
    nu, dt, t_end, k = 1e-2, 1e-3, 0.5, 2
    w0 = taylor_green(grid, wavenumber=k)[None]
    sim = Simulation(VorticityEquation(grid, nu, drag), dt, scheme)
    w = final_state(sim, w0, round(t_end / dt))
    exact = w0 * math.exp(-(nu * 2 * (2 * math.pi * k) ** 2 + drag) * t_end)
    assert (w - exact).abs().max() / exact.abs().max() < 1e-4


@pytest.mark.parametrize("scheme", SCHEMES)
def test_laminar_forced_response_from_rest_within_1e_4_relative(scheme: str) -> None:
    grid = SpectralGrid(32, dtype=torch.float64)
    nu, drag, dt, t_end = 1e-2, 0.05, 1e-3, 1.0
    forcing = kolmogorov_forcing(grid, 0.1)
    sim = Simulation(VorticityEquation(grid, nu, drag, forcing=forcing), dt, scheme)
    w = final_state(sim, torch.zeros(1, 32, 32, dtype=torch.float64), round(t_end / dt))
    rate = nu * 8 * math.pi**2 + drag
    exact = forcing * (1 - math.exp(-rate * t_end)) / rate
    assert (w[0] - exact).abs().max() / exact.abs().max() < 1e-4
