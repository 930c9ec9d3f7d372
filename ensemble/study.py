"""The a-posteriori comparison of closures on the same initial conditions: ``closure study CONFIG``.

Every method runs as an ensemble (:func:`ensemble.run.launch`) from the dataset's test
trajectories (``init = "dataset"``: member ``k`` starts from trajectory ``k % n_test`` and is
scored against it), with the same members, seeds, time span and statistics bins. Methods:

* ``none``: the coarse solver alone;
* ``smagorinsky``, ``dynamic-smagorinsky``: classical eddy viscosity, LES problem only (they
  model the subgrid stress; the missing-physics problem lacks the whole advection term);
* ``pcdm``, ``lcdm``, ``joint-lcdm``, ``flow``: learned closures from
  ``<[training].out>/<method>.safetensors`` (skipped with a note when the file is missing).

One row per method: wall time of its launch (loading included; on Ray, the solver actors are
started once before the first method and every method runs on them, so no row pays their
start-up) and the ratio to ``none``; the
relative error of the ensemble mean against filtered DNS at four times (the output times
nearest to a quarter, half, three quarters and all of the span; mean over groups); the
spectrum error at the last time (:func:`ensemble.report.spectrum_error`: RMS over
``1 <= k <= n/4`` of ``log10(E/E_ref)`` of the ensemble-mean spectrum, mean over groups); and the
fair CRPS of vorticity at the probe points at the last time (mean over groups).

Outputs in OUT: ``runs/<method>/`` (each a normal run directory), ``study.md`` (the table),
``study.json`` (the same numbers), ``study_spectra.png`` and ``study_errors.png``.
"""

from __future__ import annotations

import json
import logging
import time as clock
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.config import ProjectConfig, load_config
from ensemble.methods import LABELS, LEARNED, LES_ONLY, METHODS
from ensemble.report import FONT_SIZE, RunResults, _figure, _style, load_reference, load_run, mean_spectrum_error
from ensemble.cluster import SolverActorPool, connect_ray
from ensemble.run import launch
from ensemble.run_config import sampler_label
from solvers.errors import UserError

logger = logging.getLogger(__name__)

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class StudyRow:
    """One method's results (NaN where not measured)."""

    method: str
    closure: str
    members: int
    blowups: int
    wall_s: float
    wall_ratio: float
    rel_errors: list[float]
    spectrum_error: float
    crps: float
    spread_skill: float


@dataclass
class StudyResult:
    """The table and where everything went."""

    out: Path
    problem: str
    t0: float
    times: list[float]
    rows: list[StudyRow]
    skipped: dict[str, str] = field(default_factory=dict)
    execution: str = "in one process"

    @property
    def table(self) -> Path:
        return self.out / "study.md"


def plan_methods(methods: Sequence[str], problem: str, checkpoints: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``({method: closure spec}, {method: why skipped})`` in the given order."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    run, skipped = {}, {}
    for method in methods:
        if method in LES_ONLY and problem != "les":
            skipped[method] = (f"does not apply to the {problem} problem (it models the subgrid stress only, "
                               "not the missing advection term)")
        elif method in LEARNED:
            path = checkpoints / f"{method}.safetensors"
            if path.is_file():
                run[method] = str(path)
            else:
                skipped[method] = f"no checkpoint {path} (train it with `closure train --method {method}`)"
        else:
            run[method] = method
    return run, skipped


def _dataset_problem(path: str) -> str:
    import h5py

    if not Path(path).is_file():
        raise UserError(f"--data: {path}: no such dataset file")
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["problem"])
    except (OSError, KeyError) as exc:
        raise UserError(f"--data: {path}: not a closure dataset ({exc})") from None


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out: {out} exists and is not empty (the study never overwrites results)")


def score_indices(times: np.ndarray) -> list[int]:
    """Indices of the output times nearest to :data:`FRACTIONS` of the span."""
    t0, t1 = times[0], times[-1]
    return [int(np.argmin(np.abs(times - (t0 + q * (t1 - t0))))) for q in FRACTIONS]


def score_run(results: RunResults, reference: Any, method: str, wall_s: float, wall_none: float) -> StudyRow:
    """The table row of one finished run."""
    index = score_indices(results.times)
    rel = results.group_mean("rel_error_mean")
    crps = results.group_mean("crps_vorticity")
    spread_skill = results.group_mean("spread_skill")
    return StudyRow(
        method=method, closure=str(results.manifest.config["ensemble"]["closure"]),
        members=results.manifest.members_with("done") - len(results.manifest.blowups),
        blowups=len(results.manifest.blowups), wall_s=wall_s,
        wall_ratio=wall_s / wall_none if wall_none > 0 else float("nan"),
        rel_errors=[float(rel[i]) for i in index],
        spectrum_error=mean_spectrum_error(results, reference) if reference is not None else float("nan"),
        crps=float(crps[-1]), spread_skill=float(spread_skill[-1]),
    )


