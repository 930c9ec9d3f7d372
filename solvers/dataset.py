"""Resumable HDF5 closure datasets: DNS on the fine grid, coarse fields and exact closure terms.

Layout of a file (``format_version`` 1)::

    vorticity  float32 [trajectories, times, n, n]   coarse resolved vorticity
    closure    float32 [trajectories, times, n, n]   closure term C (added to the coarse rhs)
    time       float64 [times]
    done       bool    [trajectories]                trajectory completely written
    attrs: complete, problem, n_fine, n_coarse, n_train, dt, seed, config (JSON),
           versions (JSON), generation_key (JSON), format_version

The closure term is exact (see :mod:`solvers.closure_terms`):

* ``missing_physics``: ``w = subsample(w_fine)``, ``C = H = -u.grad w + sigma xi`` with
  ``sigma xi`` the stochastic forcing of the step that ended at the snapshot;
* ``les``: ``w = filter(w_fine)``, ``C = -Pi``.

Generation is batch by batch: a batch's snapshots are written, then its ``done`` flags set
and the file flushed, so an interrupted run loses at most one batch; running again with the
same config resumes. ``complete`` is set only at the very end.

The :class:`~solvers.errors.UserError` raised by the dataset code never overwrites a file.
This module imports :class:`ensemble.config.ProjectConfig` only for type hints (solvers/ does
not depend on ensemble/ at run time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time as clock
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np
import torch

from solvers.closure_terms import les_subgrid_term, missing_physics_term
from solvers.config import steps_in
from solvers.errors import UserError
from solvers.factory import build_simulation
from solvers.filters import LESFilter, subsample
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field
from solvers.random import MemberRandom, member_seeds
from solvers.simulation import Snapshot

if TYPE_CHECKING:
    from ensemble.config import ProjectConfig

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARRAYS = ("vorticity", "closure", "time", "done")
REQUIRED_ATTRS = ("complete", "problem", "n_fine", "n_coarse", "n_train", "dt", "seed", "config",
                  "versions", "format_version")
Split = Literal["train", "test", "all"]


@dataclass
class ClosureData:
    """Arrays of a closure dataset (one split).

    Attributes:
        vorticity: ``[traj, times, n, n]`` float32 coarse vorticity.
        closure: ``[traj, times, n, n]`` float32 closure term ``C``.
        time: ``[times]`` float64.
        attrs: the file's attributes (``config`` and ``versions`` as JSON strings).
        trajectories: ``[traj]`` indices of these trajectories in the file.
    """

    vorticity: np.ndarray
    closure: np.ndarray
    time: np.ndarray
    attrs: dict[str, Any]
    trajectories: np.ndarray


@dataclass(frozen=True)
class Schedule:
    """Step counts of a generation run: spin-up, snapshot cadence, number of stored times."""

    dt: float
    spin_steps: int
    snapshot_steps: int
    n_times: int

    @property
    def total_steps(self) -> int:
        return self.spin_steps + (self.n_times - 1) * self.snapshot_steps

    @property
    def output_every(self) -> int:
        """Snapshot cadence of the run: divides both the spin-up and the storage cadence."""
        return math.gcd(self.spin_steps, self.snapshot_steps) if self.spin_steps else self.snapshot_steps

    def time_index(self, step: int) -> int | None:
        """Index in the stored ``time`` axis of the snapshot at ``step`` (None: not stored)."""
        offset = step - self.spin_steps
        if offset < 0 or offset % self.snapshot_steps:
            return None
        return offset // self.snapshot_steps

    def times(self, t_start: float) -> np.ndarray:
        return t_start + self.dt * self.snapshot_steps * np.arange(self.n_times, dtype=np.float64)


def make_schedule(config: ProjectConfig) -> Schedule:
    """Step counts from ``[data]`` and ``[solver].dt``; a UserError names an incompatible key."""
    data, dt = config.data, config.solver.dt
    spin = 0 if data.t_start == 0 else steps_in(data.t_start, dt, "[data].t_start")
    every = steps_in(data.snapshot_interval, dt, "[data].snapshot_interval")
    window = steps_in(data.t_end - data.t_start, dt, "[data].t_end - [data].t_start")
    if window % every:
        raise UserError(
            f"[data]: t_end - t_start ({data.t_end - data.t_start:g}) must be a multiple of "
            f"snapshot_interval ({data.snapshot_interval:g})"
        )
    return Schedule(dt=dt, spin_steps=spin, snapshot_steps=every, n_times=window // every + 1)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the data (recorded in every file)."""
    try:
        own = metadata.version("latent-closure")
    except metadata.PackageNotFoundError:
        own = "unknown"
    return {"latent-closure": own, "torch": torch.__version__, "numpy": np.__version__,
            "h5py": h5py.__version__}


