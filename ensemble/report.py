"""Plots and a Markdown summary of an ensemble run directory: ``closure report RUN_DIR``.

Reads what the runner wrote (see ``ensemble/SCHEMA.md``): the manifest, the most recent
statistics flush (``stats``, one row per group and output time) and the aggregator state
(``state/aggregate-<k>.npz``: per group the ensemble-mean field and the sum of squared
deviations ``M2``, so the per-point std is ``sqrt(M2 / (M - 1))``). The reference is the
filtered DNS of the dataset named in the run's config (``[ensemble].data`` or ``[data].path``),
test trajectory ``g`` for group ``g``, at the run's output times; its spectrum is recomputed
with :func:`solvers.diagnostics.energy_spectrum`.

Figures (PNG): ``spectrum.png`` (mean ``E(k)`` with the 5-95 % band of the members against the
reference and, if given, a baseline run), ``pdfs.png`` (vorticity and closure-term PDFs),
``fields.png`` (reference, ensemble mean and std), ``metrics.png`` (relative error of the
ensemble mean, CRPS and spread-skill ratio over time). ``summary.md`` and ``summary.json`` hold
the numbers; every number is read from the Parquet statistics (group averages over groups).

Spectrum error (here and in the study): ``sqrt(mean_k (log10 E(k) - log10 E_ref(k))^2)`` over the
shells ``1 <= k <= n/4`` (half the coarse Nyquist), the RMS of the log-ratio in decades.

An incomplete run is reported as it stands (the latest flush) and marked ``partial``.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from ensemble.manifest import MANIFEST_NAME, Manifest
from ensemble.parquet_sink import latest_stats
from solvers.diagnostics import energy_spectrum
from solvers.errors import UserError
from solvers.grid import SpectralGrid

logger = logging.getLogger(__name__)

FONT_SIZE = 11


# ---------------------------------------------------------------- reading a run

@dataclass
class RunResults:
    """What a run directory holds, as arrays.

    Attributes:
        root: the run directory.
        manifest: its manifest.
        stats: columns of the latest flush, rows sorted by (group, time); scalars ``[R]``,
            list columns ``[R, L]`` float arrays.
        groups: ``[G]`` group ids present; times: ``[T]`` output times of those rows.
        mean, std: ``{group: [T, n, n]}`` ensemble mean and per-point std (from the state file).
        bins: ``vorticity_edges`` and ``closure_edges`` of the PDFs.
    """

    root: Path
    manifest: Manifest
    stats: dict[str, np.ndarray]
    groups: np.ndarray
    times: np.ndarray
    mean: dict[int, np.ndarray] = field(default_factory=dict)
    std: dict[int, np.ndarray] = field(default_factory=dict)
    bins: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return not self.manifest.complete

    @property
    def has_stats(self) -> bool:
        return len(self.groups) > 0

    @property
    def n(self) -> int:
        return int(self.manifest.plan["n"])

    @property
    def closure_name(self) -> str:
        closure = str(self.manifest.config["ensemble"]["closure"])
        return Path(closure).stem if closure.endswith(".safetensors") else closure

    def column(self, name: str, group: int) -> np.ndarray:
        """Values of ``name`` for one group over time: ``[T]`` (or ``[T, L]`` for list columns)."""
        return self.stats[name][self.stats["group"] == group]

    def group_mean(self, name: str) -> np.ndarray:
        """Average over groups of a scalar column, per output time ``[T]`` (NaN-skipping)."""
        rows = np.stack([self.column(name, g) for g in self.groups])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN times (no reference) stay NaN
            return np.nanmean(rows, axis=0)


def load_run(run_dir: str | Path) -> RunResults:
    """Read a run directory (UserError if it is not one)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such run directory")
    if not (root / MANIFEST_NAME).is_file():
        raise UserError(f"{root}: not an ensemble run directory (no {MANIFEST_NAME}; "
                        "create one with `closure ensemble launch`)")
    manifest = Manifest.load(root)
    table = latest_stats(root).sort_by([("group", "ascending"), ("time", "ascending")])
    stats = {name: _column_array(table, name) for name in table.column_names}
    groups = np.unique(stats["group"]).astype(int) if table.num_rows else np.zeros(0, int)
    times = stats["time"][stats["group"] == groups[0]] if len(groups) else np.zeros(0)
    results = RunResults(root, manifest, stats, groups, times, bins=_pdf_edges(root, manifest))
    _load_fields(results)
    return results


def _column_array(table: Any, name: str) -> np.ndarray:
    column = table[name]
    if str(column.type).startswith("list"):
        values = np.array(column.to_pylist(), dtype=np.float64)
        return values.reshape(table.num_rows, -1) if table.num_rows else np.zeros((0, 0))
    return column.to_numpy()


