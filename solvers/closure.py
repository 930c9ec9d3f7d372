"""The closure protocol and the paper's hold-and-refresh coupling.

Every closure, learned or classical, is a callable

    closure(vorticity: [members, n, n], time: float, rng: MemberRandom) -> [members, n, n]

returning the closure term ``C`` added to the coarse right-hand side (see
:mod:`solvers.closure_terms` for the sign convention). Row ``m`` of the result may depend
only on row ``m`` of the input and on member ``m``'s random stream, so results do not depend
on how members are batched. The solver never imports :mod:`models`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from solvers.random import MemberRandom


@runtime_checkable
class Closure(Protocol):
    """``(vorticity [M, n, n], time, rng) -> closure term [M, n, n]``."""

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor: ...


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
        self.held: torch.Tensor | None = None

    def changes_at(self, step: int) -> bool:
        """Whether the term of ``step`` differs from the previous step's (a fresh sample or hold noise).

        On the other steps the solver keeps the transformed term it has and skips :meth:`term`.
        """
        return self.held is None or step % self.every == 0 or self.hold_noise_std > 0

    def term(self, step: int, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        """Closure term for ``step`` (a fresh sample when ``step % every == 0``), ``[M, n, n]``.

        ``rng`` must already be keyed by the step; a fresh sample uses ``rng.spawn(0)`` and the
        hold noise ``rng.spawn(1)``.
        """
        if self.held is None or step % self.every == 0:
            self.held = self.closure(vorticity, time, rng.spawn(0)).to(vorticity.dtype)
            return self.held
        if self.hold_noise_std > 0:
            noise = rng.spawn(1).randn(*vorticity.shape[1:], device=vorticity.device, dtype=vorticity.dtype)
            return self.held + self.hold_noise_std * noise
        return self.held

    def keep(self, rows: torch.Tensor) -> None:
        """Drop the held terms of members no longer integrated (``rows`` indexes survivors)."""
        if self.held is not None:
            self.held = self.held[rows]