def run_study(config: str | Path, out: str | Path, *, members: int = 16, methods: Sequence[str] = METHODS,
              data: str | None = None, duration: float | None = None, seed: int | None = None,
              closure_every: int | None = None, sampler: str | None = None, sampler_steps: int | None = None,
              closure_precision: str | None = None, in_process: bool = True, address: str | None = None,
              progress: bool = True, echo: Callable[[str], None] = logger.info) -> StudyResult:
    """Run every applicable method on the same initial conditions and write the comparison."""
    out = Path(out)
    _check_out(out)
    shown_data = data
    if data is not None:  # absolute in the manifests, so that reports work from any directory
        data = str(Path(data).resolve())
    overrides = {"ensemble.members": members, "ensemble.init": "dataset", "ensemble.data": data,
                 "ensemble.duration": duration, "ensemble.seed": seed, "coupling.closure_every": closure_every,
                 "ensemble.sampler": sampler, "ensemble.sampler_steps": sampler_steps,
                 "ensemble.closure_precision": closure_precision}
    cfg: ProjectConfig = load_config(config, overrides)
    if duration is not None:  # an explicit duration replaces the config's absolute end time
        cfg = cfg.model_copy(update={"ensemble": cfg.ensemble.model_copy(update={"t_end": None})})
    data_path = cfg.ensemble.data or cfg.data.path
    problem = _dataset_problem(data_path)
    plan, skipped = plan_methods(list(methods), problem, Path(cfg.training.out))
    if "none" not in plan:
        plan = {"none": "none", **plan}  # the wall-time ratios need it
    for method, why in skipped.items():
        echo(f"skip {method}: {why}")
    out.mkdir(parents=True, exist_ok=True)
    owned = False if in_process else connect_ray(address)  # one Ray instance for every method
    try:
        with SolverActorPool() as pool:
            if not in_process:  # started once, before the clock of the first method starts
                pool.start(cfg)
                pool.wait_ready()
            rows, results = _run_methods(cfg, plan, out, members, in_process, address, progress, echo, pool)
    finally:
        if owned:
            import ray

            ray.shutdown()
    times = results["none"].times
    execution = ("in one process" if in_process else
                 f"on Ray ({cfg.ensemble.actors} actors, started once before the first method)")
    study = StudyResult(out, problem, float(times[0]), [float(times[j]) for j in score_indices(times)], rows,
                        skipped, execution)
    write_outputs(study, results, load_reference(results["none"]), cfg, shown_data or data_path)
    return study


def _run_methods(cfg: ProjectConfig, plan: dict[str, str], out: Path, members: int, in_process: bool,
                 address: str | None, progress: bool, echo: Callable[[str], None],
                 pool: SolverActorPool) -> tuple[list[StudyRow], dict[str, RunResults]]:
    """Launch each method's ensemble into ``out/runs/<method>`` (on Ray: on ``pool``'s actors) and score it."""
    rows, results = [], {}
    wall_none = float("nan")
    for i, (method, closure) in enumerate(plan.items(), 1):
        echo(f"[{i}/{len(plan)}] {LABELS[method]}: {members} members, closure {closure}")
        run_dir = out / "runs" / method
        start = clock.perf_counter()
        launch(cfg, run_dir, {"ensemble.closure": closure}, in_process=in_process, address=address,
               progress=progress, actor_pool=None if in_process else pool)
        wall = clock.perf_counter() - start
        if method == "none":
            wall_none = wall
        results[method] = load_run(run_dir)
        reference = load_reference(results[method])
        rows.append(score_run(results[method], reference, method, wall, wall_none))
        echo(f"    {wall:.1f} s, relative error at the end {rows[-1].rel_errors[-1]:.4g}")
    return rows, results


# ---------------------------------------------------------------- outputs

def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}g}"


