"""Flow matching with the linear (rectified) path (Lipman et al. 2023; latent use: arXiv 2602.17089).

Path between noise ``z ~ N(0, I)`` at ``t = 0`` and data ``x_1`` at ``t = 1``:

    x_t = (1 - t) z + t x_1,        target velocity  u = x_1 - z,

loss ``|| v(x_t, t) - (x_1 - z) ||^2`` with ``t ~ U(0, 1)``; sampling integrates
``dx/dt = v(x, t)`` from ``z`` with Euler steps (1-2 steps suffice in a good latent space).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FlowMatchingLoss:
    """Per-sample loss ``mean || v(x_t, t) - (x_1 - z) ||^2``: ``[B]``.

    Called as ``loss(velocity_fn, x1, t, noise)`` with ``t [B]`` in ``[0, 1]`` and ``noise``
    (= ``z``) shaped like ``x1``; randomness stays with the caller.
    """

    def sample_time(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``t ~ U(0, 1)``, ``[batch]``."""
        return torch.rand(batch, generator=generator, device=device)

    def __call__(self, velocity_fn: VelocityFn, x1: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(-1, *([1] * (x1.dim() - 1)))
        x_t = (1 - tt) * noise + tt * x1
        return (velocity_fn(x_t, t) - (x1 - noise)).pow(2).flatten(1).mean(1)


@torch.no_grad()
def flow_euler(velocity_fn: VelocityFn, z: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """Euler integration of ``dx/dt = v(x, t)`` from ``x(0) = z`` to ``t = 1`` in ``steps`` equal steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x, h = z, 1.0 / steps
    for k in range(steps):
        t = torch.full((x.shape[0],), k * h, dtype=x.dtype, device=x.device)
        x = x + h * velocity_fn(x, t)
    return x