def generation_key(config: ProjectConfig) -> str:
    """JSON of the settings that determine the data (a resume must match it exactly).

    Excluded: where the file goes (``data.path``), how work is split (``data.batch_size``)
    and the device, since a member's result does not depend on them; and the sections
    that do not affect data (model, training, ensemble, coupling).
    """
    dump = config.model_dump(mode="json")
    data = {k: v for k, v in dump["data"].items() if k not in ("path", "batch_size")}
    solver = {k: v for k, v in dump["solver"].items() if k != "device"}
    return json.dumps({"physics": dump["physics"], "solver": solver, "data": data}, sort_keys=True)


# ----------------------------------------------------------------------------- generation


class FieldsFromDNS:
    """Map fine DNS snapshots to ``(coarse vorticity, closure term)``, both ``[M, n, n]``.

    Args:
        fine: the DNS grid.
        config: project config (``data.problem``, ``n_coarse``, ``filter_width``).
        dt: time step (turns the stochastic increment ``dt sigma xi_hat`` into ``sigma xi``).
    """

    def __init__(self, fine: SpectralGrid, config: ProjectConfig, dt: float) -> None:
        self.fine, self.dt = fine, dt
        self.problem = config.data.problem
        self.n_coarse = config.data.n_coarse
        if self.problem == "les":
            coarse = SpectralGrid(self.n_coarse, device=fine.device, dtype=fine.dtype)
            self.filter = LESFilter(fine, coarse, config.data.filter_width)

    def __call__(self, snap: Snapshot) -> tuple[torch.Tensor, torch.Tensor]:
        w_hat = self.fine.to_spectral(snap.vorticity)
        if self.problem == "les":
            return self.filter(snap.vorticity), les_subgrid_term(w_hat, self.filter)
        noise = None
        if snap.forcing_increment_hat is not None:
            noise = self.fine.to_physical(snap.forcing_increment_hat / self.dt)
        return subsample(snap.vorticity, self.n_coarse), missing_physics_term(w_hat, self.fine, self.n_coarse, noise)


def _create_file(path: Path, config: ProjectConfig, schedule: Schedule) -> None:
    """Create an empty dataset file (all ``done`` False, ``complete`` False)."""
    data = config.data
    shape = (data.trajectories, schedule.n_times, data.n_coarse, data.n_coarse)
    chunks = (1, 1, data.n_coarse, data.n_coarse)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name in ("vorticity", "closure"):
            f.create_dataset(name, shape=shape, dtype="float32", chunks=chunks, fillvalue=np.nan)
        f.create_dataset("time", data=schedule.times(data.t_start))
        f.create_dataset("done", data=np.zeros(data.trajectories, dtype=bool))
        f.attrs.update({
            "complete": False, "problem": data.problem, "n_fine": data.n_fine,
            "n_coarse": data.n_coarse, "n_train": data.n_train, "dt": config.solver.dt,
            "seed": data.seed, "config": config.to_json(), "versions": json.dumps(package_versions()),
            "generation_key": generation_key(config), "format_version": FORMAT_VERSION,
        })


def _differing_keys(stored: str, wanted: str) -> list[str]:
    a, b = json.loads(stored), json.loads(wanted)
    return [f"[{s}].{k}" for s in sorted(set(a) | set(b))
            for k in sorted(set(a.get(s, {})) | set(b.get(s, {}))) if a.get(s, {}).get(k) != b.get(s, {}).get(k)]


def _open_for_resume(path: Path, config: ProjectConfig) -> np.ndarray:
    """Check an existing file was made with the same settings; return its ``done`` flags."""
    try:
        with h5py.File(path, "r") as f:
            key = f.attrs.get("generation_key")
            if key is None or any(name not in f for name in ARRAYS):
                raise UserError(f"{path}: exists and is not a closure dataset; choose another --out")
            if key != generation_key(config):
                diff = ", ".join(_differing_keys(str(key), generation_key(config))) or "settings"
                raise UserError(f"{path}: exists with a different config ({diff}); choose another --out")
            return np.asarray(f["done"][:], dtype=bool)
    except OSError as exc:
        raise UserError(f"{path}: exists and is not a readable HDF5 file ({exc})") from None


