"""Time integration of a batch of members: IMEX steps, stochastic forcing, closure coupling.

One step from ``w_hat`` at step ``s`` (time ``t0 + s dt``):

1. closure term ``C`` from :class:`~solvers.closure.HeldClosure` (fresh every ``closure_every``
   steps, held in between), set as the equation's explicit ``closure_hat``;
2. the IMEX step of :mod:`solvers.stepping`;
3. the Q-Wiener increment ``dt sigma xi_hat`` added to ``w_hat`` (a full ``dt``).

Members whose state turns non-finite are removed from the batch and reported with the step
at which it happened, so the others go on; nothing is dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from solvers.closure import HeldClosure
from solvers.forcing import QWienerForcing
from solvers.navier_stokes import VorticityEquation
from solvers.random import MemberRandom
from solvers.stepping import make_stepper

STREAM_FORCING = 0
STREAM_CLOSURE = 1


@dataclass(frozen=True)
class BlowUp:
    """A member whose state became non-finite at ``step`` (time ``time``)."""

    member: int
    step: int
    time: float


@dataclass
class Snapshot:
    """State of the surviving members at an output step.

    Attributes:
        step, time: step index and time of the snapshot.
        vorticity: ``[active, n, n]`` physical vorticity.
        members: ``[active]`` indices of the surviving members in the original batch.
        closure: ``[active, n, n]`` closure term used in the last step, or None.
        forcing_increment_hat: ``[active, n, n//2+1]`` last stochastic increment
            ``dt sigma xi_hat``, or None.
        blow_ups: members lost since the previous snapshot.
    """

    step: int
    time: float
    vorticity: torch.Tensor
    members: torch.Tensor
    closure: torch.Tensor | None = None
    forcing_increment_hat: torch.Tensor | None = None
    blow_ups: list[BlowUp] = field(default_factory=list)


def batch_is_finite(w_hat: torch.Tensor) -> bool:
    """True when the sum of every entry of ``w_hat [members, n, m]`` (real and imaginary parts) is finite.

    A NaN or infinity anywhere makes the sum non-finite, so True means every member is finite.
    False may also be an overflow of the sum of finite entries (|w| near the dtype's maximum), so
    the caller confirms with :func:`member_is_finite`. One reduction and one scalar read: ~3.5x
    cheaper than :func:`member_is_finite` for 16-100 members at 32^2, where the per-member check
    on every step cost as much as the bare missing-physics step itself.
    """
    return math.isfinite(float(torch.view_as_real(w_hat).sum()))


def member_is_finite(w_hat: torch.Tensor) -> torch.Tensor:
    """``[members]`` bool: no NaN or infinity in the member's spectrum ``w_hat [members, n, m]``.

    The largest magnitude is non-finite exactly when some entry is (NaN propagates through
    ``abs`` and ``amax``); one reduction over the real view is ~10x cheaper than a complex
    ``isfinite`` per entry, which was half the cost of a bare 32^2 coarse step.
    """
    return torch.isfinite(torch.view_as_real(w_hat).abs().amax(dim=(-3, -2, -1)))


class Simulation:
    """Integrate ``[members, n, n]`` vorticity with optional noise and closure.

    Args:
        equation: the IMEX vorticity equation (its grid sets device and dtype).
        dt: time step.
        scheme: ``cn_euler`` (paper) or ``cn_rk3``.
        noise: Q-Wiener forcing, or None for a deterministic run.
        closure: hold-and-refresh closure coupling, or None.
    """

    def __init__(
        self,
        equation: VorticityEquation,
        dt: float,
        scheme: str = "cn_euler",
        noise: QWienerForcing | None = None,
        closure: HeldClosure | None = None,
    ) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.equation, self.dt, self.noise, self.closure = equation, float(dt), noise, closure
        self.step_fn = make_stepper(equation, dt, scheme)

    def run(
        self,
        w0: torch.Tensor,
        seeds: Sequence[int],
        n_steps: int,
        output_every: int,
        t0: float = 0.0,
        first_step: int = 0,
    ) -> Iterator[Snapshot]:
        """Yield a :class:`Snapshot` at step ``first_step`` and every ``output_every`` steps after.

        Args:
            w0: ``[members, n, n]`` initial vorticity at step ``first_step`` (time ``t0``).
            seeds: one seed per member (random streams keyed by member seed and step, so a
                member's path does not depend on the batch it runs in).
            n_steps: number of steps to take.
            output_every: steps between snapshots (``n_steps`` should be a multiple).
            t0: time of ``w0``.
            first_step: global index of the first step (for restarts: keeps noise streams
                aligned with an uninterrupted run).
        """
        grid, eq = self.equation.grid, self.equation
        if w0.ndim != 3 or tuple(w0.shape[-2:]) != (grid.n, grid.n):
            raise ValueError(f"initial field must be [members, {grid.n}, {grid.n}], got {list(w0.shape)}")
        if len(seeds) != w0.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {w0.shape[0]} members")
        w_hat = grid.to_spectral(w0.to(grid.device, grid.dtype))
        members = torch.arange(w0.shape[0], device=grid.device)
        seed_list = list(seeds)
        increment = None
        pending: list[BlowUp] = []
        yield Snapshot(first_step, t0, grid.to_physical(w_hat), members.clone())
        for k in range(1, n_steps + 1):
            step = first_step + k - 1
            time = t0 + (k - 1) * self.dt
            if self.closure is not None and self.closure.changes_at(step):
                rng = MemberRandom(seed_list, key=(STREAM_CLOSURE, step))
                eq.closure_hat = self.closure.term_hat(step, w_hat, time, rng, grid)
            w_hat = self.step_fn(w_hat)
            if self.noise is not None:
                increment = self.noise.increment_hat(MemberRandom(seed_list, key=(STREAM_FORCING, step)))
                w_hat = w_hat + increment
            finite = None if batch_is_finite(w_hat) else member_is_finite(w_hat)
            if finite is not None and not bool(finite.all()):
                lost = (~finite).nonzero().flatten()
                pending += [BlowUp(int(members[i]), step + 1, t0 + k * self.dt) for i in lost.tolist()]
                keep = finite.nonzero().flatten()
                w_hat, members = w_hat[keep], members[keep]
                seed_list = [seed_list[i] for i in keep.tolist()]
                if eq.closure_hat is not None:  # the held term stays on the survivors' rows
                    eq.closure_hat = eq.closure_hat[keep]
                increment = None if increment is None else increment[keep]
                if self.closure is not None:
                    self.closure.keep(keep)
                if members.numel() == 0:
                    yield Snapshot(first_step + k, t0 + k * self.dt, grid.to_physical(w_hat), members, blow_ups=pending)
                    return
            if k % output_every == 0:
                closure_term = None if self.closure is None else grid.to_physical(eq.closure_hat)
                yield Snapshot(
                    first_step + k, t0 + k * self.dt, grid.to_physical(w_hat), members.clone(),
                    closure=closure_term, forcing_increment_hat=increment, blow_ups=pending,
                )
                pending = []
        eq.closure_hat = None
