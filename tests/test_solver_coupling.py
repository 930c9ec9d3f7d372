"""Closure coupling, per-member randomness and blow-up handling of :class:`Simulation`."""

from __future__ import annotations

import torch

from solvers.closure import HeldClosure
from solvers.config import PhysicsConfig, SolverConfig
from solvers.factory import build_simulation
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field
from solvers.random import MemberRandom


class CountingClosure:
    """Returns ``scale * w`` plus member noise and counts its calls."""

    def __init__(self, scale: float = -0.1) -> None:
        self.calls, self.scale = 0, scale

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        self.calls += 1
        noise = rng.randn(*vorticity.shape[1:], dtype=vorticity.dtype)
        return self.scale * vorticity + 1e-3 * noise


def coarse_run(seeds: list[int], closure=None, model: str = "full", steps: int = 20) -> torch.Tensor:
    sim = build_simulation(
        PhysicsConfig(), SolverConfig(device="cpu", precision="float64"), 16, model=model, closure=closure
    )
    grid = sim.equation.grid
    w0 = gaussian_random_field(grid, MemberRandom(seeds))
    *_, last = sim.run(w0, seeds, steps, steps)
    return last.vorticity


def test_closure_is_refreshed_every_closure_every_steps() -> None:
    closure = CountingClosure()
    coarse_run([1, 2], closure=closure, model="missing_physics", steps=20)
    assert closure.calls == 4  # steps 0, 5, 10, 15


