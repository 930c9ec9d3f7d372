"""Launch and resume an ensemble run: the orchestration behind ``closure ensemble`` (its status:
:mod:`ensemble.status`).

A run directory holds::

    manifest.json                  what the run is, finished chunks, blow-ups, failures
    members/chunk-<id>.parquet     energy, enstrophy, relative error per member and output time
    blowups/chunk-<id>.parquet     members that went non-finite (step, time)
    stats/flush-<k>.parquet        ensemble statistics per group and output time, all members
                                   merged at flush k (the last flush with final = true is the answer)
    state/aggregate-<k>.npz        the aggregator state at flush k (what resume continues from)
    fields/chunk-<id>.h5           member fields at output times (only with snapshots)

Members: member ``k`` has seed ``mix_seed(seed, k)``. With dataset initial conditions it
starts from test trajectory ``k % n_test`` at its first stored time, which is also its
reference and its statistics group; with random or ``.npy`` initial conditions there is one
group and no reference. Chunks are blocks of ``chunk_size`` members in group order: a chunk
larger than a group mixes groups (one batch of closure samples serves them all) and reduces
to one statistics record per group it holds.
"""

from __future__ import annotations

import io
import json
import logging
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ensemble.closures import ClosureSource, resolve_closure, sampler_description
from ensemble.cluster import SolverActorPool, check_resources, connect_ray, create_named, solver_actor_options
from ensemble.config import ProjectConfig, load_config, validate_config
from ensemble.manifest import ChunkRecord, Manifest, check_output_dir
from ensemble.parquet_sink import ParquetSink, atomic_write, atomic_write_bytes
from ensemble.statistics import Aggregator, Reference, StatisticsBins
from ensemble.worker import Chunk, ChunkResult, SolverWorker, WorkerSpec
from solvers.config import steps_in
from solvers.diagnostics import energy_spectrum
from solvers.errors import UserError
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field, load_field
from solvers.random import MemberRandom, member_seeds

logger = logging.getLogger(__name__)

INIT_STREAM = 2  # MemberRandom key of random initial conditions (0 forcing, 1 closure)
RUN_KEYS_EXECUTION_ONLY = ("actors", "cpus_per_actor", "gpus_per_actor", "in_flight_per_actor", "max_attempts",
                           "closure_mode", "flush_every")


@dataclass
class RunInputs:
    """Initial conditions, references and grid of a run (rebuilt on resume, never stored)."""

    n: int
    model: str
    t0: float
    groups: int
    initial: np.ndarray  # [groups or fields, n, n]
    references: list[Reference] | None
    description: str


@dataclass
class RunSummary:
    """What a launch or resume did (for the CLI and the benchmark)."""

    manifest: Manifest
    elapsed: float
    member_steps: int
    restarts: int = 0
    closure_batches: list[int] = field(default_factory=list)
    compute_s: float = 0.0  # sum over chunks of the workers' integration time
    startup_s: float = 0.0  # creating the actors until all answered (Ray only)

    def timing_text(self) -> str:
        """The CLI's last line: member-steps, wall time and the workers' integration time (summed).

        >>> RunSummary(None, 2.5, 8000, compute_s=3.125).timing_text()
        '8,000 member-steps in 2.50 s; the workers integrated for 3.12 s in all'
        """
        return (f"{self.member_steps:,} member-steps in {self.elapsed:.2f} s; "
                f"the workers integrated for {self.compute_s:.2f} s in all")


@dataclass
class Hooks:
    """Test and benchmark hooks: ``after_result(results_so_far, scheduler_or_None)``."""

    after_result: Callable[[int, Any], None] | None = None


# ---------------------------------------------------------------- planning

