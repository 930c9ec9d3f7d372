"""IMEX time steppers for equations with a diagonal implicit part (pseudo-spectral equations).

An equation provides ``explicit_terms(u)`` (``F``) and ``implicit_diagonal`` (``D``, so that the
implicit part is ``G u = D u``: diagonal in Fourier space, e.g. ``-(nu |k|^2 + r)``). All schemes
here are low-storage Runge-Kutta methods for the explicit part paired with Crank-Nicolson for
the implicit part (Spalart, Moser & Rogers 1991, J. Comput. Phys. 96; tableaux as in Williamson
1980 / Carpenter & Kennedy 1994). For stage ``k``::

    h   <- F(u) + beta_k h
    mu  =  dt (alpha_{k+1} - alpha_k) / 2
    u   <- (1 - mu D)^{-1} (u + gamma_k dt h + mu D u)  =  a_k u + b_k h,
    a_k = (1 + mu D) / (1 - mu D),   b_k = gamma_k dt / (1 - mu D)

with ``a_k, b_k`` precomputed once, so a stage costs two passes over the state besides ``F``.
With one stage (alpha = [0, 1], beta = [0], gamma = [1]) this is the paper's scheme,
Crank-Nicolson for ``D`` with forward Euler for ``F``::

    w_hat <- (w_hat + dt F(w_hat) - dt/2 (nu|k|^2 + r) w_hat) / (1 + dt/2 (nu|k|^2 + r))

Temporal orders (measured in tests/test_solver_order.py): ``cn_euler`` 1, ``cn_rk3`` 2
(Crank-Nicolson caps the coupled scheme at 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch


class ImplicitExplicitODE(Protocol):
    """``du/dt = explicit_terms(u) + implicit_diagonal * u``.

    ``explicit_terms`` may return a tensor that broadcasts against ``u`` (e.g. a forcing shared
    by all members) and one the equation still holds: the stepper never modifies it in place.
    """

    implicit_diagonal: torch.Tensor

    def explicit_terms(self, u: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class LowStorageTableau:
    """Coefficients of a low-storage IMEX RK/Crank-Nicolson scheme and its nominal order."""

    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    gammas: tuple[float, ...]
    order: int
    reference: str

    def __post_init__(self) -> None:
        if not (len(self.alphas) == len(self.betas) + 1 == len(self.gammas) + 1):
            raise ValueError("a tableau needs len(alphas) == len(betas) + 1 == len(gammas) + 1")


CN_EULER = LowStorageTableau(
    alphas=(0.0, 1.0), betas=(0.0,), gammas=(1.0,), order=1,
    reference="Crank-Nicolson / forward Euler, the seed paper's scheme",
)
CN_RK3 = LowStorageTableau(
    alphas=(0.0, 1 / 3, 3 / 4, 1.0),
    betas=(0.0, -5 / 9, -153 / 128),
    gammas=(1 / 3, 15 / 16, 8 / 15),
    order=2,
    reference="Williamson (1980) low-storage RK3 with Crank-Nicolson (Spalart et al. 1991)",
)

SCHEMES: dict[str, LowStorageTableau] = {"cn_euler": CN_EULER, "cn_rk3": CN_RK3}

StepFn = Callable[[torch.Tensor], torch.Tensor]


def imex_step(equation: ImplicitExplicitODE, dt: float, tableau: LowStorageTableau) -> StepFn:
    """Return ``step(u) -> u`` advancing ``equation`` by ``dt`` with ``tableau`` (module docstring)."""
    diagonal = equation.implicit_diagonal
    stages = []
    for k, (beta, gamma) in enumerate(zip(tableau.betas, tableau.gammas)):
        mu = 0.5 * dt * (tableau.alphas[k + 1] - tableau.alphas[k])
        inverse = 1.0 / (1.0 - mu * diagonal)
        stages.append((beta, (1.0 + mu * diagonal) * inverse, gamma * dt * inverse))

    def step(u: torch.Tensor) -> torch.Tensor:
        h = None
        for beta, a, b in stages:
            explicit = equation.explicit_terms(u)
            h = explicit if h is None else explicit + beta * h
            u = torch.mul(u, a).addcmul_(h, b)
        return u

    return step


def make_stepper(equation: ImplicitExplicitODE, dt: float, scheme: str = "cn_euler") -> StepFn:
    """Look up ``scheme`` by name (``cn_euler`` or ``cn_rk3``) and build its step function."""
    try:
        tableau = SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"unknown time scheme {scheme!r}; expected one of {sorted(SCHEMES)}") from None
    return imex_step(equation, dt, tableau)