def _is_complete(path: Path) -> bool:
    with h5py.File(path, "r") as f:
        return bool(f.attrs.get("complete", False))


def _progress_bar(enabled: bool):
    """A rich progress bar with elapsed time and ETA (disabled: renders nothing)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled, transient=False)


def _run_batch(
    f: h5py.File, config: ProjectConfig, schedule: Schedule, batch: list[int], advance
) -> None:
    """Integrate the trajectories ``batch`` and write their stored snapshots into ``f``."""
    data, physics = config.data, config.physics
    sim = build_simulation(physics, config.solver, data.n_fine, model="full", noise=True)
    fine = sim.equation.grid
    seeds = member_seeds(data.seed, batch)
    w0 = gaussian_random_field(fine, MemberRandom(seeds), physics.init_alpha, physics.init_tau)
    to_coarse = FieldsFromDNS(fine, config, schedule.dt)
    rows = slice(batch[0], batch[-1] + 1)
    previous_step = 0
    for snap in sim.run(w0, seeds, schedule.total_steps, schedule.output_every):
        if snap.blow_ups:
            lost = snap.blow_ups[0]
            raise UserError(
                f"DNS of trajectory {batch[lost.member]} blew up at step {lost.step} (t = {lost.time:g}); "
                f"reduce [solver].dt ({schedule.dt:g})"
            )
        advance(len(batch) * (snap.step - previous_step) * schedule.dt)
        previous_step = snap.step
        index = schedule.time_index(snap.step)
        if index is None:
            continue
        w, c = to_coarse(snap)
        f["vorticity"][rows, index] = w.detach().cpu().numpy().astype(np.float32)
        f["closure"][rows, index] = c.detach().cpu().numpy().astype(np.float32)


def _batches(pending: list[int], size: int) -> list[list[int]]:
    """Consecutive runs of pending trajectory indices, at most ``size`` each."""
    out: list[list[int]] = []
    for k in pending:
        if out and len(out[-1]) < size and out[-1][-1] == k - 1:
            out[-1].append(k)
        else:
            out.append([k])
    return out


def generate_dataset(
    config: ProjectConfig,
    path: str | Path | None = None,
    progress: bool = True,
    *,
    max_batches: int | None = None,
) -> Path:
    """Run the DNS of ``config.data`` and write (or resume) the closure dataset at ``path``.

    Args:
        config: project config; ``[data]`` sets grids, window and split, ``[physics]`` and
            ``[solver]`` the DNS (device and precision included).
        path: output file (default ``config.data.path``). An existing file made with the same
            settings is resumed (trajectories marked ``done`` are skipped); one made with
            different settings is a :class:`UserError` and is left untouched.
        progress: show a rich progress bar (members x simulated time) with an ETA.
        max_batches: stop after this many batches, leaving an incomplete file that a later
            call resumes (for chunked generation and tests); None = run to the end.

    Returns:
        The path of the file.
    """
    path = Path(config.data.path if path is None else path)
    schedule = make_schedule(config)
    config.solver.torch_device()  # resolve early: a bad device is a UserError before any file I/O
    if path.exists():
        done = _open_for_resume(path, config)
    else:
        _create_file(path, config, schedule)
        done = np.zeros(config.data.trajectories, dtype=bool)
    pending = [k for k in range(config.data.trajectories) if not done[k]]
    if not pending:  # all written; an interruption may have come before `complete` was set
        if not _is_complete(path):
            with h5py.File(path, "r+") as f:
                f.attrs["complete"] = True
        return path
    batches = _batches(pending, config.data.batch_size)
    if max_batches is not None:
        batches = batches[:max_batches]
    total = len([k for b in batches for k in b]) * schedule.total_steps * schedule.dt
    bar = _progress_bar(progress)
    start = clock.perf_counter()
    with torch.no_grad(), h5py.File(path, "r+") as f, bar:
        task = bar.add_task(f"DNS {config.data.n_fine}^2 -> {path.name}", total=max(total, 1e-12))
        for batch in batches:
            _run_batch(f, config, schedule, batch, lambda amount: bar.advance(task, amount))
            f["done"][batch[0] : batch[-1] + 1] = True
            f.flush()
            logger.info("trajectories %d-%d written to %s", batch[0], batch[-1], path)
        complete = bool(np.all(f["done"][:]))
        f.attrs["complete"] = complete
    logger.info("generation of %s: %d batches in %.1f s (complete=%s)", path, len(batches),
                clock.perf_counter() - start, complete)
    return path


# ----------------------------------------------------------------------------- reading


def _python(value: Any) -> Any:
    """Numpy scalars and byte strings from h5py attrs -> plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _validate(f: h5py.File, path: Path) -> dict[str, Any]:
    """Check arrays and attrs of an open dataset file; return its attrs as Python values."""
    missing = [name for name in ARRAYS if name not in f] + [a for a in REQUIRED_ATTRS if a not in f.attrs]
    if missing:
        raise UserError(f"{path}: not a closure dataset (missing {', '.join(missing)})")
    attrs = {k: _python(v) for k, v in f.attrs.items()}
    if attrs["format_version"] != FORMAT_VERSION:
        raise UserError(f"{path}: format_version {attrs['format_version']}, this reader knows {FORMAT_VERSION}")
    n = attrs["n_coarse"]
    w, c, t, done = f["vorticity"], f["closure"], f["time"], f["done"]
    if w.ndim != 4 or w.shape[2:] != (n, n) or c.shape != w.shape:
        raise UserError(f"{path}: vorticity {w.shape} / closure {c.shape} are not [traj, times, {n}, {n}]")
    if t.shape != (w.shape[1],) or done.shape != (w.shape[0],):
        raise UserError(f"{path}: time {t.shape} / done {done.shape} do not match vorticity {w.shape}")
    if not 0 <= attrs["n_train"] <= w.shape[0]:
        raise UserError(f"{path}: n_train {attrs['n_train']} out of range for {w.shape[0]} trajectories")
    return attrs


