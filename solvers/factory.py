"""Build a ready-to-run :class:`~solvers.simulation.Simulation` from config sections.

Three models share the solver:

* ``full``: the whole vorticity equation (a DNS at the grid's resolution), with the stochastic
  forcing unless ``noise=False``;
* ``missing_physics``: forcing and viscosity only; the closure supplies ``H = -u.grad w + sigma xi``;
* ``les``: the full equation on the filtered field plus the closure ``C = -Pi``; the forcing is
  the filtered forcing ``filter(f)`` (the Gaussian filter of width ``filter_width``).
"""

from __future__ import annotations

from typing import Literal

import torch

from solvers.closure import Closure, HeldClosure
from solvers.config import CouplingConfig, PhysicsConfig, SolverConfig
from solvers.filters import gaussian_kernel_hat
from solvers.forcing import QWienerForcing, kolmogorov_forcing
from solvers.grid import SpectralGrid
from solvers.navier_stokes import VorticityEquation
from solvers.simulation import Simulation

Physics = Literal["full", "missing_physics", "les"]


def build_simulation(
    physics: PhysicsConfig,
    solver: SolverConfig,
    n: int,
    *,
    model: Physics = "full",
    closure: Closure | None = None,
    coupling: CouplingConfig | None = None,
    noise: bool = True,
    dt: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    filter_width: float | None = None,
) -> Simulation:
    """Assemble grid, equation, stochastic forcing and closure coupling for an ``n x n`` grid.

    Args:
        physics, solver, coupling: config sections (coupling defaults to the paper's).
        n: grid size.
        model: ``full``, ``missing_physics`` or ``les`` (see module docstring).
        closure: closure term provider (``missing_physics``/``les``); None means no closure.
        noise: include the Q-Wiener forcing (ignored for ``missing_physics``, where it is
            part of the closure term).
        dt, device, dtype: override the solver section.
        filter_width: LES filter width applied to the forcing (default ``2 / n``).
    """
    grid = SpectralGrid(
        n,
        device=solver.torch_device() if device is None else device,
        dtype=solver.torch_dtype if dtype is None else dtype,
    )
    step = solver.dt if dt is None else dt
    forcing = kolmogorov_forcing(grid, physics.forcing_amplitude)
    if model == "les":
        width = 2.0 / n if filter_width is None else filter_width
        forcing = grid.to_physical(gaussian_kernel_hat(grid, width) * grid.to_spectral(forcing))
    equation = VorticityEquation(
        grid,
        viscosity=physics.viscosity,
        drag=physics.drag,
        forcing=forcing,
        advect=model != "missing_physics",
    )
    stochastic = None
    if noise and model != "missing_physics" and physics.noise_sigma > 0:
        stochastic = QWienerForcing(grid, physics.noise_sigma, physics.noise_alpha, physics.noise_kappa, step)
    held = None
    if closure is not None:
        coupling = coupling or CouplingConfig()
        held = HeldClosure(closure, coupling.closure_every, coupling.hold_noise_std)
    return Simulation(equation, step, solver.scheme, noise=stochastic, closure=held)
