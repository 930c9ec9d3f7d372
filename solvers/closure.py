"""The closure protocol and the paper's hold-and-refresh coupling.

Every closure, learned or classical, is a callable

    closure(vorticity: [members, n, n], time: float, rng: MemberRandom) -> [members, n, n]

returning the closure term ``C`` added to the coarse right-hand side (see
:mod:`solvers.closure_terms` for the sign convention). Row ``m`` of the result may depend
only on row ``m`` of the input and on member ``m``'s random stream, so results do not depend
on how members are batched. The solver never imports :mod:`models`.

A closure that works on Fourier coefficients anyway (a learned closure whitens its input and
output per shell) may also offer ``spectral(vorticity_hat, time, rng) -> closure_hat``
(:class:`SpectralClosure`), equal to ``rfft2(closure(irfft2(vorticity_hat)))`` to float
rounding; the coupling then hands it the solver's coefficients and takes its coefficients back.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from solvers.grid import SpectralGrid
from solvers.random import MemberRandom


@runtime_checkable
class Closure(Protocol):
    """``(vorticity [M, n, n], time, rng) -> closure term [M, n, n]``."""

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor: ...


@runtime_checkable
class SpectralClosure(Closure, Protocol):
    """A :class:`Closure` with the Fourier-space form ``spectral(vorticity_hat [M, n, n//2+1], time,
    rng) -> closure_hat [M, n, n//2+1]`` (``rfft2`` coefficients, unnormalised as :class:`SpectralGrid`'s)."""

    def spectral(self, vorticity_hat: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor: ...


class HeldClosure:
    """Sample the closure every ``every`` steps and hold it in between (the paper's coupling).

    Between samples the held term is optionally perturbed by white noise of standard deviation
    ``hold_noise_std`` (fresh each step, from the member's own stream).

    Args:
        closure: any :class:`Closure`.
        every: steps between fresh samples (``closure_every``, 5 in the paper).
        hold_noise_std: white-noise std added to the held term on held steps (0 = off).
    """

    def __init__(self, closure: Closure, every: int = 5, hold_noise_std: float = 0.0) -> None:
        if every < 1:
            raise ValueError(f"closure_every must be >= 1, got {every}")
        self.closure, self.every, self.hold_noise_std = closure, int(every), float(hold_noise_std)
        self.held_hat: torch.Tensor | None = None
        self.spectral = isinstance(closure, SpectralClosure)  # sampled on the coefficients (module docstring)

    def changes_at(self, step: int) -> bool:
        """Whether the term of ``step`` differs from the previous step's (a fresh sample or hold noise).

        On the other steps the solver keeps the term it has and skips :meth:`term_hat`.
        """
        return self.held_hat is None or step % self.every == 0 or self.hold_noise_std > 0

    def term_hat(self, step: int, vorticity_hat: torch.Tensor, time: float, rng: MemberRandom,
                 grid: SpectralGrid) -> torch.Tensor:
        """``rfft2`` of the closure term for ``step`` (a fresh sample when ``step % every == 0``),
        ``[M, n, n//2+1]``, given the vorticity's coefficients on ``grid``.

        A :class:`SpectralClosure` is sampled on the coefficients; any other closure on the
        physical field, its term transformed. ``rng`` must already be keyed by the step; a fresh
        sample uses ``rng.spawn(0)`` and the hold noise ``rng.spawn(1)``.
        """
        if self.held_hat is None or step % self.every == 0:
            self.held_hat = self._sample_hat(vorticity_hat, time, rng.spawn(0), grid)
            return self.held_hat
        if self.hold_noise_std > 0:
            noise = rng.spawn(1).randn(grid.n, grid.n, device=grid.device, dtype=grid.dtype)
            return self.held_hat + self.hold_noise_std * grid.to_spectral(noise)
        return self.held_hat

    def _sample_hat(self, vorticity_hat: torch.Tensor, time: float, rng: MemberRandom, grid: SpectralGrid) -> torch.Tensor:
        if self.spectral:
            return self.closure.spectral(vorticity_hat, time, rng).to(vorticity_hat.dtype)
        return grid.to_spectral(self.closure(grid.to_physical(vorticity_hat), time, rng).to(grid.dtype))

    def keep(self, rows: torch.Tensor) -> None:
        """Drop the held terms of members no longer integrated (``rows`` indexes survivors)."""
        if self.held_hat is not None:
            self.held_hat = self.held_hat[rows]
