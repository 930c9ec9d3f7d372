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
    by the caller between steps and treated explicitly, as in the paper's coupling. Without
    advection the explicit part ``f + C`` is constant while the closure is held, so it is summed
    once when ``closure_hat`` is set, not on every step.
    """

    grid: SpectralGrid
    viscosity: float
    drag: float = 0.0
    forcing: torch.Tensor | None = None
    advect: bool = True
    forcing_hat: torch.Tensor | None = field(init=False, repr=False)
    implicit_diagonal: torch.Tensor = field(init=False, repr=False)
    _negative_advection_factors: torch.Tensor = field(init=False, repr=False)
    _closure_hat: torch.Tensor | None = field(default=None, init=False, repr=False)
    _held_explicit_hat: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        g = self.grid
        self.forcing_hat = None if self.forcing is None else g.to_spectral(self.forcing.to(g.device, g.dtype))
        self.implicit_diagonal = -(self.viscosity * g.k2 + self.drag)
        # velocity factors negated: the advection pass yields -N(w) directly
        sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=g.dtype, device=g.device)
        self._negative_advection_factors = g.advection_factors * sign[:, None, None]
        self.closure_hat = None

    @property
    def closure_hat(self) -> torch.Tensor | None:
        """The held closure term ``C`` in Fourier space, ``[members, n, n//2+1]`` or None."""
        return self._closure_hat

    @closure_hat.setter
    def closure_hat(self, value: torch.Tensor | None) -> None:
        self._closure_hat = value
        terms = [t for t in (self.forcing_hat, value) if t is not None]
        self._held_explicit_hat = None if self.advect or not terms else (
            terms[0] if len(terms) == 1 else torch.add(terms[0], terms[1]))

    def explicit_terms(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``-N(w) + f + C`` in Fourier space, ``[members, n, n//2+1]``.

        Without advection the result is the held ``f + C`` (``[n, n//2+1]`` for a forcing shared
        by all members and no closure); callers must not modify it in place.
        """
        if not self.advect:
            return torch.zeros_like(w_hat) if self._held_explicit_hat is None else self._held_explicit_hat
        rhs = advection_hat(w_hat, self.grid, self._negative_advection_factors)
        for term in (self.forcing_hat, self._closure_hat):
            if term is not None:
                rhs.add_(term)
        return rhs

    def implicit_terms(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``(nu lap - r) w`` in Fourier space: ``-(nu |k|^2 + r) w_hat``."""
        return self.implicit_diagonal * w_hat

    def tendency(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Full right-hand side ``explicit + implicit`` (used by a-priori checks)."""
        return self.explicit_terms(w_hat) + self.implicit_terms(w_hat)
