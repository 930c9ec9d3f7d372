"""Variance-exploding SDE and its denoising score-matching loss (Song et al. 2021).

Forward SDE ``dx = g(t) dW`` with ``g(t) = s^t`` (``s`` = 30 in the paper); the perturbation
kernel is ``x_t | x_0 ~ N(x_0, sigma_t^2 I)`` with

    sigma_t^2 = int_0^t s^{2u} du = (s^{2t} - 1) / (2 ln s).

The score network is parameterised as ``score(x, t) = F(x, t) / sigma_t`` and trained with the
weighting ``lambda(t) = sigma_t^2``:

    L = E_{t ~ U(eps, 1), z ~ N(0, I)} || sigma_t score(x_0 + sigma_t z, t) + z ||^2.

>>> sde = VESDE(30.0)
>>> round(float(sde.sigma(torch.tensor(1.0))), 4)
11.4961
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class VESDE:
    """The VE SDE with ``g(t) = s^t``: ``sigma(t)``, ``g(t)`` and sampling of ``x_t``.

    Args:
        s: the scale ``s > 1`` (``sde_sigma``).
    """

    def __init__(self, s: float = 30.0) -> None:
        if s <= 1:
            raise ValueError(f"VE SDE scale must exceed 1, got {s}")
        self.s = float(s)
        self.log_s = math.log(self.s)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Marginal std ``sigma_t = sqrt((s^{2t} - 1) / (2 ln s))``, same shape as ``t``."""
        return torch.sqrt(torch.expm1(2 * t * self.log_s) / (2 * self.log_s))

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """Diffusion coefficient ``g(t) = s^t``, same shape as ``t``."""
        return torch.exp(t * self.log_s)

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = x_0 + sigma_t z`` for ``x0 [B, ...]``, ``t [B]``, ``noise [B, ...]``."""
        return x0 + _expand(self.sigma(t), x0) * noise


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` -> ``[B, 1, ..., 1]`` broadcastable to ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class DenoisingScoreMatchingLoss:
    """Per-sample DSM loss ``|| sigma_t score(x_t, t) + z ||^2`` (mean over field entries): ``[B]``.

    Args:
        sde: the VE SDE.
        t_min: smallest training time (``t ~ U(t_min, 1)``; 1e-5 in the paper).

    Called as ``loss(score_fn, x0, t, noise)`` with ``score_fn(x_t, t) -> [B, ...]``; ``t`` and
    ``noise`` are passed in so that randomness stays with the caller.
    """

    def __init__(self, sde: VESDE, t_min: float = 1e-5) -> None:
        self.sde, self.t_min = sde, t_min

    def sample_time(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``t ~ U(t_min, 1)``, ``[batch]``."""
        u = torch.rand(batch, generator=generator, device=device)
        return self.t_min + (1 - self.t_min) * u

    def __call__(self, score_fn: ScoreFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x_t = self.sde.perturb(x0, t, noise)
        residual = _expand(self.sde.sigma(t), x0) * score_fn(x_t, t) + noise
        return residual.pow(2).flatten(1).mean(1)
