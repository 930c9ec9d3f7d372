"""Closure sampling cost: one closure sample for 100 members, per method and sampler setting.

For the small preset's grid (32^2) this times, as medians over repeats after a warm-up
(float32, CPU, torch's thread count, ``torch.inference_mode``):

* P-CDM (Euler-Maruyama, 10 steps: the paper's sampler, the baseline to beat; ancestral 5 steps),
* conventional and joint L-CDM (Euler-Maruyama 10 steps; for joint L-CDM also Euler-Maruyama
  50 steps, the converged sampler of the trained model, ancestral 5 and 3 steps, Heun PF-ODE 3
  and 5 steps),
* latent flow matching (Euler, 1 and 2 steps),

using the trained checkpoints in ``checkpoints/small/`` when present (else untrained networks
of the same size, marked as such), and next to each time its a-priori error on the test split
of ``data/small.h5`` (ensemble-mean relative error and spread-skill, ``--members`` samples for
``--samples`` test pairs). It also times 5 steps of the coarse missing-physics solver for the
same 100 members, because the closure is drawn once every 5 steps: ``ensemble ratio`` =
(5 steps + 1 closure sample) / (5 steps) is the wall-time factor of a closure-corrected
ensemble over the bare one. With ``--paper-grid`` the same timing is done at 64^2 with untrained
networks of the paper's size (no errors).

Writes ``benchmarks/sampling.md`` and ``benchmarks/sampling.json``.
Run: ``.venv/bin/python benchmarks/sampling.py`` (about 5-8 minutes on 2 cores). On a machine
shared with other jobs, ``OMP_NUM_THREADS=1`` gives stable timings (two threads competing with
other processes were measured up to 100x slower on the small solver steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and benchmarks/ensemble.py would shadow
# the ensemble package: drop the folder (the package itself is installed editable).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from ensemble.config import load_config  # noqa: E402
from solvers.allocator import tune_allocator  # noqa: E402
from models.builders import build_model  # noqa: E402
from models.checkpoint import Checkpoint  # noqa: E402
from models.closures import GenerativeClosure, load_closure  # noqa: E402
from models.config import ModelSection  # noqa: E402
from models.data import load_pairs  # noqa: E402
from models.evaluation import evaluate_closure  # noqa: E402
from models.normalization import FieldNormalization, Normalization  # noqa: E402
from models.sampling_options import SamplerOptions  # noqa: E402
from solvers.factory import build_simulation  # noqa: E402
from solvers.grid import SpectralGrid  # noqa: E402
from solvers.initial import gaussian_random_field  # noqa: E402
from solvers.random import MemberRandom, member_seeds  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
ROLLOUT_STEPS = 20  # coupled rollout: 4 closure samples at closure_every = 5

PAPER_EM = {"sampler": "euler_maruyama", "steps": 10}  # the paper's sampler: P-CDM with it is the baseline
VARIANTS: list[tuple[str, dict]] = [
    ("pcdm", PAPER_EM),
    ("pcdm", {"sampler": "ancestral", "steps": 5}),
    ("lcdm", {"sampler": "euler_maruyama", "steps": 10}),
    ("joint-lcdm", {"sampler": "euler_maruyama", "steps": 10}),
    ("joint-lcdm", {"sampler": "euler_maruyama", "steps": 10, "t_max": 0.2}),
    ("joint-lcdm", {"sampler": "euler_maruyama", "steps": 50}),
    ("joint-lcdm", {"sampler": "ancestral", "steps": 5}),
    ("joint-lcdm", {"sampler": "ancestral", "steps": 3}),
    ("joint-lcdm", {"sampler": "heun", "steps": 5}),
    ("joint-lcdm", {"sampler": "heun", "steps": 3}),
    ("flow", {"flow_steps": 1}),
    ("flow", {"flow_steps": 2}),
]
PAPER_GRID_VARIANTS = [("pcdm", PAPER_EM), ("joint-lcdm", PAPER_EM), ("flow", {"flow_steps": 1})]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def untrained_closure(method: str, model: ModelSection, n: int, options: dict) -> GenerativeClosure:
    """A closure with random weights (timing only)."""
    torch.manual_seed(0)
    ckpt = Checkpoint(
        model=build_model(method, model).eval(),
        method=method,
        model_config=model,
        training_config=load_config(ROOT / "configs/small.toml").training,
        normalization=Normalization(FieldNormalization(0.0, 1.0), FieldNormalization(0.0, 1.0)),
        grid_size=n,
    )
    return GenerativeClosure(ckpt, SamplerOptions.from_section(model).with_overrides(**options))


def sample_timer(closure: GenerativeClosure, w: torch.Tensor) -> Callable[[], object]:
    calls = iter(range(10**9))
    seeds = member_seeds(0, range(w.shape[0]))
    return lambda: closure(w, 0.0, MemberRandom(seeds, key=(1, next(calls))))


def solver_seconds(config, w: torch.Tensor, steps: int, repeats: int, closure=None) -> float:
    """Median time of ``steps`` coarse missing-physics steps for ``w [M, n, n]``, with the closure
    coupled as in a run (fresh sample every ``closure_every`` steps, held in between) or none."""
    sim = build_simulation(
        config.physics, config.solver, w.shape[-1], model="missing_physics", closure=closure,
        coupling=config.coupling, device="cpu",
    )
    seeds = member_seeds(0, range(w.shape[0]))

    def run() -> None:
        for _ in sim.run(w, seeds, n_steps=steps, output_every=steps):
            pass

    return median_seconds(run, repeats)


def random_vorticity(n: int, members: int) -> torch.Tensor:
    """Gaussian-random-field vorticity ``[members, n, n]`` (float32) when no dataset is at hand."""
    grid = SpectralGrid(n, dtype=torch.float32)
    return gaussian_random_field(grid, MemberRandom(member_seeds(0, range(members))))


def describe(method: str, options: dict) -> str:
    if method.startswith("flow"):
        return f"Euler x{options['flow_steps']}"
    return f"{options['sampler']} x{options['steps']}, t_max {options.get('t_max', 0.4)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100, help="members per closure call (timing)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-members", type=int, default=16, help="samples per test pair (errors)")
    parser.add_argument("--eval-samples", type=int, default=20, help="test pairs (errors)")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints/small")
    parser.add_argument("--data", type=Path, default=ROOT / "data/small.h5")
    parser.add_argument("--paper-grid", action="store_true", help="also time untrained paper-size nets at 64^2")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="further checkpoints to time and evaluate with their default sampler")
    args = parser.parse_args()
    tune_allocator()  # what load_closure does; applied here so untrained closures get it too

    config = load_config(ROOT / "configs/small.toml")
    n = config.data.n_coarse
    pairs = load_pairs(args.data, "test") if args.data.is_file() else None
    if pairs is not None:
        w = torch.from_numpy(pairs.vorticity[:: max(1, len(pairs) // args.members)][: args.members]).float()
        w = torch.cat([w] * (args.members // len(w) + 1))[: args.members]
    else:
        w = random_vorticity(n, args.members)
    rows = []
    steps_time = solver_seconds(config, w, config.coupling.closure_every, 4 * args.repeats)
    bare_rollout = solver_seconds(config, w, ROLLOUT_STEPS, 4 * args.repeats)
    runs = [(method, options, args.checkpoints / f"{method}.safetensors") for method, options in VARIANTS]
    runs += [(None, {}, path) for path in args.extra]
    for method, options, path in runs:
        trained = path.is_file()
        closure = load_closure(path, **options) if trained else untrained_closure(method, config.model, n, options)
        if method is None:
            method = f"{closure.method} ({path})"
            options = closure.options.to_dict()
        seconds = median_seconds(sample_timer(closure, w), args.repeats)
        coupled = solver_seconds(config, w, ROLLOUT_STEPS, max(1, args.repeats // 2), closure)
        row = {"grid": n, "method": method, "sampler": describe(method, options), "trained": trained,
               "seconds_per_100": seconds * 100 / args.members, "rollout_ratio": coupled / bare_rollout}
        if trained and pairs is not None:
            metrics = evaluate_closure(closure, pairs, members=args.eval_members, samples=args.eval_samples)
            row.update(relative_error_mean=metrics["relative_error_mean"], spread_skill=metrics["spread_skill"],
                       crps=metrics["crps"])
        rows.append(row)
        print(row, flush=True)
    if args.paper_grid:
        paper = load_config(ROOT / "configs/paper.toml")
        w64 = random_vorticity(64, args.members)
        for method, options in PAPER_GRID_VARIANTS:
            closure = untrained_closure(method, paper.model, 64, options)
            seconds = median_seconds(sample_timer(closure, w64), max(2, args.repeats // 2))
            rows.append({"grid": 64, "method": method, "sampler": describe(method, options), "trained": False,
                         "seconds_per_100": seconds * 100 / args.members})
            print(rows[-1], flush=True)
    write(rows, steps_time * 100 / args.members, config.coupling.closure_every, args)


def write(rows: list[dict], steps_per_100: float, every: int, args) -> None:
    base = {r["grid"]: r["seconds_per_100"] for r in rows
            if r["method"] == "pcdm" and r["sampler"] == describe("pcdm", PAPER_EM)}
    lines = [
        f"# Closure sampling cost ({args.members} members per call, medians of {args.repeats})",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, float32, CPU.",
        f"Coarse solver, {every} missing-physics steps at 32^2 for 100 members: {steps_per_100 * 1e3:.1f} ms "
        f"({steps_per_100 / every / 100 * 1e6:.1f} us per member-step).",
        "",
        "| grid | method | sampler | trained | s per 100 members | speed-up vs P-CDM | ensemble ratio | "
        "rollout ratio | rel. err. mean | spread-skill | CRPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        r["speedup_vs_pcdm"] = base.get(r["grid"], float("nan")) / r["seconds_per_100"]
        r["ensemble_ratio"] = (steps_per_100 + r["seconds_per_100"]) / steps_per_100 if r["grid"] == 32 else None
        lines.append(
            f"| {r['grid']}^2 | {r['method']} | {r['sampler']} | {'yes' if r['trained'] else 'no'} | "
            f"{r['seconds_per_100']:.4f} | {r['speedup_vs_pcdm']:.1f}x | "
            + (f"{r['ensemble_ratio']:.1f}" if r["ensemble_ratio"] else "-")
            + " | "
            + (f"{r['rollout_ratio']:.1f}" if "rollout_ratio" in r else "-")
            + " | "
            + (f"{r['relative_error_mean']:.3f} | {r['spread_skill']:.2f} | {r['crps']:.5f} |"
               if "relative_error_mean" in r else "- | - | - |")
        )
    lines += [
        "",
        "ensemble ratio = (5 solver steps + 1 closure sample) / (5 solver steps): the wall-time factor of a",
        "closure-corrected 32^2 ensemble over the bare one (target <= 5), from the component timings;",
        f"rollout ratio: the same factor measured on a {ROLLOUT_STEPS}-step coupled run (HeldClosure, every 5 steps).",
        f"Errors: {args.eval_members} samples for each of {args.eval_samples} test pairs of {args.data.name}; "
        "speed-up vs P-CDM: against P-CDM with the paper's sampler (Euler-Maruyama x10) on the same grid.",
    ]
    text = "\n".join(lines) + "\n"
    (HERE / "sampling.md").write_text(text)
    (HERE / "sampling.json").write_text(json.dumps({"rows": rows, "solver_seconds_per_100": steps_per_100,
                                                     "threads": torch.get_num_threads()}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
