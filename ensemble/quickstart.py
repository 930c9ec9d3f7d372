"""The end-to-end job a new user runs first: ``closure quickstart`` (``make quickstart``).

On a local Ray instance (``actors`` solver actors, 2 by default) it launches

1. ``members`` (>= 128 by default) coarse runs of the small preset with the shipped joint
   L-CDM closure (``checkpoints/small/joint-lcdm.safetensors``), starting from the filtered-DNS
   test trajectories shipped in ``checkpoints/small/reference.h5`` (no download, no DNS), and
2. the same ensemble with no closure (the baseline; cheap, on the same actors),

then writes the report (:func:`ensemble.report.make_report`) comparing the two against the
reference, and returns where everything went. Output layout::

    OUT/joint-lcdm/     run directory of the closure ensemble (manifest, members, stats, state)
    OUT/no-closure/     run directory of the baseline
    OUT/report/         spectrum.png, pdfs.png, fields.png, metrics.png, summary.md, summary.json
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ensemble.cluster import SolverActorPool, connect_ray
from ensemble.manifest import check_output_dir
from ensemble.report import Report, make_report
from ensemble.run import RunSummary, launch
from solvers.errors import UserError

logger = logging.getLogger(__name__)

CONFIG = "configs/small.toml"
CHECKPOINT = "checkpoints/small/joint-lcdm.safetensors"
REFERENCE = "checkpoints/small/reference.h5"


@dataclass
class QuickstartResult:
    """Where everything went and how long each part took (seconds)."""

    out: Path
    closure_run: Path
    baseline_run: Path
    report: Report
    closure_summary: RunSummary
    baseline_summary: RunSummary
    timings: dict[str, float]


def _require(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise UserError(f"{path}: missing {what} (it ships with the repository; is this a complete checkout?)")


def run_quickstart(out: str | Path = "runs/quickstart", *, members: int = 128, actors: int = 2,
                   config: str = CONFIG, checkpoint: str = CHECKPOINT, reference: str = REFERENCE,
                   address: str | None = None, progress: bool = True,
                   echo: Callable[[str], None] = logger.info) -> QuickstartResult:
    """Closure ensemble + no-closure baseline on Ray, then the report (see module docstring)."""
    out = Path(out)
    for path, what in ((config, "config"), (checkpoint, "closure checkpoint"), (reference, "reference dataset")):
        _require(path, what)
    check_output_dir(out)
    closure_run, baseline_run = out / "joint-lcdm", out / "no-closure"
    # an absolute reference path in the manifests lets `closure report` find it from any directory
    common = {"ensemble.members": members, "ensemble.actors": actors, "ensemble.init": "dataset",
              "ensemble.data": str(Path(reference).resolve())}
    timings: dict[str, float] = {}
    start = clock.perf_counter()
    owned = connect_ray(address)
    timings["ray start"] = clock.perf_counter() - start
    try:
        with SolverActorPool() as pool:  # the baseline runs on the closure run's actors
            echo(f"[1/3] {members} members with the joint L-CDM closure on {actors} Ray actors -> {closure_run}")
            t = clock.perf_counter()
            closure_summary = launch(config, closure_run, {**common, "ensemble.closure": checkpoint},
                                     progress=progress, actor_pool=pool)
            timings["closure ensemble"] = clock.perf_counter() - t
            echo(f"      done in {timings['closure ensemble']:.1f} s")
            echo(f"[2/3] {members} members without closure (baseline) -> {baseline_run}")
            t = clock.perf_counter()
            baseline_summary = launch(config, baseline_run, {**common, "ensemble.closure": "none"},
                                      progress=progress, actor_pool=pool)
            timings["baseline ensemble"] = clock.perf_counter() - t
            echo(f"      done in {timings['baseline ensemble']:.1f} s")
    finally:
        if owned:
            import ray

            ray.shutdown()
    echo(f"[3/3] report -> {out / 'report'}")
    t = clock.perf_counter()
    report = make_report(closure_run, baseline_run, out / "report")
    timings["report"] = clock.perf_counter() - t
    timings["total"] = clock.perf_counter() - start
    return QuickstartResult(out, closure_run, baseline_run, report, closure_summary, baseline_summary, timings)


def summary_text(result: QuickstartResult) -> str:
    """The short summary printed at the end: key numbers and where everything went."""
    numbers = result.report.numbers
    last = numbers["per_time"][-1] if numbers.get("per_time") else {}
    base = numbers.get("baseline", {})
    lines = [
        "",
        f"Quickstart finished in {result.timings['total']:.0f} s "
        f"(closure ensemble {result.timings['closure ensemble']:.0f} s, baseline "
        f"{result.timings['baseline ensemble']:.0f} s, report {result.timings['report']:.0f} s).",
        f"  {numbers['members_done']} members with the joint L-CDM closure, {numbers['blowups']} blow-ups.",
    ]
    if last:
        nan = float("nan")
        lines.append(f"  at t = {last['time']:g}: relative error of the ensemble mean {last['rel_error_mean']:.3g} "
                     f"(no closure {base.get('rel_error_final', nan):.3g}), CRPS {last['crps_vorticity']:.3g} "
                     f"(no closure {base.get('crps_vorticity_final', nan):.3g}), spread-skill "
                     f"{last['spread_skill']:.2f}{_calibration_hint(last['spread_skill'])}")
    lines += [
        "Where everything went:",
        f"  closure run   {result.closure_run}   (Parquet: stats/, members/, blowups/; manifest.json)",
        f"  baseline run  {result.baseline_run}",
        f"  report        {result.report.out}   (summary.md, " + ", ".join(p.name for p in result.report.plots) + ")",
        f"Next: closure report {result.closure_run} --baseline {result.baseline_run}; "
        f"closure ensemble status {result.closure_run}",
    ]
    return "\n".join(lines)


def _calibration_hint(spread_skill: float) -> str:
    """How to read a spread-skill ratio (1: the spread matches the error of the mean).

    >>> _calibration_hint(0.25)
    " (under-dispersed: the spread is a lower bound of the uncertainty; README, 'Results')"
    >>> _calibration_hint(0.9), _calibration_hint(float("nan"))
    ('', '')
    """
    if not 0 < spread_skill < 0.5:
        return ""
    return " (under-dispersed: the spread is a lower bound of the uncertainty; README, 'Results')"