def study_markdown(study: StudyResult, cfg: ProjectConfig, data_path: str) -> str:
    """The comparison table with a header saying exactly what was measured."""
    members = study.rows[0].members + study.rows[0].blowups if study.rows else 0
    times = " | ".join(f"rel. error t={t:g}" for t in study.times)
    lines = [
        "| method | wall s | × no closure | " + times + " | spectrum error | CRPS ω | spread–skill | blow-ups |",
        "|---|---|---|" + "---|" * len(study.times) + "---|---|---|---|",
    ]
    for r in study.rows:
        errors = " | ".join(_fmt(e) for e in r.rel_errors)
        lines.append(f"| {LABELS[r.method]} | {r.wall_s:.1f} | {_fmt(r.wall_ratio)} | {errors} | "
                     f"{_fmt(r.spectrum_error)} | {_fmt(r.crps)} | {_fmt(r.spread_skill, 2)} | {r.blowups} |")
    notes = [
        f"A-posteriori study, {study.problem} problem, {members} members per method from the test trajectories of "
        f"`{data_path}` (start t = {study.t0:g}, grid {cfg.data.n_coarse}², dt = {cfg.solver.dt:g}, closure every "
        f"{cfg.coupling.closure_every} steps, {_sampler_text(cfg)}, seed {cfg.ensemble.seed}).",
        f"Wall time: the whole launch (closure loading included), {study.execution}; relative error: ‖mean − ref‖/‖ref‖ of the ensemble-mean vorticity "
        "against filtered DNS, mean over initial conditions; spectrum error: RMS over 1 ≤ k ≤ n/4 of "
        "log10(E/E_ref) of the ensemble-mean spectrum at the last time (decades); CRPS ω: fair CRPS of the "
        "vorticity at the probe points at the last time; spread–skill: sqrt((M+1)/M) spread / RMSE of the "
        "ensemble at the last time, mean over initial conditions (1 for a reliable ensemble, below 1 "
        "under-dispersed).",
    ]
    for method, why in study.skipped.items():
        notes.append(f"Not run: {LABELS[method]}: {why}.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def _sampler_text(cfg: ProjectConfig) -> str:
    """Which sampler the score models used: the override, else each checkpoint's own."""
    label = sampler_label(cfg.ensemble.sampler, cfg.ensemble.sampler_steps)
    text = "score models with their checkpoints' samplers" if label is None else f"score models sampled with {label}"
    precision = cfg.ensemble.closure_precision
    return text if precision == "float32" else f"{text}, latent models' autoencoders in {precision}"


def write_outputs(study: StudyResult, results: dict[str, RunResults], reference: Any, cfg: ProjectConfig,
                  data_path: str) -> None:
    """``study.md``, ``study.json`` and the two comparison plots."""
    study.table.write_text(study_markdown(study, cfg, data_path))
    payload = {"problem": study.problem, "score_times": study.times, "data": data_path,
               "rows": [asdict(r) for r in study.rows], "skipped": study.skipped}
    (study.out / "study.json").write_text(json.dumps(payload, indent=1))
    plot_spectra(results, reference, study.out / "study_spectra.png")
    plot_errors(results, study.out / "study_errors.png")


def plot_spectra(results: dict[str, RunResults], reference: Any, path: Path) -> None:
    """Ensemble-mean spectra of all methods at the last time (averaged over groups) against the reference."""
    fig, axes = _figure(1, 1, 7.0, 5.0)
    ax = axes[0][0]
    any_run = next(iter(results.values()))
    k = np.arange(1, any_run.n // 2 + 1)
    if reference is not None:
        ax.loglog(k, np.nanmean(reference.spectrum[:, -1], axis=0)[1:], color="k", lw=2.5, alpha=0.7,
                  label="reference (filtered DNS)")
    for i, (method, run) in enumerate(results.items()):
        spectrum = np.mean([run.column("spectrum_mean", g)[-1] for g in run.groups], axis=0)
        ax.loglog(k, spectrum[1:], color=f"C{i}", lw=1.6, ls="--" if method == "none" else "-", label=LABELS[method])
    ax.axvline(any_run.n / 3, color="grey", ls=":", lw=1, label="2/3 dealiasing cut-off")
    _style(ax, "wavenumber $k$", "energy spectrum $E(k)$", f"ensemble-mean spectra, $t$ = {any_run.times[-1]:g}")
    ax.legend(fontsize=FONT_SIZE - 2)
    fig.savefig(path, dpi=110)


def plot_errors(results: dict[str, RunResults], path: Path) -> None:
    """Relative error of the ensemble mean and CRPS against time for all methods."""
    fig, axes = _figure(1, 2, 12.0, 4.3)
    panels = (("rel_error_mean", "relative error $\\|\\bar\\omega-\\omega_{ref}\\|/\\|\\omega_{ref}\\|$"),
              ("crps_vorticity", "CRPS of $\\omega$ (probe points)"))
    for ax, (name, label) in zip(axes[0], panels):
        for i, (method, run) in enumerate(results.items()):
            # t0 is left out: every member starts from the reference, so both scores are ~0 there
            ax.plot(run.times[1:], run.group_mean(name)[1:], color=f"C{i}", lw=1.6, marker="o", ms=3,
                    ls="--" if method == "none" else "-", label=LABELS[method])
        ax.set_yscale("log")
        _style(ax, "time $t$", label)
        ax.legend(fontsize=FONT_SIZE - 2)
    fig.savefig(path, dpi=110)
