"""Which scales of the closure term set the coarse run's spectrum: the exact closure, edited per shell.

The small preset's coarse missing-physics model (32^2) is driven by the exact closure ``H`` of a
lockstep 128^2 DNS (noise included, float64), refreshed every ``--every`` steps and held between,
for ``--steps`` steps from a DNS spun up to t = 5 (the dataset's start). Each row edits ``H``
before it enters the coarse model and reports the final mean energy spectrum against the
sub-sampled DNS, ``E_coarse(k) / E_DNS(k) - 1`` for ``k = 1..8`` (half the coarse Nyquist
wavenumber, the range of the issue's spectrum target):

* ``exact``: ``H`` itself;
* ``shells <= K``: ``H`` with every shell ``round|k| > K`` removed (``K = 4``: what an 8^2 latent
  holds linearly);
* ``unbiased noise r``: ``H + r |H_hat| z`` per mode, ``z`` complex standard normal, redrawn at
  every refresh (a sample error with the right mean);
* ``amplitude a, k >= 5``: shells from 5 up scaled by ``a`` (a biased amplitude).

Run: ``.venv/bin/python benchmarks/closure_shells.py`` (about 2 minutes on 2 cores); writes
``benchmarks/closure_shells.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from ensemble.config import load_config  # noqa: E402
from solvers.closure_terms import missing_physics_term  # noqa: E402
from solvers.diagnostics import energy_spectrum  # noqa: E402
from solvers.factory import build_simulation  # noqa: E402
from solvers.filters import subsample  # noqa: E402
from solvers.grid import SpectralGrid  # noqa: E402
from solvers.initial import gaussian_random_field  # noqa: E402
from solvers.random import MemberRandom  # noqa: E402
from solvers.simulation import STREAM_FORCING  # noqa: E402

HERE = Path(__file__).resolve().parent
Edit = Callable[[torch.Tensor, SpectralGrid, torch.Generator], torch.Tensor]  # H_hat -> edited H_hat


def low_pass(k_keep: int) -> Edit:
    return lambda h, grid, gen: h * (grid.shell <= k_keep)


def unbiased_noise(relative: float) -> Edit:
    def edit(h: torch.Tensor, grid: SpectralGrid, gen: torch.Generator) -> torch.Tensor:
        z = torch.complex(torch.randn(h.shape, generator=gen, dtype=torch.float64),
                          torch.randn(h.shape, generator=gen, dtype=torch.float64)) / 2**0.5
        return h + relative * h.abs() * z
    return edit


def amplitude(factor: float, k_from: int) -> Edit:
    return lambda h, grid, gen: h * torch.where(grid.shell >= k_from, factor, 1.0)


def spectrum_ratios(edit: Edit, spun_up, fine_sim, cfg, n: int, start_step: int, steps: int, every: int,
                    seeds: list[int]) -> list[float]:
    """``E_coarse(k)/E_DNS(k) - 1``, ``k = 1..n/4``, after ``steps`` coupled steps."""
    coarse_sim = build_simulation(cfg.physics, cfg.solver, n, model="missing_physics", device="cpu",
                                  dtype=torch.float64)
    fine, coarse, equation = fine_sim.equation.grid, coarse_sim.equation.grid, coarse_sim.equation
    w_fine, w_coarse = fine.to_spectral(spun_up), coarse.to_spectral(subsample(spun_up, n))
    gen = torch.Generator().manual_seed(0)
    for k in range(steps):
        increment = fine_sim.noise.increment_hat(MemberRandom(seeds, key=(STREAM_FORCING, start_step + k)))
        if k % every == 0:
            h = missing_physics_term(w_fine, fine, n, fine.to_physical(increment / cfg.solver.dt))
            equation.closure_hat = edit(coarse.to_spectral(h), coarse, gen)
        w_coarse = coarse_sim.step_fn(w_coarse)
        w_fine = fine_sim.step_fn(w_fine) + increment
    truth = subsample(fine.to_physical(w_fine), n)
    ratio = energy_spectrum(coarse.to_physical(w_coarse), coarse).mean(0) / energy_spectrum(truth, coarse).mean(0) - 1
    return [round(float(r), 3) for r in ratio[1 : n // 4 + 1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=250, help="coupled steps (the bench's 0.5 time units)")
    parser.add_argument("--every", type=int, default=25, help="closure refresh interval (steps)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = load_config(ROOT / "configs" / "small.toml")
    n_fine, n = cfg.data.n_fine, cfg.data.n_coarse
    seeds = list(range(11, 11 + args.members))
    fine_sim = build_simulation(cfg.physics, cfg.solver, n_fine, model="full", device="cpu", dtype=torch.float64)
    spin_steps = round(cfg.data.t_start / cfg.solver.dt)
    *_, spun_up = fine_sim.run(gaussian_random_field(fine_sim.equation.grid, MemberRandom(seeds)), seeds,
                               spin_steps, spin_steps)
    edits: dict[str, Edit] = {
        "exact": lambda h, grid, gen: h,
        **{f"shells <= {k}": low_pass(k) for k in (4, 6, 8)},
        **{f"unbiased noise {r:g}": unbiased_noise(r) for r in (0.3, 1.0)},
        **{f"amplitude {a:g}, k >= 5": amplitude(a, 5) for a in (0.5, 0.8)},
    }
    rows = {}
    for label, edit in edits.items():
        rows[label] = spectrum_ratios(edit, spun_up.vorticity, fine_sim, cfg, n, spin_steps, args.steps, args.every, seeds)
        print(f"{label:24s} {rows[label]}", flush=True)
    header = "| closure term | " + " | ".join(f"k = {k}" for k in range(1, n // 4 + 1)) + " |"
    lines = [
        "# Which shells of the closure set the coarse spectrum (`benchmarks/closure_shells.py`)", "",
        f"Machine: {platform.machine()}, torch {torch.__version__}. {n_fine}^2 DNS -> {n}^2 coarse, "
        f"{args.members} members from t = {cfg.data.t_start:g}, {args.steps} steps, exact closure refreshed every "
        f"{args.every} steps, edited as in each row. Entries: final `E_coarse(k) / E_DNS(k) - 1`.", "",
        header, "|---" * (n // 4 + 1) + "|",
        *(f"| {label} | " + " | ".join(f"{r:+.3f}" for r in ratios) + " |" for label, ratios in rows.items()),
    ]
    (HERE / "closure_shells.md").write_text("\n".join(lines) + "\n")
    (HERE / "closure_shells.json").write_text(json.dumps({"settings": vars(args), "ratios": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