def read_dataset(path: str | Path, split: Split = "train", allow_partial: bool = False) -> ClosureData:
    """Read one split of a closure dataset into memory.

    Args:
        path: the HDF5 file.
        split: ``train`` (the first ``n_train`` trajectories), ``test`` (the rest) or ``all``.
        allow_partial: accept a file whose generation has not finished (only trajectories
            marked ``done`` are returned); otherwise such a file is a :class:`UserError`.
    """
    path = Path(path)
    if split not in ("train", "test", "all"):
        raise UserError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        attrs = _validate(f, path)
        done = np.asarray(f["done"][:], dtype=bool)
        if not attrs["complete"] and not allow_partial:
            raise UserError(
                f"{path}: incomplete dataset ({int(done.sum())} of {done.size} trajectories done); "
                "run `closure data generate` again to resume it"
            )
        n_train, total = attrs["n_train"], done.size
        wanted = {"train": range(n_train), "test": range(n_train, total), "all": range(total)}[split]
        index = np.array([k for k in wanted if done[k]], dtype=np.int64)
        return ClosureData(
            vorticity=f["vorticity"][index] if index.size else np.empty((0, *f["vorticity"].shape[1:]), np.float32),
            closure=f["closure"][index] if index.size else np.empty((0, *f["closure"].shape[1:]), np.float32),
            time=f["time"][:],
            attrs=attrs,
            trajectories=index,
        )


def dataset_fingerprint(path: str | Path) -> str:
    """SHA-256 (hex) of the arrays ``vorticity``, ``closure``, ``time``, ``done`` and their shapes.

    Read one trajectory at a time, so memory stays small; identical data give identical
    fingerprints whatever the chunking or compression of the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file")
    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for name in ARRAYS:
            if name not in f:
                raise UserError(f"{path}: not a closure dataset (missing {name})")
            ds = f[name]
            digest.update(f"{name}:{ds.dtype.str}:{ds.shape}".encode())
            if ds.ndim == 4:
                for k in range(ds.shape[0]):
                    digest.update(np.ascontiguousarray(ds[k]).tobytes())
            else:
                digest.update(np.ascontiguousarray(ds[:]).tobytes())
    return digest.hexdigest()
