"""The solver worker: integrates chunks of members and reduces them to summaries.

A :class:`SolverWorker` integrates one *chunk* of members as one ``[members, n, n]`` batch with
:func:`solvers.factory.build_simulation`, and returns small per-member, per-output-time
summaries plus the chunk's mergeable :class:`~ensemble.statistics.GroupStatistics` (never the
fields, unless snapshots were asked for). Member ``k`` uses seed ``mix_seed(run_seed, k)`` and
:class:`~solvers.random.MemberRandom` keys every draw by (seed, stream, step), so its path does
not depend on the chunk or the actor that ran it.

It runs in-process and inside :class:`ensemble.actors.SolverActor`.
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ensemble.closures import ClosureSource, build_closure
from ensemble.config import ProjectConfig
from ensemble.statistics import GroupStatistics, MemberFields, Reference, StatisticsBins, member_relative_error
from solvers.allocator import tune_allocator
from solvers.config import resolve_device
from solvers.diagnostics import energy_spectrum
from solvers.factory import build_simulation
from solvers.grid import SpectralGrid
from solvers.simulation import BlowUp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker of a run shares.

    Attributes:
        config: the resolved project config (physics, solver, coupling).
        n: coarse grid size.
        model: ``missing_physics`` or ``les`` (see :func:`solvers.factory.build_simulation`).
        t0, n_steps, output_every: start time, steps per member, steps between outputs.
        bins: the statistics' fixed bins.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        snapshots: return the members' fields at output times too.
        threads: torch intra-op threads (None: leave torch's default).
    """

    config: ProjectConfig
    n: int
    model: str
    t0: float
    n_steps: int
    output_every: int
    bins: StatisticsBins
    device: str = "auto"
    snapshots: bool = False
    threads: int | None = None

    @property
    def times(self) -> int:
        return self.n_steps // self.output_every + 1


@dataclass(frozen=True)
class Chunk:
    """Members integrated together: ids, each member's statistics group, and seeds."""

    id: int
    members: tuple[int, ...]
    groups: tuple[int, ...]
    seeds: tuple[int, ...]


@dataclass
class ChunkResult:
    """What a worker returns for a chunk (small: summaries, not fields, unless snapshots).

    Attributes:
        members: columns of the ``members`` table (one row per member and output time alive).
        blowups: columns of the ``blowups`` table.
        stats: mergeable statistics of the chunk's surviving members, one record per group.
        fields: with snapshots: ``vorticity``/``closure`` ``[K, T, n, n]`` (NaN after a
            blow-up), ``member`` ``[K]``, ``blown_up`` ``[K]``; else None.
        member_steps: members x steps integrated; elapsed: seconds.
    """

    chunk: int
    members: dict[str, np.ndarray]
    blowups: dict[str, np.ndarray]
    stats: dict[int, GroupStatistics]
    fields: dict[str, np.ndarray] | None
    member_steps: int
    elapsed: float
    worker: str = ""