def _pdf_edges(root: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """Bin edges of the PDFs: from the stats files' metadata, else from the run's config."""
    files = sorted((root / "stats").glob("flush-*.parquet"))
    if files:
        meta = pq.read_schema(files[-1]).metadata or {}
        if b"bins" in meta:
            bins = json.loads(meta[b"bins"])
            return {k: np.asarray(bins[k]) for k in ("vorticity_edges", "closure_edges")}
    ens = manifest.config["ensemble"]
    count = int(ens["pdf_bins"]) + 1
    return {
        "vorticity_edges": np.linspace(-ens["vorticity_range"], ens["vorticity_range"], count),
        "closure_edges": np.linspace(-ens["closure_range"], ens["closure_range"], count),
    }


def _load_fields(results: RunResults) -> None:
    """Ensemble mean and std fields per group from the aggregator state (if present)."""
    name = results.manifest.state_file
    if not name or not (results.root / name).is_file():
        return
    with np.load(results.root / name, allow_pickle=False) as arrays:
        for g in arrays["groups"]:
            count = np.asarray(arrays[f"g{int(g)}.count"], np.float64)
            dof = np.where(count > 1, count - 1, np.nan)[:, None, None]
            results.mean[int(g)] = np.asarray(arrays[f"g{int(g)}.mean"])
            with np.errstate(invalid="ignore"):
                results.std[int(g)] = np.sqrt(np.asarray(arrays[f"g{int(g)}.m2"]) / dof)


# ---------------------------------------------------------------- the reference

@dataclass
class ReferenceData:
    """Filtered DNS at the run's output times, per group.

    Attributes:
        vorticity, closure: ``[G, T, n, n]`` (NaN where the dataset has no matching time).
        spectrum: ``[G, T, n/2 + 1]`` energy spectrum of the reference vorticity.
        path: the dataset file.
    """

    vorticity: np.ndarray
    closure: np.ndarray
    spectrum: np.ndarray
    path: str


def load_reference(results: RunResults) -> ReferenceData | None:
    """Reference of a dataset-initialised run (None for random/.npy initial conditions or a missing file)."""
    ens = results.manifest.config["ensemble"]
    if ens.get("init") != "dataset" or not results.has_stats:
        return None
    path = ens.get("data") or results.manifest.config["data"]["path"]
    from solvers.dataset import read_dataset

    try:
        data = read_dataset(path, split="test")
    except UserError as exc:
        logger.warning("no reference: %s", exc)
        return None
    n = data.vorticity.shape[-1]
    shape = (len(results.groups), len(results.times), n, n)
    vorticity, closure = np.full(shape, np.nan), np.full(shape, np.nan)
    for j, t in enumerate(results.times):
        k = int(np.argmin(np.abs(data.time - t)))
        if abs(data.time[k] - t) < 1e-6 * max(1.0, abs(t)):
            vorticity[:, j] = data.vorticity[results.groups, k]
            closure[:, j] = data.closure[results.groups, k]
    grid = SpectralGrid(n, dtype=torch.float64)
    spectrum = energy_spectrum(torch.from_numpy(np.nan_to_num(vorticity)), grid).numpy()
    spectrum[~np.isfinite(vorticity).all(axis=(-2, -1))] = np.nan
    return ReferenceData(vorticity, closure, spectrum, str(path))


def spectrum_error(spectrum: np.ndarray, reference: np.ndarray) -> float:
    """RMS over shells ``1 <= k <= n/4`` of ``log10(E / E_ref)`` (decades); inputs ``[n/2 + 1]``."""
    k_max = (len(spectrum) - 1) // 2
    ratio = np.log10(np.asarray(spectrum[1:k_max + 1]) / np.asarray(reference[1:k_max + 1]))
    return float(np.sqrt(np.mean(ratio**2)))


def mean_spectrum_error(results: RunResults, reference: ReferenceData, time_index: int = -1) -> float:
    """Spectrum error of each group's mean spectrum at one output time, averaged over groups."""
    errors = [spectrum_error(results.column("spectrum_mean", g)[time_index], reference.spectrum[i, time_index])
              for i, g in enumerate(results.groups)]
    return float(np.nanmean(errors)) if errors else float("nan")


# ---------------------------------------------------------------- figures

def _figure(rows: int, cols: int, width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _style(ax: Any, xlabel: str, ylabel: str, title: str | None = None) -> None:
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.grid(True, which="major", alpha=0.3)


def plot_spectrum(results: RunResults, reference: ReferenceData | None, baseline: RunResults | None,
                  path: Path, max_groups: int = 4) -> None:
    """Log-log ``E(k)`` at the last output time, one panel per group (up to ``max_groups``)."""
    groups = results.groups[:max_groups]
    fig, axes = _figure(1, len(groups), 4.2 * len(groups) + 0.5, 4.2)
    k = np.arange(results.n // 2 + 1)
    t = results.times[-1]
    for i, (ax, g) in enumerate(zip(axes[0], groups)):
        sel = slice(1, None)
        ax.fill_between(k[sel], results.column("spectrum_q05", g)[-1][sel], results.column("spectrum_q95", g)[-1][sel],
                        color="C0", alpha=0.25, label="members 5–95 %")
        ax.loglog(k[sel], results.column("spectrum_mean", g)[-1][sel], color="C0", lw=2,
                  label=f"ensemble mean ({results.closure_name})")
        if reference is not None:
            ax.loglog(k[sel], reference.spectrum[i, -1][sel], color="k", lw=1.5, label="reference (filtered DNS)")
        if baseline is not None and g in baseline.groups and len(baseline.times) == len(results.times):
            ax.loglog(k[sel], baseline.column("spectrum_mean", g)[-1][sel], color="C3", ls="--", lw=1.5,
                      label=f"{baseline.closure_name} (baseline)")
        ax.axvline(results.n / 3, color="grey", ls=":", lw=1, label="2/3 dealiasing cut-off")
        _style(ax, "wavenumber $k$", "energy spectrum $E(k)$" if i == 0 else "", f"group {g}, $t$ = {t:g}")
    axes[0][0].legend(fontsize=FONT_SIZE - 2, loc="lower left")
    fig.savefig(path, dpi=110)


def _pooled_pdf(results: RunResults, name: str, time_index: int) -> np.ndarray:
    """PDF pooled over groups (members-weighted) at one output time ``[bins]``."""
    weights = np.array([results.column("members", g)[time_index] for g in results.groups], np.float64)
    pdfs = np.stack([results.column(name, g)[time_index] for g in results.groups])
    ok = np.isfinite(pdfs).all(axis=1) & (weights > 0)
    if not ok.any():
        return np.full(pdfs.shape[1], np.nan)
    return (weights[ok, None] * pdfs[ok]).sum(0) / weights[ok].sum()


def _reference_pdf(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = values[np.isfinite(values)]
    counts, _ = np.histogram(values, bins=edges)
    return counts / max(values.size, 1) / (edges[1] - edges[0])


def _limit_to_support(ax: Any, centers: np.ndarray, densities: list[np.ndarray]) -> None:
    """Zoom a PDF panel to the bins with mass (plus a margin) and four decades below the peak."""
    stacked = np.nan_to_num(np.stack(densities))
    occupied = np.flatnonzero(stacked.max(0) > 0)
    if occupied.size == 0:
        return
    width = centers[1] - centers[0]
    half = max(abs(centers[occupied[0]]), abs(centers[occupied[-1]])) + 3 * width
    ax.set_xlim(-half, half)
    peak = stacked.max()
    ax.set_ylim(max(stacked[stacked > 0].min() / 2, peak * 1e-4), peak * 2)


def plot_pdfs(results: RunResults, reference: ReferenceData | None, baseline: RunResults | None, path: Path) -> None:
    """Vorticity and closure-term PDFs (log density) at the last output time, pooled over groups."""
    fig, axes = _figure(1, 2, 10.5, 4.2)
    t = results.times[-1]
    panels = (("vorticity", "vorticity $\\omega$", "vorticity_edges"),
              ("closure", "closure term $C$", "closure_edges"))
    for ax, (name, label, edges_key) in zip(axes[0], panels):
        edges = results.bins[edges_key]
        centers = 0.5 * (edges[1:] + edges[:-1])
        curves = []
        if reference is not None:
            curves.append((_reference_pdf(getattr(reference, name)[:, -1], edges), "reference (filtered DNS)",
                           dict(color="k", lw=2.5, alpha=0.6)))
        curves.append((_pooled_pdf(results, f"{name}_pdf", -1), f"ensemble ({results.closure_name})",
                       dict(color="C0", lw=1.8)))
        if baseline is not None and name == "vorticity" and baseline.has_stats:
            curves.append((_pooled_pdf(baseline, f"{name}_pdf", -1), f"{baseline.closure_name} (baseline)",
                           dict(color="C3", ls="--", lw=1.5)))
        for density, text, style in curves:
            ax.semilogy(centers, np.where(density > 0, density, np.nan), label=text, **style)
        _limit_to_support(ax, centers, [c[0] for c in curves])
        _style(ax, label, "probability density", f"{name} PDF, $t$ = {t:g}, all groups")
        ax.legend(fontsize=FONT_SIZE - 2)
    fig.savefig(path, dpi=110)


def plot_fields(results: RunResults, reference: ReferenceData | None, path: Path, group: int | None = None) -> None:
    """Reference, ensemble mean and ensemble std of one group at the last output time."""
    g = int(results.groups[0] if group is None else group)
    t = results.times[-1]
    panels = []
    if reference is not None:
        panels.append(("reference $\\omega$ (filtered DNS)", reference.vorticity[list(results.groups).index(g), -1],
                       "RdBu_r"))
    panels.append((f"ensemble mean $\\bar\\omega$ ({results.closure_name})", results.mean[g][-1], "RdBu_r"))
    panels.append(("ensemble std $\\sigma_\\omega$", results.std[g][-1], "viridis"))
    fig, axes = _figure(1, len(panels), 4.3 * len(panels), 4.0)
    signed = max(float(np.nanmax(np.abs(p[1]))) for p in panels if p[2] == "RdBu_r")
    for ax, (title, values, cmap) in zip(axes[0], panels):
        limits = dict(vmin=-signed, vmax=signed) if cmap == "RdBu_r" else dict(vmin=0.0)
        # w[i, j] is at (x = i/n, y = j/n): transpose so that x runs along the horizontal axis
        image = ax.imshow(values.T, origin="lower", extent=(0, 1, 0, 1), cmap=cmap, **limits)
        fig.colorbar(image, ax=ax, shrink=0.85)
        _style(ax, "$x$", "$y$", f"{title}\ngroup {g}, $t$ = {t:g}")
        ax.grid(False)
    fig.savefig(path, dpi=110)


def plot_metrics(results: RunResults, baseline: RunResults | None, path: Path) -> None:
    """Relative error of the ensemble mean, CRPS and spread-skill ratio against time (mean over groups)."""
    fig, axes = _figure(1, 3, 14.0, 4.0)
    panels = (("rel_error_mean", "relative error $\\|\\bar\\omega-\\omega_{ref}\\|/\\|\\omega_{ref}\\|$"),
              ("crps_vorticity", "CRPS of $\\omega$ (probe points)"),
              ("spread_skill", "spread–skill ratio"))
    for ax, (name, label) in zip(axes[0], panels):
        # at a time where every member is identical (the shared initial condition) the ratio is undefined
        shown = results.group_mean("spread") > 0 if name == "spread_skill" else np.ones(len(results.times), bool)
        for g in results.groups:
            ax.plot(results.times[shown], results.column(name, g)[shown], color="C0", lw=0.6, alpha=0.35)
        ax.plot(results.times[shown], results.group_mean(name)[shown], color="C0", lw=2, marker="o", ms=3,
                label=f"{results.closure_name} (mean over groups)")
        if baseline is not None and baseline.has_stats and name != "spread_skill":
            ax.plot(baseline.times, baseline.group_mean(name), color="C3", ls="--", lw=1.5, marker="s", ms=3,
                    label=f"{baseline.closure_name} (baseline)")
        if name == "spread_skill":
            ax.axhline(1.0, color="k", ls=":", lw=1, label="reliable ensemble (1)")
        _style(ax, "time $t$", label)
        ax.legend(fontsize=FONT_SIZE - 2)
    axes[0][0].plot([], [], color="C0", lw=0.6, alpha=0.35, label="single groups")
    axes[0][0].legend(fontsize=FONT_SIZE - 2)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- summary

def summary_numbers(results: RunResults, reference: ReferenceData | None,
                    baseline: RunResults | None) -> dict[str, Any]:
    """The numbers of ``summary.json``/``summary.md``: per output time, group averages."""
    m = results.manifest
    numbers: dict[str, Any] = {
        "run_dir": str(results.root), "run_id": m.run_id, "partial": results.partial,
        "closure": str(m.config["ensemble"]["closure"]), "members_done": m.members_with("done"),
        "members_total": m.members_total, "blowups": len(m.blowups), "flushes": m.flushes,
        "groups": [int(g) for g in results.groups], "reference": reference.path if reference else None,
    }
    if not results.has_stats:
        numbers["per_time"] = []
        return numbers
    members = np.stack([results.column("members", g) for g in results.groups]).sum(0)
    columns = {name: results.group_mean(name) for name in
               ("rel_error_mean", "crps_vorticity", "spread_skill", "spread", "energy_mean")}
    numbers["per_time"] = [
        {"time": float(t), "members": int(members[j]), **{k: float(v[j]) for k, v in columns.items()}}
        for j, t in enumerate(results.times)
    ]
    if reference is not None:
        numbers["spectrum_error_final"] = mean_spectrum_error(results, reference)
    if baseline is not None and baseline.has_stats:
        numbers["baseline"] = {
            "run_dir": str(baseline.root), "closure": str(baseline.manifest.config["ensemble"]["closure"]),
            "rel_error_final": float(baseline.group_mean("rel_error_mean")[-1]),
            "crps_vorticity_final": float(baseline.group_mean("crps_vorticity")[-1]),
        }
        if reference is not None and len(baseline.times) == len(results.times):
            numbers["baseline"]["spectrum_error_final"] = mean_spectrum_error(baseline, reference)
    return numbers


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def summary_markdown(numbers: dict[str, Any], plots: list[str]) -> str:
    """``summary.md``: status, a per-time table, the final spectrum error and the plots."""
    status = "PARTIAL (run incomplete; statistics of the members finished so far)" if numbers["partial"] else "complete"
    lines = [
        f"# Ensemble run report: {numbers['run_dir']}",
        "",
        f"- status: **{status}**",
        f"- run id: `{numbers['run_id']}`, closure: `{numbers['closure']}`",
        f"- members: {numbers['members_done']} of {numbers['members_total']} finished, "
        f"{numbers['blowups']} blow-ups (excluded from all statistics), {numbers['flushes']} statistics flushes",
        f"- groups (initial conditions / reference trajectories): {len(numbers['groups'])}",
        f"- reference: {numbers['reference'] or 'none'}",
        "",
    ]
    if not numbers["per_time"]:
        lines.append("No statistics have been written yet (no flush has happened).")
        return "\n".join(lines) + "\n"
    lines += [
        "Numbers are averages over groups of the latest statistics flush (`stats` table).",
        "",
        "| time | members | rel. error of mean | CRPS ω | spread–skill | spread | energy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in numbers["per_time"]:
        lines.append(f"| {row['time']:g} | {row['members']} | {_fmt(row['rel_error_mean'])} | "
                     f"{_fmt(row['crps_vorticity'])} | {_fmt(row['spread_skill'])} | {_fmt(row['spread'])} | "
                     f"{_fmt(row['energy_mean'])} |")
    lines.append("")
    if "spectrum_error_final" in numbers:
        lines.append(f"Spectrum error at the last time (RMS of log10 E/E_ref over 1 ≤ k ≤ n/4): "
                     f"{_fmt(numbers['spectrum_error_final'])}")
    if "baseline" in numbers:
        b = numbers["baseline"]
        lines.append(f"Baseline `{b['closure']}` ({b['run_dir']}) at the last time: relative error "
                     f"{_fmt(b['rel_error_final'])}, CRPS ω {_fmt(b['crps_vorticity_final'])}"
                     + (f", spectrum error {_fmt(b['spectrum_error_final'])}" if "spectrum_error_final" in b else ""))
    if numbers["reference"] is None:
        lines.append("No reference (random or .npy initial conditions): no error, CRPS or spread-skill metrics.")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    """Where a report went and what it says."""

    out: Path
    numbers: dict[str, Any]
    plots: list[Path]
    partial: bool

    @property
    def summary(self) -> Path:
        return self.out / "summary.md"


def make_report(run_dir: str | Path, baseline: str | Path | None = None, out: str | Path | None = None) -> Report:
    """Write the plots, ``summary.md`` and ``summary.json`` of a run into ``out`` (default RUN/report)."""
    results = load_run(run_dir)
    base = load_run(baseline) if baseline is not None else None
    target = Path(out) if out is not None else results.root / "report"
    if target.exists() and not target.is_dir():
        raise UserError(f"--out: {target} exists and is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    reference = load_reference(results)
    plots: list[Path] = []
    if results.has_stats:
        plot_spectrum(results, reference, base, target / "spectrum.png")
        plot_pdfs(results, reference, base, target / "pdfs.png")
        plots += [target / "spectrum.png", target / "pdfs.png"]
        if results.mean:
            plot_fields(results, reference, target / "fields.png")
            plots.append(target / "fields.png")
        if np.isfinite(results.group_mean("rel_error_mean")).any():  # error metrics need a reference
            plot_metrics(results, base, target / "metrics.png")
            plots.append(target / "metrics.png")
    numbers = summary_numbers(results, reference, base)
    (target / "summary.json").write_text(json.dumps(numbers, indent=1))
    (target / "summary.md").write_text(summary_markdown(numbers, [p.name for p in plots]))
    return Report(target, numbers, plots, results.partial)
