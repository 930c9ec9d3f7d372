"""The 2D vorticity equation split into explicit and implicit parts (the IMEX interface).

    d w/dt = -u . grad w + f  +  C            (explicit: advection, forcing, closure C)
             + nu lap w - r w                 (implicit: viscosity and linear drag)

with ``u = grad^perp psi`` and ``lap psi = -w`` on the periodic unit square. The stochastic
forcing ``sigma xi`` is not part of the ODE: it is added as a Wiener increment after each step
(see :mod:`solvers.forcing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from solvers.grid import SpectralGrid
from solvers.spectral_ops import advection_hat


@dataclass
class VorticityEquation:
    """IMEX split of the vorticity equation, state kept in Fourier space.

    Args:
        grid: the spectral grid (sets device, dtype, n).
        viscosity: ``nu``.
        drag: linear drag ``r`` (0 for the main case).
        forcing: physical ``[n, n]`` deterministic forcing ``f`` (or None for f = 0).
        advect: include ``-u . grad w`` (False for the missing-physics coarse model, where the
            closure supplies it).

    The closure term is an attribute, ``closure_hat`` (``[members, n, n//2+1]`` or None), set
    by the caller between steps and treated explicitly, as in the paper's coupling.
    """

    grid: SpectralGrid
    viscosity: float
    drag: float = 0.0
    forcing: torch.Tensor | None = None
    advect: bool = True
    closure_hat: torch.Tensor | None = None
    forcing_hat: torch.Tensor | None = field(init=False, repr=False)
    linear_rate: torch.Tensor = field(init=False, repr=False)
    _inverse_cache: dict[float, torch.Tensor] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        g = self.grid
        self.forcing_hat = None if self.forcing is None else g.to_spectral(self.forcing.to(g.device, g.dtype))
        self.linear_rate = self.viscosity * g.k2 + self.drag

    def explicit_terms(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``-N(w) + f + C`` in Fourier space, ``[members, n, n//2+1]``."""
        rhs = advection_hat(w_hat, self.grid).neg_() if self.advect else torch.zeros_like(w_hat)
        if self.forcing_hat is not None:
            rhs.add_(self.forcing_hat)
        if self.closure_hat is not None:
            rhs.add_(self.closure_hat)
        return rhs

    def implicit_terms(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``(nu lap - r) w`` in Fourier space: ``-(nu |k|^2 + r) w_hat``."""
        return -self.linear_rate * w_hat

    def implicit_solve(self, w_hat: torch.Tensor, step: float) -> torch.Tensor:
        """Solve ``y - step * implicit_terms(y) = w_hat``: ``y = w_hat / (1 + step (nu|k|^2 + r))``."""
        inverse = self._inverse_cache.get(step)
        if inverse is None:
            inverse = self._inverse_cache[step] = 1.0 / (1.0 + step * self.linear_rate)
        return w_hat * inverse

    def tendency(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Full right-hand side ``explicit + implicit`` (used by a-priori checks)."""
        return self.explicit_terms(w_hat) + self.implicit_terms(w_hat)