def test_member_path_does_not_depend_on_batch_composition() -> None:
    """Same seed -> same path alone or in a batch, with noise and a stochastic closure."""
    for model, closure_factory in (("full", lambda: None), ("missing_physics", CountingClosure)):
        batch = coarse_run([11, 12, 13], closure=closure_factory(), model=model)
        alone = coarse_run([12], closure=closure_factory(), model=model)
        torch.testing.assert_close(batch[1], alone[0], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(batch[0], batch[1])


def _zero_field(members: int = 2, n: int = 8) -> tuple[SpectralGrid, torch.Tensor]:
    grid = SpectralGrid(n, device="cpu", dtype=torch.float64)
    return grid, grid.to_spectral(torch.zeros(members, n, n, dtype=torch.float64))


def test_hold_noise_perturbs_held_term_only_between_samples() -> None:
    held = HeldClosure(CountingClosure(scale=0.0), every=5, hold_noise_std=1e-2)
    grid, w_hat = _zero_field()
    terms = [grid.to_physical(held.term_hat(s, w_hat, 0.0, MemberRandom([1, 2], key=(1, s)), grid)) for s in range(6)]
    spread = (terms[1] - terms[0]).std().item()
    assert 0.5e-2 < spread < 2e-2
    assert held.closure.calls == 2


class SpectralCountingClosure(CountingClosure):
    """:class:`CountingClosure` with the Fourier-space form, which counts its own calls."""

    def __init__(self, scale: float = -0.1) -> None:
        super().__init__(scale)
        self.spectral_calls = 0

    def spectral(self, vorticity_hat: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        self.spectral_calls += 1
        n = vorticity_hat.shape[-2]
        noise = rng.randn(n, n, dtype=vorticity_hat.real.dtype)
        return self.scale * vorticity_hat + 1e-3 * torch.fft.rfft2(noise)


def test_spectral_closure_is_sampled_on_the_coefficients_with_the_same_result() -> None:
    """The coupling hands a SpectralClosure the solver's coefficients (no physical call) and the
    run equals the one through the physical form, member noise and all."""
    spectral = SpectralCountingClosure()
    fast = coarse_run([1, 2], closure=spectral, model="missing_physics", steps=20)
    assert (spectral.spectral_calls, spectral.calls) == (4, 0)
    physical = coarse_run([1, 2], closure=CountingClosure(), model="missing_physics", steps=20)
    torch.testing.assert_close(fast, physical, rtol=1e-12, atol=1e-12)


def test_blow_up_is_reported_with_member_and_step_and_others_continue() -> None:
    sim = build_simulation(PhysicsConfig(), SolverConfig(device="cpu", precision="float64", dt=0.05), 16)
    grid: SpectralGrid = sim.equation.grid
    w0 = gaussian_random_field(grid, MemberRandom([1, 2, 3]))
    w0[1] *= 1e4  # violates the CFL condition by far: must blow up
    snapshots = list(sim.run(w0, [1, 2, 3], 40, 10))
    lost = [b for s in snapshots for b in s.blow_ups]
    assert [b.member for b in lost] == [1]
    assert 1 <= lost[0].step <= 40
    assert snapshots[-1].members.tolist() == [0, 2]
    assert torch.isfinite(snapshots[-1].vorticity).all()


def test_blow_up_on_a_held_step_keeps_the_others_on_their_own_paths() -> None:
    """A member lost between closure refreshes drops out of the held term too: the survivors go on
    exactly as they would without it (advection, noise and a stochastic closure every 5 steps)."""
    def run(seeds: list[int], blow: bool):
        sim = build_simulation(PhysicsConfig(), SolverConfig(device="cpu", precision="float64", dt=0.05), 16,
                               closure=CountingClosure())
        w0 = gaussian_random_field(sim.equation.grid, MemberRandom(seeds))
        if blow:
            w0[1] *= 1e4
        return list(sim.run(w0, seeds, 40, 10))

    batch, alone = run([1, 2, 3], blow=True), run([1, 3], blow=False)
    (lost,) = [b for s in batch for b in s.blow_ups]
    assert lost.member == 1 and lost.step % 5 != 0  # the next step holds the term sampled for 3 members
    assert batch[-1].members.tolist() == [0, 2]
    torch.testing.assert_close(batch[-1].vorticity, alone[-1].vorticity, rtol=1e-12, atol=1e-12)


def test_blow_up_step_is_the_first_step_with_a_non_finite_state() -> None:
    """The per-step check is exact: the reported step is the member's first non-finite one, found
    here by stepping that member alone."""
    sim = build_simulation(PhysicsConfig(), SolverConfig(device="cpu", precision="float64", dt=0.05), 16)
    grid: SpectralGrid = sim.equation.grid
    w0 = gaussian_random_field(grid, MemberRandom([1, 2, 3]))
    w0[1] *= 1e3
    (lost,) = [b for s in sim.run(w0, [1, 2, 3], 60, 10) for b in s.blow_ups]
    w_hat, first = grid.to_spectral(w0[1:2]), None
    for step in range(1, 61):
        w_hat = sim.step_fn(w_hat)
        if not torch.isfinite(torch.view_as_real(w_hat)).all():
            first = step
            break
    assert first is not None and first % 10 != 0  # not an output step: a check only there would miss it
    assert lost.step == first


def test_held_term_changes_only_at_samples_unless_hold_noise() -> None:
    """The solver re-transforms the closure term only when :meth:`HeldClosure.changes_at` says so."""
    grid, w_hat = _zero_field()
    held = HeldClosure(CountingClosure(), every=5)
    changes = []
    for step in range(11):
        changes.append(held.changes_at(step))
        if changes[-1]:
            held.term_hat(step, w_hat, 0.0, MemberRandom([1, 2], key=(1, step)), grid)
    assert [s for s, c in enumerate(changes) if c] == [0, 5, 10]
    noisy = HeldClosure(CountingClosure(), every=5, hold_noise_std=1e-3)
    noisy.term_hat(0, w_hat, 0.0, MemberRandom([1, 2], key=(1, 0)), grid)
    assert all(noisy.changes_at(step) for step in range(1, 5))


def test_member_is_finite_flags_nan_and_infinity_in_real_or_imaginary_parts() -> None:
    from solvers.simulation import member_is_finite

    w_hat = torch.randn(5, 8, 5, dtype=torch.complex64)
    w_hat[1, 2, 3] = complex(float("nan"), 0.0)
    w_hat[2, 0, 0] = complex(0.0, float("inf"))
    w_hat[3, 7, 4] = complex(float("-inf"), 1.0)
    assert member_is_finite(w_hat).tolist() == [True, False, False, False, True]


def test_batch_check_is_false_on_any_non_finite_entry_and_on_overflow_only() -> None:
    """The cheap batch check is exact for finite batches; when its sum overflows it answers False
    and the per-member check then keeps every (finite) member."""
    from solvers.simulation import batch_is_finite, member_is_finite

    w_hat = torch.randn(4, 8, 5, dtype=torch.complex64)
    assert batch_is_finite(w_hat)
    bad = w_hat.clone()
    bad[2, 1, 1] = complex(0.0, float("nan"))
    assert not batch_is_finite(bad)
    huge = torch.full((4, 8, 5), complex(3e38, 3e38), dtype=torch.complex64)
    assert not batch_is_finite(huge) and member_is_finite(huge).all()