def output_times(t0: float, n_steps: int, output_every: int, dt: float) -> np.ndarray:
    return t0 + dt * output_every * np.arange(n_steps // output_every + 1)


def _reference(vorticity: np.ndarray, data_time: np.ndarray, times: np.ndarray) -> Reference:
    """Reference of one trajectory ``[T_data, n, n]`` at the run's output ``times``."""
    n = vorticity.shape[-1]
    out = np.zeros((len(times), n, n), np.float64)
    valid = np.zeros(len(times), bool)
    for j, t in enumerate(times):
        k = int(np.argmin(np.abs(data_time - t)))
        if abs(data_time[k] - t) < 1e-6 * max(1.0, abs(t)):
            out[j], valid[j] = vorticity[k], True
    grid = SpectralGrid(n, dtype=torch.float64)
    spectrum = energy_spectrum(torch.from_numpy(out), grid).numpy()
    return Reference(out, spectrum.sum(-1), 0.5 * (out**2).mean(axis=(-2, -1)), valid)


def prepare_inputs(cfg: ProjectConfig, times_fn: Callable[[float], np.ndarray] | None = None) -> RunInputs:
    """Read the initial conditions named by ``[ensemble].init`` (and references from a dataset)."""
    ens = cfg.ensemble
    if ens.init == "dataset":
        from solvers.dataset import read_dataset

        path = ens.data or cfg.data.path
        data = read_dataset(path, split="test")
        if data.vorticity.shape[0] == 0:
            raise UserError(f"--data: {path} has no test trajectories")
        t0 = float(data.time[0])
        n = int(data.vorticity.shape[-1])
        problem = str(data.attrs.get("problem", cfg.data.problem))
        times = times_fn(t0) if times_fn else None
        refs = [_reference(v, data.time, times) for v in data.vorticity] if times is not None else None
        return RunInputs(n, problem, t0, len(data.vorticity), np.asarray(data.vorticity[:, 0], np.float64), refs,
                         f"dataset {path} ({len(data.vorticity)} test trajectories)")
    if ens.init == "random":
        return RunInputs(cfg.data.n_coarse, cfg.data.problem, 0.0, 1, np.zeros((0, 0, 0)), None, "random fields")
    try:
        fields = load_field(ens.init)
    except ValueError as exc:
        raise UserError(f"--init: {exc}") from None
    return RunInputs(fields.shape[-1], cfg.data.problem, 0.0, 1, fields, None, f"field {ens.init}")


def plan_steps(cfg: ProjectConfig, t0: float) -> tuple[float, int, int]:
    """``(t_end, n_steps, output_every)`` from the [ensemble] section; UserError if inconsistent."""
    ens, dt = cfg.ensemble, cfg.solver.dt
    t_end = ens.t_end if ens.t_end is not None else t0 + ens.duration
    if t_end <= t0:
        raise UserError(f"--t-end ({t_end:g}) must be after the start time ({t0:g})")
    n_steps = steps_in(t_end - t0, dt, "--t-end minus start time")
    every = steps_in(ens.output_interval, dt, "--output-interval")
    if n_steps % every:
        raise UserError(f"--output-interval ({ens.output_interval:g}) must divide the time span ({t_end - t0:g})")
    return t_end, n_steps, every


def plan_chunks(members: int, groups: int, chunk_size: int) -> list[ChunkRecord]:
    """Deterministic chunks: members ordered by group (member ``k`` is in group ``k % groups``), cut into blocks of ``chunk_size``.

    A chunk larger than a group holds several groups (one batch of closure samples serves
    them all); ordering by group keeps the groups per chunk, and so the statistics records a
    chunk returns, to at most ``chunk_size / group size + 1``.
    """
    ordered = [k for g in range(groups) for k in range(g, members, groups)]
    return [
        ChunkRecord(id=i, members=block, groups=[k % groups for k in block])
        for i, block in enumerate(ordered[start:start + chunk_size] for start in range(0, members, chunk_size))
    ]


def run_identity(cfg: ProjectConfig) -> str:
    """Hash of everything that determines the members' results (not how they are executed)."""
    import hashlib

    raw = cfg.model_dump(mode="json")
    for key in RUN_KEYS_EXECUTION_ONLY:
        raw["ensemble"].pop(key, None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- Ray

def uses_closure_actor(cfg: ProjectConfig, source: ClosureSource) -> bool:
    """A shared closure actor serves learned closures only: classical ones are cheap, local functions."""
    return cfg.ensemble.closure_mode == "shared" and source.name == "checkpoint"


# ---------------------------------------------------------------- execution

class RunExecutor:
    """Runs a manifest's unfinished chunks and streams results to disk (one launch or resume)."""

    def __init__(self, out: Path, manifest: Manifest, cfg: ProjectConfig, inputs: RunInputs, source: ClosureSource,
                 hooks: Hooks | None = None, actor_pool: SolverActorPool | None = None) -> None:
        self.out, self.manifest, self.cfg, self.inputs, self.source = out, manifest, cfg, inputs, source
        self.actor_pool = actor_pool  # the caller's; None: the run's own, closed at its end
        self.hooks = hooks or Hooks()
        plan = manifest.plan
        self.times = np.asarray(plan["times"])
        self.bins = StatisticsBins.from_section(cfg.ensemble, inputs.n)
        self.spec = WorkerSpec(
            config=cfg, n=inputs.n, model=inputs.model, t0=plan["t0"], n_steps=plan["n_steps"],
            output_every=plan["output_every"], bins=self.bins, device=cfg.solver.device,
            snapshots=cfg.ensemble.snapshots, threads=max(1, int(cfg.ensemble.cpus_per_actor)),
        )
        self.aggregator = Aggregator(len(self.times), self.bins)
        self.sink = ParquetSink(out, {"run_id": manifest.run_id, "bins": json.dumps(self._bin_metadata())})
        self.unflushed: list[int] = []
        self.dirty = False  # manifest changes not yet saved
        self.results = 0
        self.member_steps = 0
        self.compute_s = 0.0
        self.startup_s = 0.0
        self.start = clock.perf_counter()
        self.display: Any = None
        self._load_state()

    def _bin_metadata(self) -> dict[str, Any]:
        b = self.bins
        return {
            "vorticity_edges": b.vorticity_edges.tolist(), "closure_edges": b.closure_edges.tolist(),
            "probes": b.probes.tolist(), "rank_bins": b.rank_bins,
            "spectrum_bins_per_decade": self.cfg.ensemble.spectrum_bins_per_decade,
        }

    def _load_state(self) -> None:
        done = {c.id for c in self.manifest.chunks if c.status == "done"}
        if self.manifest.state_file is None:
            if done:
                raise UserError(f"{self.out}: manifest lists finished chunks but no statistics state")
            return
        path = self.out / self.manifest.state_file
        try:
            with np.load(path, allow_pickle=False) as arrays:
                self.aggregator.load_state(dict(arrays))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: unreadable statistics state ({exc})") from None
        if self.aggregator.merged_chunks != done:
            raise UserError(f"{path}: statistics state does not match the manifest's finished chunks")

    # -- inputs of one chunk
    def chunk(self, record: ChunkRecord) -> Chunk:
        seeds = member_seeds(self.cfg.ensemble.seed, record.members)
        return Chunk(record.id, tuple(record.members), tuple(record.groups), tuple(seeds))

    def initial(self, chunk: Chunk) -> np.ndarray:
        init = self.cfg.ensemble.init
        if init == "random":
            grid = SpectralGrid(self.inputs.n, dtype=torch.float64)
            rng = MemberRandom(chunk.seeds, key=(INIT_STREAM,))
            phys = self.cfg.physics
            return gaussian_random_field(grid, rng, phys.init_alpha, phys.init_tau).numpy()
        fields = self.inputs.initial
        if init == "dataset":
            return fields[np.asarray(chunk.groups)]
        return fields[np.asarray(chunk.members) % len(fields)]

    def reference(self, group: int) -> Reference | None:
        return None if self.inputs.references is None else self.inputs.references[group]

    # -- results
    def on_result(self, result: ChunkResult, scheduler: Any = None) -> None:
        key = f"chunk-{result.chunk:06d}"
        self.sink.write("members", key, result.members)
        self.sink.write("blowups", key, result.blowups)
        if result.fields is not None:
            self._write_fields(key, result.fields)
        self.aggregator.add(result.chunk, result.stats)
        record = self.manifest.chunks[result.chunk]
        for member, seed, step, time in zip(result.blowups["member"], result.blowups["seed"],
                                            result.blowups["step"], result.blowups["time"]):
            self.manifest.blowups.append({"member": int(member), "seed": int(seed), "chunk": result.chunk,
                                          "step": int(step), "time": float(time)})
        self.unflushed.append(result.chunk)
        self.results += 1
        self.member_steps += result.member_steps
        self.compute_s += result.elapsed
        if self.display is not None:
            self.display.chunk_done(len(record.members), result.member_steps)
        if len(self.unflushed) >= self.cfg.ensemble.flush_every:
            self.flush()
        if self.hooks.after_result is not None:
            self.hooks.after_result(self.results, scheduler)

    def on_error(self, chunk: Chunk, message: str) -> None:
        record = self.manifest.chunks[chunk.id]
        record.attempts += 1
        record.errors.append(message)
        self.dirty = True

    def on_failure(self, chunk: Chunk, message: str) -> None:
        self.manifest.chunks[chunk.id].status = "failed"
        self.dirty = True

    def _write_fields(self, key: str, fields: dict[str, np.ndarray]) -> None:
        path = self.out / "fields" / f"{key}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            for name, value in fields.items():
                f.create_dataset(name, data=value)
            f.create_dataset("time", data=self.times)
        atomic_write_bytes(path, buffer.getvalue())

    def flush(self) -> None:
        """Write statistics and state, then the manifest naming them (the order resume relies on)."""
        m = self.manifest
        for chunk_id in self.unflushed:
            m.chunks[chunk_id].status = "done"
        self.unflushed, self.dirty = [], False
        m.complete = all(c.status == "done" for c in m.chunks)
        m.flushes += 1
        self.sink.write("stats", f"flush-{m.flushes:06d}", self.stats_columns(m.flushes, m.complete))
        state_name = f"state/aggregate-{m.flushes:06d}.npz"
        (self.out / "state").mkdir(exist_ok=True)
        atomic_write(self.out / state_name, lambda handle: np.savez(handle, **self.aggregator.state_arrays()))
        previous, m.state_file = m.state_file, state_name
        m.save(self.out)
        if previous and previous != state_name:
            (self.out / previous).unlink(missing_ok=True)

    def stats_columns(self, flush: int, final: bool) -> dict[str, Any]:
        columns: dict[str, list] = {}
        steps = np.arange(len(self.times), dtype=np.int64) * self.spec.output_every
        for group in sorted(self.aggregator.groups):
            cols = self.aggregator.groups[group].columns(self.bins, self.reference(group))
            cols.update(flush=[flush] * len(self.times), final=[final] * len(self.times),
                        group=[group] * len(self.times), step=steps, time=self.times)
            for name, values in cols.items():
                columns.setdefault(name, []).extend(list(values))
        return columns

    # -- drivers
    def run_in_process(self) -> None:
        from ensemble.in_process import run_in_process

        threads = torch.get_num_threads()  # the worker sets its own; restore the caller's afterwards
        try:
            worker = SolverWorker(self.spec, self.source)
            chunks = [self.chunk(c) for c in self.manifest.pending_chunks()]
            run_in_process(
                lambda c: worker.run_chunk(c, self.initial(c), self.inputs.references), chunks,
                self.on_result, self.on_error, self.on_failure, self.cfg.ensemble.max_attempts,
                on_tick=lambda: self.display.refresh([]) if self.display else None,
            )
        finally:
            torch.set_num_threads(threads)
        self.finish()

    def run_on_ray(self) -> tuple[int, list[int]]:
        import ray

        from ensemble.actors import ClosureActor
        from ensemble.scheduler import ChunkScheduler

        ens = self.cfg.ensemble
        shared = uses_closure_actor(self.cfg, self.source)
        check_resources(self.cfg, shared)
        source = self.source
        if source.payload is not None and not shared:
            source = ClosureSource(source.name, source.path, ray.put(source.payload))
        closure_actor = None
        if shared:
            closure_actor = create_named(ClosureActor, "closure-0", dict(num_gpus=ens.gpus_per_actor),
                                         source, self.inputs.n, self.cfg.solver.precision, self.cfg.solver.device)
        spec = self.spec
        references = ray.put(self.inputs.references)  # one object: every chunk may need every group's

        pool = self.actor_pool or SolverActorPool()
        options, configured = solver_actor_options(self.cfg), []

        def make_actor(name: str) -> Any:
            """The pool's actor for this slot (started early or by an earlier run), else a new one;
            then its run's worker."""
            handle = pool.take(name, options)
            configured.append(handle.configure.remote(spec, source, closure_actor))
            return handle

        def submit(handle: Any, chunk: Chunk) -> Any:
            return handle.run_chunk.remote(chunk, self.initial(chunk), references)

        last_poll = [0.0]

        def tick(scheduler: ChunkScheduler) -> None:
            if self.display is not None and clock.perf_counter() - last_poll[0] > 1.0:
                last_poll[0] = clock.perf_counter()
                self.display.refresh(scheduler.progress())

        started = clock.perf_counter()
        batches: list[int] = []
        scheduler, finished = None, False
        try:
            scheduler = ChunkScheduler(
                make_actor, ens.actors, submit, lambda r: self.on_result(r, scheduler), self.on_error,
                self.on_failure, ens.in_flight_per_actor, ens.max_attempts, on_tick=tick,
                give_back=pool.give_back, discard=pool.forget,
            )
            self._wait_ready(configured)
            if closure_actor is not None:
                ray.get(closure_actor.batch_sizes.remote(), timeout=120)
            self.startup_s = clock.perf_counter() - started
            scheduler.run([self.chunk(c) for c in self.manifest.pending_chunks()])
            if closure_actor is not None:
                batches = ray.get(closure_actor.batch_sizes.remote())
            finished = True
        finally:
            if scheduler is not None:
                scheduler.shutdown(keep=finished)
            if closure_actor is not None:
                ray.kill(closure_actor, no_restart=True)
            if pool is not self.actor_pool:
                pool.close()
        self.finish()
        return scheduler.restarts, batches

    @staticmethod
    def _wait_ready(refs: list[Any], timeout: float = 120.0) -> None:
        """Wait until every actor has started and built its worker (``refs``: its ``configure`` calls)."""
        import ray

        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            raise UserError(f"--actors: only {len(ready)} of {len(refs)} solver actors started within {timeout:g} s "
                            "(the cluster's resources are busy)")
        ray.get(ready)

    def finish(self) -> None:
        """Final flush, unless the last one already holds everything."""
        if self.unflushed or self.dirty or self.manifest.flushes == 0:
            self.flush()


# ---------------------------------------------------------------- entry points

def launch(config: str | Path | ProjectConfig, out: str | Path, overrides: dict[str, Any] | None = None, *,
           address: str | None = None, in_process: bool = False, dashboard: bool = False,
           progress: bool = False, hooks: Hooks | None = None,
           actor_pool: SolverActorPool | None = None) -> RunSummary:
    """Start a new run in ``out`` (which must not hold anything); see module docstring.

    ``actor_pool`` (Ray runs): where the run takes its solver actors from and gives them back to
    at its end, live, for the next run (:class:`ensemble.cluster.SolverActorPool`; the caller
    closes it). Without one, the run starts its own actors and kills them at its end.
    """
    out = Path(out)
    if isinstance(config, ProjectConfig):
        raw = config.model_dump(mode="json")
        for dotted, value in (overrides or {}).items():
            if value is not None:
                section, key = dotted.split(".", 1)
                raw[section][key] = value
        cfg = validate_config(raw, "config")
    else:
        cfg = load_config(config, overrides)
    check_output_dir(out)
    steps_holder: dict[str, Any] = {}

    def times_fn(t0: float) -> np.ndarray:
        t_end, n_steps, every = plan_steps(cfg, t0)
        steps_holder.update(t_end=t_end, n_steps=n_steps, every=every)
        return output_times(t0, n_steps, every, cfg.solver.dt)

    inputs = prepare_inputs(cfg, times_fn)
    if not steps_holder:
        times_fn(inputs.t0)
    source = resolve_closure(cfg.ensemble.closure, inputs.n, inputs.model, cfg.data.filter_width,
                             sampler=cfg.ensemble.sampler, steps=cfg.ensemble.sampler_steps,
                             precision=cfg.ensemble.closure_precision)
    times = output_times(inputs.t0, steps_holder["n_steps"], steps_holder["every"], cfg.solver.dt)
    plan = {
        "n": inputs.n, "model": inputs.model, "t0": inputs.t0, "t_end": steps_holder["t_end"],
        "n_steps": steps_holder["n_steps"], "output_every": steps_holder["every"], "times": times.tolist(),
        "groups": inputs.groups, "inputs": inputs.description, "sampler": sampler_description(source),
    }
    records = plan_chunks(cfg.ensemble.members, inputs.groups, cfg.ensemble.chunk_size)
    owned = False if in_process else connect_ray(address, dashboard)
    try:
        if not in_process:
            check_resources(cfg, uses_closure_actor(cfg, source))
        out.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(run_id=run_identity(cfg), config=cfg.model_dump(mode="json"), plan=plan,
                            chunks=records, versions=_versions())
        manifest.save(out)
        return _execute(out, manifest, cfg, inputs, source, in_process, progress, hooks, actor_pool)
    finally:
        if owned:
            import ray

            ray.shutdown()


def resume(out: str | Path, *, address: str | None = None, in_process: bool = False, dashboard: bool = False,
           progress: bool = False, actors: int | None = None, hooks: Hooks | None = None) -> RunSummary:
    """Finish an interrupted run without redoing the chunks its manifest lists as done."""
    out = Path(out)
    manifest = Manifest.load(out)
    raw = manifest.config
    if actors is not None:
        raw = {**raw, "ensemble": {**raw["ensemble"], "actors": actors}}
    cfg = validate_config(raw, str(out / "manifest.json"))
    times = np.asarray(manifest.plan["times"])
    inputs = prepare_inputs(cfg, lambda t0: times)
    source = resolve_closure(cfg.ensemble.closure, inputs.n, inputs.model, cfg.data.filter_width,
                             sampler=cfg.ensemble.sampler, steps=cfg.ensemble.sampler_steps,
                             precision=cfg.ensemble.closure_precision)
    for record in manifest.chunks:
        if record.status == "failed":
            record.status = "pending"
    if not manifest.pending_chunks():
        return RunSummary(manifest, 0.0, 0)
    owned = False if in_process else connect_ray(address, dashboard)
    try:
        return _execute(out, manifest, cfg, inputs, source, in_process, progress, hooks)
    finally:
        if owned:
            import ray

            ray.shutdown()


def _execute(out: Path, manifest: Manifest, cfg: ProjectConfig, inputs: RunInputs, source: ClosureSource,
             in_process: bool, progress: bool, hooks: Hooks | None,
             actor_pool: SolverActorPool | None = None) -> RunSummary:
    executor = RunExecutor(out, manifest, cfg, inputs, source, hooks, actor_pool)
    start = clock.perf_counter()
    restarts, batches = 0, []
    from ensemble.progress import RunProgress

    with RunProgress(manifest, enabled=progress) as display:
        executor.display = display
        if in_process:
            executor.run_in_process()
        else:
            restarts, batches = executor.run_on_ray()
    return RunSummary(manifest, clock.perf_counter() - start, executor.member_steps, restarts, batches,
                      executor.compute_s, executor.startup_s)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("torch", "numpy", "ray", "pyarrow", "latent-closure"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
