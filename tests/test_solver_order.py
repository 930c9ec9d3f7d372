"""Measured temporal order of each IMEX scheme on a nonlinear, forced, viscous flow (float64).

Reference-free: with solutions ``u_h`` at ``h = dt, dt/2, dt/4, dt/8``, the observed order is
``p = log2(|u_h - u_{h/2}| / |u_{h/2} - u_{h/4}|)``; the finest estimate must be within 0.2 of
the nominal order (1 for the paper's Crank-Nicolson/Euler, 2 for Crank-Nicolson/RK3).
"""

from __future__ import annotations

import math

import pytest
import torch

from solvers.forcing import kolmogorov_forcing
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field
from solvers.navier_stokes import VorticityEquation
from solvers.random import MemberRandom
from solvers.simulation import Simulation
from solvers.stepping import SCHEMES


def solve(scheme: str, dt: float, t_end: float) -> torch.Tensor:
    grid = SpectralGrid(32, dtype=torch.float64)
    w0 = 4 * gaussian_random_field(grid, MemberRandom([7]))
    eq = VorticityEquation(grid, 2e-3, 0.0, forcing=kolmogorov_forcing(grid))
    steps = round(t_end / dt)
    *_, last = Simulation(eq, dt, scheme).run(w0, [0], steps, steps)
    return last.vorticity


@pytest.mark.parametrize("scheme", ["cn_euler", "cn_rk3"])
def test_observed_order_matches_nominal_within_0_25(scheme: str) -> None:
    t_end, dt = 0.2, 0.01
    solutions = [solve(scheme, dt / 2**i, t_end) for i in range(4)]
    gaps = [(solutions[i] - solutions[i + 1]).norm().item() for i in range(3)]
    orders = [math.log2(gaps[i] / gaps[i + 1]) for i in range(2)]
    assert abs(orders[-1] - SCHEMES[scheme].order) < 0.2, (gaps, orders)
