"""Solver throughput: member-steps per second of the paper's scheme beside its FFT floor.

For grids 64^2, 128^2, 256^2 and batches of 1, 16, 64 members (float32, CPU unless
``--device``, ``cn_euler``, torch's default thread count) this measures

* ``step``: one deterministic Crank-Nicolson/Euler step of the full vorticity equation,
  ``w_hat -> step(w_hat)`` (advection, forcing, viscosity);
* ``step + noise``: the same plus the Q-Wiener increment (per-member random streams), i.e.
  what a DNS or a stochastic coarse run pays per step;
* ``fft``: the five FFTs a step needs, one batched ``irfft2`` of ``[4, members, n, n//2+1]``
  and one ``rfft2`` of ``[members, n, n]``;

as medians over repeats after a warm-up, with the allocator tuned as the product runs it
(:mod:`solvers.allocator`), and prints a Markdown table (also written to
``benchmarks/solver.md`` with the machine) and a JSON file (``benchmarks/solver.json``).

Run: ``.venv/bin/python benchmarks/solver.py`` (about 1-2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from solvers.allocator import tune_allocator
from solvers.config import PhysicsConfig, SolverConfig
from solvers.factory import build_simulation
from solvers.initial import gaussian_random_field
from solvers.random import MemberRandom, member_seeds
from solvers.simulation import STREAM_FORCING

HERE = Path(__file__).resolve().parent
SIZES = (64, 128, 256)
BATCHES = (1, 16, 64)


def interleaved_timings(fns: dict[str, Callable[[], object]], repeats: int, budget: float) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` samples each, taken in interleaved rounds.

    Each function is warmed up (two calls) and sized to about ``budget / repeats`` seconds per
    group of calls; round ``r`` times one group of every function back to back, so a burst of
    load from other jobs on a shared machine hits all of them alike (their ratios stay fair).
    """
    calls = {}
    for name, fn in fns.items():
        fn()
        start = time.perf_counter()
        fn()
        calls[name] = max(1, int(budget / repeats / max(time.perf_counter() - start, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return samples


def measure(n: int, members: int, device: str, repeats: int, budget: float) -> dict[str, float]:
    """Seconds per call of a step, a noisy step and the 5 FFTs, for ``members`` fields of ``n^2``."""
    solver = SolverConfig(dt=1e-3, scheme="cn_euler", precision="float32", device=device)
    sim = build_simulation(PhysicsConfig(), solver, n, model="full", noise=True)
    grid = sim.equation.grid
    seeds = member_seeds(0, range(members))
    w_hat = grid.to_spectral(gaussian_random_field(grid, MemberRandom(seeds)))
    noise = sim.noise
    sync = torch.cuda.synchronize if grid.device.type == "cuda" else (lambda: None)
    counter = iter(range(10**12))

    def step() -> None:
        sim.step_fn(w_hat)
        sync()

    def noisy_step() -> None:
        out = sim.step_fn(w_hat)
        out + noise.increment_hat(MemberRandom(seeds, key=(STREAM_FORCING, next(counter))))
        sync()

    fields = torch.randn(4, members, n, n // 2 + 1, dtype=grid.complex_dtype, device=grid.device)
    product = torch.randn(members, n, n, dtype=grid.dtype, device=grid.device)

    def ffts() -> None:
        torch.fft.irfft2(fields, s=(n, n))
        torch.fft.rfft2(product)
        sync()

    with torch.no_grad():
        samples = interleaved_timings({"step": step, "noisy_step": noisy_step, "fft": ffts}, repeats, budget)
    result = {f"{name}_s": statistics.median(values) for name, values in samples.items()}
    result.update({f"{name}_best_s": min(values) for name, values in samples.items()})
    result["step_over_fft"] = statistics.median(a / b for a, b in zip(samples["step"], samples["fft"]))
    result["noisy_step_over_fft"] = statistics.median(a / b for a, b in zip(samples["noisy_step"], samples["fft"]))
    return result


def machine() -> dict[str, object]:
    """CPU model, core count, torch version and threads of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_1min_before": round(os.getloadavg()[0], 2)}


def markdown(rows: list[dict[str, float]], info: dict[str, object], device: str) -> str:
    """The results as a Markdown table with a header naming the machine."""
    lines = [
        "# Solver throughput (`benchmarks/solver.py`)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['threads']} threads), device {device}, float32, `cn_euler`; 1-minute load average "
        f"{info['load_average_1min_before']} before and {info['load_average_1min_after']} after the run "
        "(the machine is shared: other jobs inflate the times). Medians over repeats "
        "after a warm-up (best of the repeats in brackets); the ratios are medians of per-round ratios, "
        "the step and its FFTs being timed back to back in each round; `step` is the deterministic "
        "step, `+noise` adds the Q-Wiener increment; "
        "`fft` is one batched irfft2 of 4 fields plus one rfft2 (the 5 FFTs of a step).",
        "",
        "| grid | members | member-steps/s | µs per member-step (best) | +noise: member-steps/s "
        "| fft µs per member (best) | step / fft | (step+noise) / fft |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["members"]
        lines.append(
            f"| {r['n']}² | {m} | {m / r['step_s']:,.0f} | {1e6 * r['step_s'] / m:.1f} "
            f"({1e6 * r['step_best_s'] / m:.1f}) | {m / r['noisy_step_s']:,.0f} "
            f"| {1e6 * r['fft_s'] / m:.1f} ({1e6 * r['fft_best_s'] / m:.1f}) "
            f"| {r['step_over_fft']:.2f} | {r['noisy_step_over_fft']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--out", type=Path, default=HERE, help="folder for solver.md and solver.json")
    args = parser.parse_args()
    tune_allocator()  # as the CLI and the ensemble workers run the solver
    info = machine()
    rows = []
    for n in args.sizes:
        for members in args.batches:
            result = measure(n, members, args.device, args.repeats, args.budget)
            rows.append({"n": n, "members": members, **result})
    info["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    table = markdown(rows, info, args.device)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "solver.md").write_text(table)
    (args.out / "solver.json").write_text(json.dumps({"machine": info, "device": args.device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
