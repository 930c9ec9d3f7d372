"""Ensemble runner throughput and scale: in-process vs Ray actors, shared vs per-actor closure.

Measures, with the ``small`` preset (32^2, missing physics, initial conditions from the test
trajectories of ``data/small.h5``, random fields if it is absent), one torch thread per worker:

1. solver-bound: 64 members x 3 time units, no closure, run (a) in-process without Ray,
   (b) on 1 Ray actor, (c) on 2 Ray actors. Wall time is the whole ``launch`` (actor start-up,
   scheduling, statistics, Parquet) after Ray itself is up; member-steps/s = members x steps /
   wall. "Ray overhead" = wall(1 actor) / wall(in-process) for the same ensemble.
2. closure-bound: 32 members x 1 time unit with a learned closure (``checkpoints/small/`` when
   present, else an untrained network of the [model] section's size; cost does not depend on
   the weights) sampled every 5 steps, on 2 actors: each actor holding its own copy (shipped
   once through the object store) vs one shared closure actor that batches both actors'
   requests; in-process for reference.
3. ``--scale``: 100 and 1,000 members (no closure, 1 time unit, 2 actors), each in a fresh
   driver process: every member accounted for (finished, blown up or failed; each member's
   rows exactly once), and the driver's peak memory (``ru_maxrss``, and the ``tracemalloc``
   peak of Python/numpy allocations during the run).

Writes ``benchmarks/ensemble.md`` and ``benchmarks/ensemble.json``.
Run: ``.venv/bin/python benchmarks/ensemble.py [--repeats 2] [--scale]`` (about 3 min, +2 min with
``--scale``) on an otherwise idle machine; the machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `ensemble` package: drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
CONFIG = ROOT / "configs" / "small.toml"


def base_overrides() -> dict:
    from ensemble.config import load_config

    cfg = load_config(CONFIG)
    if Path(ROOT / cfg.data.path).is_file():
        return {"ensemble.data": str(ROOT / cfg.data.path)}
    return {"ensemble.init": "random"}


def timed_launch(out: Path, overrides: dict, in_process: bool = False) -> dict:
    from ensemble.run import launch

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = launch(CONFIG, out, overrides, in_process=in_process)
    wall = time.perf_counter() - start
    batches = summary.closure_batches
    return {
        "wall_s": wall,
        "startup_s": summary.startup_s,
        "run_s": wall - summary.startup_s,
        "compute_s": summary.compute_s,
        "member_steps": summary.member_steps,
        "member_steps_per_s": summary.member_steps / wall,
        "mean_closure_batch": float(np.mean(batches)) if batches else None,
    }


def repeated(label: str, out: Path, overrides: dict, repeats: int, in_process: bool = False) -> dict:
    runs = [timed_launch(out, overrides, in_process) for _ in range(repeats)]
    walls = [r["wall_s"] for r in runs]
    best = runs[int(np.argsort(walls)[len(walls) // 2])]
    result = {**best, "label": label, "walls_s": walls, "wall_median_s": statistics.median(walls)}
    result["member_steps_per_s"] = best["member_steps"] / result["wall_median_s"]
    result["run_median_s"] = statistics.median(r["run_s"] for r in runs)
    result["startup_median_s"] = statistics.median(r["startup_s"] for r in runs)
    result["steady_member_steps_per_s"] = best["member_steps"] / result["run_median_s"]
    print(f"{label:45s} wall {result['wall_median_s']:.2f} s (start-up {result['startup_median_s']:.2f} s)  "
          f"{result['member_steps_per_s']:,.0f} member-steps/s, {result['steady_member_steps_per_s']:,.0f} after start-up",
          flush=True)
    return result


def closure_checkpoint(tmp: Path) -> tuple[str, bool]:
    """The trained joint L-CDM of the small preset, or an untrained one of the same size."""
    trained = ROOT / "checkpoints" / "small" / "joint-lcdm.safetensors"
    if trained.is_file():
        return str(trained), True
    import torch

    from ensemble.config import load_config
    from models.builders import build_model
    from models.checkpoint import Checkpoint, save_checkpoint
    from models.normalization import FieldNormalization, Normalization

    cfg = load_config(CONFIG)
    torch.manual_seed(0)
    ckpt = Checkpoint(
        model=build_model(cfg.model.method, cfg.model, cfg.training), method=cfg.model.method,
        model_config=cfg.model, training_config=cfg.training, grid_size=cfg.data.n_coarse,
        normalization=Normalization(FieldNormalization(0.0, 0.7), FieldNormalization(0.0, 0.03)),
    )
    return str(save_checkpoint(ckpt, tmp / "untrained.safetensors")), False


def scale_run(members: int, out: Path) -> dict:
    """One driver process: launch ``members`` and report accounting and peak memory (JSON on stdout)."""
    from ensemble.manifest import Manifest
    from ensemble.parquet_sink import read_table
    from ensemble.run import launch

    overrides = {**base_overrides(), "ensemble.members": members}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    summary = launch(CONFIG, out, overrides)
    wall = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest = Manifest.load(out)
    table = read_table(out, "members")
    pairs = set(zip(table["member"].to_pylist(), table["step"].to_pylist()))
    blown = {b["member"] for b in manifest.blowups}
    rows_per_member = len(manifest.plan["times"])
    finished = manifest.members_with("done")
    return {
        "members": members,
        "wall_s": wall,
        "member_steps_per_s": summary.member_steps / wall,
        "complete": manifest.complete,
        "finished": finished,
        "failed": manifest.members_with("failed"),
        "blown_up": len(blown),
        "member_rows": table.num_rows,
        "unique_member_rows": len(pairs),
        "expected_rows_without_blowups": members * rows_per_member,
        "members_in_table": len({m for m, _ in pairs}),
        "accounted": finished + manifest.members_with("failed") == members and len({m for m, _ in pairs}) == members,
        "driver_rss_before_run_mib": rss_before / 1024,
        "driver_peak_rss_mib": rss_peak / 1024,
        "traced_peak_mib": traced_peak / 2**20,
    }


def run_scale(tmp: Path) -> list[dict]:
    results = []
    for members in (100, 1000):
        out = tmp / f"scale-{members}"
        proc = subprocess.run([sys.executable, __file__, "--scale-child", str(members), str(out)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"scale {members:5d} members: {result['wall_s']:.1f} s, accounted={result['accounted']}, "
              f"peak RSS {result['driver_peak_rss_mib']:.0f} MiB, traced {result['traced_peak_mib']:.1f} MiB", flush=True)
        results.append(result)
    return results


def write_report(results: dict) -> None:
    from ensemble.config import load_config

    dt = results.setdefault("dt", load_config(CONFIG).solver.dt)
    (ROOT / "benchmarks" / "ensemble.json").write_text(json.dumps(results, indent=1))
    s = results["solver_bound"]
    c = results["closure_bound"]
    lines = [
        "# Ensemble runner: in-process vs Ray actors, shared vs per-actor closure",
        "",
        f"Machine: {results['machine']}. Measured {results['date']}; wall times are medians of "
        f"{results['repeats']} runs of `launch` (after `ray.init`, so actor start-up is included).",
        "",
        f"## Solver-bound: 64 members x {round(3.0 / dt)} steps (3 time units, dt = {dt:g}), small preset, no closure",
        "",
        "| run | wall s (median) | all walls s | actor start-up s | member-steps/s (wall) | "
        "member-steps/s (after start-up) | worker compute s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("in_process", "ray_1_actor", "ray_2_actors"):
        r = s[key]
        lines.append(f"| {r['label']} | {r['wall_median_s']:.2f} | {', '.join(f'{w:.2f}' for w in r['walls_s'])} | "
                     f"{r['startup_median_s']:.2f} | {r['member_steps_per_s']:,.0f} | "
                     f"{r['steady_member_steps_per_s']:,.0f} | {r['compute_s']:.2f} |")
    lines += [
        "",
        f"Ray overhead ratio, 1 actor / in-process: **{s['ray_overhead_ratio']:.2f}** on wall time, "
        f"**{s['ray_overhead_ratio_steady']:.2f}** after actor start-up. "
        f"2 actors vs 1 actor: **{s['two_actor_speedup']:.2f}x** (wall), "
        f"**{s['two_actor_speedup_steady']:.2f}x** (after start-up).",
        "",
        f"## Closure-bound: 32 members x {round(c['duration'] / dt)} steps, learned closure every 5 steps "
        f"({'trained' if c['trained'] else 'untrained'} {c['checkpoint_name']})",
        "",
        "| run | wall s (median) | all walls s | start-up s | member-steps/s (wall) | "
        "member-steps/s (after start-up) | mean closure batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("in_process", "per_actor", "shared"):
        r = c[key]
        batch = "-" if r["mean_closure_batch"] is None else f"{r['mean_closure_batch']:.1f}"
        lines.append(f"| {r['label']} | {r['wall_median_s']:.2f} | {', '.join(f'{w:.2f}' for w in r['walls_s'])} | "
                     f"{r['startup_median_s']:.2f} | {r['member_steps_per_s']:,.0f} | "
                     f"{r['steady_member_steps_per_s']:,.0f} | {batch} |")
    lines += ["", f"Shared closure actor / per-actor copies, time after start-up: **{c['shared_over_per_actor']:.2f}** "
              f"(wall: {c['shared_over_per_actor_wall']:.2f}); the faster is `{c['faster']}`."]
    if results.get("scale"):
        lines += ["", f"## Scale: 100 vs 1,000 members (no closure, {round(1.0 / dt)} steps, 2 actors, a fresh driver and Ray instance each: wall includes starting Ray)", "",
                  "| members | wall s | member-steps/s | complete | accounted | finished | blown up | failed | "
                  "member rows (unique) | driver peak RSS MiB | traced peak MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["scale"]:
            lines.append(f"| {r['members']} | {r['wall_s']:.1f} | {r['member_steps_per_s']:,.0f} | {r['complete']} | "
                         f"{r['accounted']} | {r['finished']} | {r['blown_up']} | {r['failed']} | "
                         f"{r['member_rows']} ({r['unique_member_rows']}) | {r['driver_peak_rss_mib']:.0f} | "
                         f"{r['traced_peak_mib']:.1f} |")
        a, b = results["scale"]
        lines += ["", f"Peak RSS ratio 1,000 / 100: **{b['driver_peak_rss_mib'] / a['driver_peak_rss_mib']:.3f}**; "
                  f"traced-allocation peak ratio: **{b['traced_peak_mib'] / a['traced_peak_mib']:.3f}**."]
    load = results.get("load_average")
    lines += [
        "",
        "## Notes",
        "",
        "* The machine is shared with other engineers' jobs"
        + (f" (1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end, on 2 cores)" if load else "")
        + ": repeated walls differ by up to 2x, so compare rows of one run only.",
        "* Ray starts its worker processes at nice 15, the in-process driver runs at nice 0: under contention the"
        " actors get less CPU than an in-process run, which is part of the 'Ray overhead' measured here. When the"
        " worker compute time of 2 actors is about twice that of 1 actor, the two actors did not get two cores.",
        "* Start-up (spawning the actors, importing torch, building the closure; for the shared mode also the"
        " closure actor) is a fixed cost per launch; 'after start-up' rates are what a long run converges to.",
        "* The default `closure_mode` is the faster mode after start-up; the shared closure actor serves learned"
        " (checkpoint) closures only, classical closures always run inside the solver actors.",
    ]
    (ROOT / "benchmarks" / "ensemble.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--closure-duration", type=float, default=1.0, help="simulated time of the closure runs")
    parser.add_argument("--scale", action="store_true", help="also run 100 and 1,000 members")
    parser.add_argument("--scale-only", action="store_true", help="only the scale runs (merged into the JSON)")
    parser.add_argument("--report-only", action="store_true", help="rewrite ensemble.md from ensemble.json")
    parser.add_argument("--scale-child", nargs=2, metavar=("MEMBERS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads((ROOT / "benchmarks" / "ensemble.json").read_text()))
        return
    if args.scale_child:
        print(json.dumps(scale_run(int(args.scale_child[0]), Path(args.scale_child[1]))))
        return
    import logging

    import ray
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="ensemble-bench-"))
    try:
        if args.scale_only:
            results = json.loads((ROOT / "benchmarks" / "ensemble.json").read_text())
            results["scale"] = run_scale(tmp)
            write_report(results)
            return
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
        base = base_overrides()
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                       f"ray {ray.__version__}, 1 torch thread per worker",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "repeats": args.repeats,
            "load_average": [os.getloadavg()[0]],
            "init": base,
        }
        solver = {**base, "ensemble.members": 64, "ensemble.duration": 3.0, "ensemble.closure": "none"}
        s = {
            "in_process": repeated("in-process (no Ray)", tmp / "a", solver, args.repeats, in_process=True),
            "ray_1_actor": repeated("Ray, 1 actor", tmp / "b", {**solver, "ensemble.actors": 1}, args.repeats),
            "ray_2_actors": repeated("Ray, 2 actors", tmp / "c", {**solver, "ensemble.actors": 2}, args.repeats),
        }
        s["ray_overhead_ratio"] = s["ray_1_actor"]["wall_median_s"] / s["in_process"]["wall_median_s"]
        s["ray_overhead_ratio_steady"] = s["ray_1_actor"]["run_median_s"] / s["in_process"]["run_median_s"]
        s["two_actor_speedup"] = s["ray_1_actor"]["wall_median_s"] / s["ray_2_actors"]["wall_median_s"]
        s["two_actor_speedup_steady"] = s["ray_1_actor"]["run_median_s"] / s["ray_2_actors"]["run_median_s"]
        results["solver_bound"] = s
        path, trained = closure_checkpoint(tmp)
        closure = {**base, "ensemble.members": 32, "ensemble.duration": args.closure_duration, "ensemble.closure": path,
                   "ensemble.chunk_size": 16}
        c = {
            "in_process": repeated("learned closure, in-process", tmp / "d", closure, args.repeats, in_process=True),
            "per_actor": repeated("learned closure, 2 actors, per-actor copies", tmp / "e",
                                  {**closure, "ensemble.closure_mode": "per-actor"}, args.repeats),
            "shared": repeated("learned closure, 2 actors, shared actor", tmp / "f",
                               {**closure, "ensemble.closure_mode": "shared"}, args.repeats),
            "trained": trained,
            "duration": args.closure_duration,
            "checkpoint_name": Path(path).name,
        }
        c["shared_over_per_actor"] = c["shared"]["run_median_s"] / c["per_actor"]["run_median_s"]
        c["shared_over_per_actor_wall"] = c["shared"]["wall_median_s"] / c["per_actor"]["wall_median_s"]
        c["faster"] = "shared" if c["shared_over_per_actor"] < 1 else "per-actor"
        results["closure_bound"] = c
        ray.shutdown()
        results["load_average"].append(os.getloadavg()[0])
        if args.scale:
            results["scale"] = run_scale(tmp)
        write_report(results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
