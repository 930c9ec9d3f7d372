"""Solver workers (plain and as Ray actors) and the shared, batching closure actor.

A :class:`SolverWorker` integrates one *chunk* of members as one ``[members, n, n]`` batch with
:func:`solvers.factory.build_simulation`, and returns small per-member, per-output-time
summaries plus the chunk's mergeable :class:`~ensemble.statistics.GroupStatistics` (never the
fields, unless snapshots were asked for). Member ``k`` uses seed ``mix_seed(run_seed, k)`` and
:class:`~solvers.random.MemberRandom` keys every draw by (seed, stream, step), so its path does
not depend on the chunk or the actor that ran it.

:class:`SolverActor` wraps a worker as a named Ray actor (``solver-<i>``) with two
concurrency groups (chunks run one at a time; ``progress`` answers while a chunk runs) and
Ray metrics. :class:`ClosureActor` (``closure-0``) holds one closure and batches the requests
of all solver actors: it evaluates as soon as every active solver actor is waiting, or after
``wait_s``; requests for the same (time, random key) are concatenated into one call, which the
closure protocol makes identical row by row to separate calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time as clock
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from ensemble.closures import ClosureSource, build_closure
from ensemble.config import ProjectConfig
from ensemble.statistics import GroupStatistics, MemberFields, Reference, StatisticsBins
from solvers.allocator import tune_allocator
from solvers.config import resolve_device
from solvers.diagnostics import energy_spectrum
from solvers.factory import build_simulation
from solvers.grid import SpectralGrid
from solvers.random import MemberRandom
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


class RemoteClosure:
    """Closure proxy that sends requests to a :class:`ClosureActor` (shared closure mode)."""

    def __init__(self, handle: Any, caller: str) -> None:
        self.handle, self.caller = handle, caller

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        request = self.handle.sample.remote(
            self.caller, vorticity.detach().cpu().numpy(), float(time), rng.seeds, rng.key, rng.calls
        )
        rng.skip()  # the draws were made remotely; HeldClosure gives every sample a fresh stream anyway
        return torch.from_numpy(np.array(ray.get(request))).to(vorticity.device, vorticity.dtype)


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
            ref = np.stack([references[g].vorticity for g in groups])  # [K, T, n, n]
            valid = np.stack([references[g].valid for g in groups])  # [K, T]
            diff = np.linalg.norm((b.vorticity - ref).reshape(k, t, -1), axis=-1)
            norm = np.linalg.norm(ref.reshape(k, t, -1), axis=-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                rel_error = np.where(valid, diff / norm, np.nan)
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


@ray.remote(concurrency_groups={"control": 1, "compute": 1})
class SolverActor:
    """A named Ray actor hosting a :class:`SolverWorker` (see module docstring).

    Metrics: ``ensemble_members_done`` (Counter), ``ensemble_steps_per_second`` (Gauge,
    member-steps per second of the last chunk), tagged by actor.
    """

    def __init__(self, spec: WorkerSpec, source: ClosureSource, name: str, closure_actor: Any = None) -> None:
        from ray.util import metrics

        self.name, self.closure_actor = name, closure_actor
        remote = RemoteClosure(closure_actor, name) if closure_actor is not None else None
        self.worker = SolverWorker(spec, source, closure=remote, name=name)
        tags = ("actor",)
        self.members_done = metrics.Counter("ensemble_members_done", "members finished", tag_keys=tags)
        self.speed = metrics.Gauge("ensemble_steps_per_second", "member-steps per second", tag_keys=tags)

    @ray.method(concurrency_group="compute")
    def run_chunk(self, chunk: Chunk, w0: np.ndarray, references: Sequence[Reference] | None) -> ChunkResult:
        if self.closure_actor is not None:
            ray.get(self.closure_actor.set_active.remote(self.name, True))
        try:
            result = self.worker.run_chunk(chunk, w0, references)
        finally:
            if self.closure_actor is not None:
                ray.get(self.closure_actor.set_active.remote(self.name, False))
        self.members_done.inc(len(chunk.members), tags={"actor": self.name})
        self.speed.set(result.member_steps / max(result.elapsed, 1e-9), tags={"actor": self.name})
        return result

    @ray.method(concurrency_group="control")
    def progress(self) -> dict[str, Any]:
        return dict(self.worker.progress)

    @ray.method(concurrency_group="control")
    def ping(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0)
class ClosureActor:
    """One closure for all solver actors; batches their requests (see module docstring).

    Metric: ``closure_batch_size`` (Gauge, members per closure evaluation).

    Args:
        source: what to build the closure from.
        n, precision, device: the grid it works on.
        wait_s: longest wait for the other active solver actors before evaluating.
    """

    def __init__(self, source: ClosureSource, n: int, precision: str, device: str, wait_s: float = 0.05) -> None:
        from ray.util import metrics

        dev = resolve_device(device)
        dtype = torch.float64 if precision == "float64" else torch.float32
        self.grid = SpectralGrid(n, device=dev, dtype=dtype)
        self.closure = build_closure(source, self.grid, dev)
        self.wait_s = wait_s
        self.active: set[str] = set()
        self.pending: list[tuple] = []
        self.sizes: list[int] = []
        self.batch_gauge = metrics.Gauge("closure_batch_size", "members per closure evaluation")

    async def set_active(self, name: str, active: bool) -> None:
        (self.active.add if active else self.active.discard)(name)
        self._fire_if_ready()

    async def sample(self, caller: str, vorticity: np.ndarray, time: float, seeds: tuple, key: tuple, calls: int):
        future = asyncio.get_running_loop().create_future()
        self.pending.append((caller, vorticity, time, tuple(seeds), tuple(key), calls, future))
        self._fire_if_ready()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.wait_s)
        except asyncio.TimeoutError:
            self._fire()
            return await future

    def batch_sizes(self) -> list[int]:
        return list(self.sizes)

    def _fire_if_ready(self) -> None:
        waiting = {p[0] for p in self.pending}
        if self.pending and self.active <= waiting:
            self._fire()

    def _fire(self) -> None:
        batch, self.pending = self.pending, []
        groups: dict[tuple, list[tuple]] = defaultdict(list)
        for request in batch:
            groups[(request[2], request[4], request[5])].append(request)
        for (time, key, calls), requests in groups.items():
            try:
                outputs = self._evaluate(requests, time, key, calls)
            except Exception as exc:  # noqa: BLE001 - handed back to every caller of the batch
                for request in requests:
                    request[-1].set_exception(exc)
                continue
            for request, out in zip(requests, outputs):
                if not request[-1].done():
                    request[-1].set_result(out)

    def _evaluate(self, requests: list[tuple], time: float, key: tuple, calls: int) -> list[np.ndarray]:
        vorticity = np.concatenate([r[1] for r in requests])
        seeds = [s for r in requests for s in r[3]]
        rng = MemberRandom(seeds, key, calls)
        w = torch.from_numpy(vorticity).to(self.grid.device, self.grid.dtype)
        out = self.closure(w, time, rng).cpu().numpy().astype(vorticity.dtype, copy=False)
        self.sizes.append(len(seeds))
        self.batch_gauge.set(len(seeds))
        bounds = np.cumsum([0] + [len(r[3]) for r in requests])
        return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