class SolverWorker:
    """Runs chunks of members on one device (used in-process and inside :class:`SolverActor`).

    Args:
        spec: the run's shared settings.
        closure_source: what to build the closure from (ignored when ``closure`` is given).
        closure: an already-built closure (e.g. a :class:`RemoteClosure`).
        name: worker name, reported in results.
    """

    def __init__(self, spec: WorkerSpec, closure_source: ClosureSource, closure: Any = None, name: str = "local") -> None:
        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        tune_allocator()  # keep freed FFT/network buffers: fewer page faults per step
        self.spec, self.name = spec, name
        self.device = resolve_device(spec.device)
        self.grid = SpectralGrid(spec.n, device=self.device, dtype=spec.config.solver.torch_dtype)
        self.closure = closure if closure is not None else build_closure(closure_source, self.grid, self.device)
        self.progress: dict[str, Any] = {}

    def run_chunk(self, chunk: Chunk, w0: np.ndarray, references: Sequence[Reference] | None) -> ChunkResult:
        """Integrate ``w0 [K, n, n]`` for the chunk's members; reduce to summaries and per-group statistics.

        ``references[g]`` is group ``g``'s reference (None: no reference).
        """
        spec, cfg = self.spec, self.spec.config
        start = clock.perf_counter()
        sim = build_simulation(
            cfg.physics, cfg.solver, spec.n, model=spec.model, closure=self.closure,
            coupling=cfg.coupling, noise=True, device=self.device, filter_width=cfg.data.filter_width,
        )
        buffers = MemberFields.empty(len(chunk.members), spec.times, spec.n)
        lost: list[BlowUp] = []
        self.progress = {"chunk": chunk.id, "step": 0, "steps": spec.n_steps, "members": len(chunk.members)}
        for snap in sim.run(torch.from_numpy(np.array(w0)), list(chunk.seeds), spec.n_steps, spec.output_every, t0=spec.t0):
            lost += snap.blow_ups
            offset = snap.step
            if offset % spec.output_every == 0 and snap.members.numel() > 0:
                self._record(buffers, offset // spec.output_every, snap)
            self.progress = {**self.progress, "step": snap.step, "time": snap.time}
        result = self._result(chunk, buffers, lost, references)
        result.member_steps = len(chunk.members) * spec.n_steps
        result.elapsed = clock.perf_counter() - start
        return result

    def _record(self, buffers: MemberFields, j: int, snap: Any) -> None:
        rows = snap.members.cpu().numpy()
        w = snap.vorticity
        spectrum = energy_spectrum(w, self.grid)
        buffers.vorticity[rows, j] = w.cpu().numpy()
        buffers.spectrum[rows, j] = spectrum.cpu().numpy()
        buffers.energy[rows, j] = spectrum.sum(-1).cpu().numpy()
        buffers.enstrophy[rows, j] = (0.5 * (w.double() ** 2).mean(dim=(-2, -1))).cpu().numpy()
        if snap.closure is not None:
            buffers.closure[rows, j] = snap.closure.cpu().numpy()
            buffers.closure_valid[j] = True

    def _result(self, chunk: Chunk, b: MemberFields, lost: list[BlowUp],
                references: Sequence[Reference] | None) -> ChunkResult:
        spec = self.spec
        k, t = b.energy.shape
        lost_rows = np.array([blow_up.member for blow_up in lost], np.int64)
        groups = np.asarray(chunk.groups, np.int32)
        survivors = np.setdiff1d(np.arange(k), lost_rows)
        stats = {
            int(g): GroupStatistics.from_members(b.select(survivors[groups[survivors] == g]), spec.bins,
                                                 None if references is None else references[g])
            for g in np.unique(groups)
        }
        alive = np.isfinite(b.energy)  # [K, T]
        rel_error = np.full((k, t), np.nan)
        if references is not None:
            for g in np.unique(groups):
                rows = np.flatnonzero(groups == g)
                rel_error[rows] = member_relative_error(b.select(rows).vorticity, references[g])
        row, col = np.nonzero(alive)
        ids, seeds = np.asarray(chunk.members, np.int64), np.asarray(chunk.seeds, np.int64)
        steps = np.arange(t, dtype=np.int64) * spec.output_every
        members = {
            "member": ids[row], "seed": seeds[row], "group": groups[row],
            "chunk": np.full(row.size, chunk.id, np.int32), "step": steps[col],
            "time": spec.t0 + steps[col] * spec.config.solver.dt,
            "energy": b.energy[row, col], "enstrophy": b.enstrophy[row, col], "rel_error": rel_error[row, col],
        }
        blowups = {
            "member": ids[lost_rows], "seed": seeds[lost_rows], "group": groups[lost_rows],
            "chunk": np.full(lost_rows.size, chunk.id, np.int32),
            "step": np.array([blow_up.step for blow_up in lost], np.int64),
            "time": np.array([blow_up.time for blow_up in lost], np.float64),
        }
        fields_out = None
        if spec.snapshots:
            blown = np.zeros(k, bool)
            blown[lost_rows] = True
            fields_out = {"vorticity": b.vorticity, "closure": b.closure, "member": ids, "blown_up": blown,
                          "closure_valid": b.closure_valid}
        return ChunkResult(chunk.id, members, blowups, stats, fields_out, 0, 0.0, self.name)
