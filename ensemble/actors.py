"""Ray actors of an ensemble run: solver actors and the shared, batching closure actor.

:class:`SolverActor` wraps a :class:`~ensemble.worker.SolverWorker` as a named Ray actor
(``solver-<i>``) with two concurrency groups (chunks run one at a time; ``progress`` answers
while a chunk runs) and Ray metrics. It is created bare and configured later: the driver can
start it before importing torch itself, so the actor's start-up (a new process importing the
solver stack, ~1.3 s) overlaps the driver's own. This module imports neither torch nor the
solver stack; the actors import them in their own processes.

:class:`ClosureActor` (``closure-0``) holds one closure and batches the requests of all solver
actors: it evaluates as soon as every active solver actor is waiting, or after ``wait_s``;
requests for the same (time, random key) are concatenated into one call. The closure protocol
makes each row's draw the same as in a separate call; the row's value may still differ in the
last bits, because the convolution library blocks a batch differently by its size (a float32
3x3 convolution of 8 or more channels on this CPU), so members agree with per-actor closures
to float rounding, not bit for bit. Per-actor closures see the same chunks whatever the
actor count, so their runs are identical bit for bit.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

if TYPE_CHECKING:
    import torch

    from ensemble.closures import ClosureSource
    from ensemble.statistics import Reference
    from ensemble.worker import Chunk, ChunkResult, WorkerSpec
    from solvers.random import MemberRandom


class RemoteClosure:
    """Closure proxy that sends requests to a :class:`ClosureActor` (shared closure mode)."""

    def __init__(self, handle: Any, caller: str) -> None:
        self.handle, self.caller = handle, caller

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        import torch

        request = self.handle.sample.remote(
            self.caller, vorticity.detach().cpu().numpy(), float(time), rng.seeds, rng.key, rng.calls
        )
        rng.skip()  # the draws were made remotely; HeldClosure gives every sample a fresh stream anyway
        return torch.from_numpy(np.array(ray.get(request))).to(vorticity.device, vorticity.dtype)


@ray.remote(concurrency_groups={"control": 1, "compute": 1})
class SolverActor:
    """A named Ray actor hosting a :class:`~ensemble.worker.SolverWorker` (see module docstring).

    Created with its name only (the process imports the solver stack then), then given its run
    by :meth:`configure`, which every chunk queues behind.

    Metrics: ``ensemble_members_done`` (Counter), ``ensemble_steps_per_second`` (Gauge,
    member-steps per second of the last chunk), tagged by actor.
    """

    def __init__(self, name: str) -> None:
        from ray.util import metrics

        importlib.import_module("ensemble.worker")  # the start-up's cost (torch, solvers), paid while the driver works
        self.name, self.closure_actor, self.worker = name, None, None
        tags = ("actor",)
        self.members_done = metrics.Counter("ensemble_members_done", "members finished", tag_keys=tags)
        self.speed = metrics.Gauge("ensemble_steps_per_second", "member-steps per second", tag_keys=tags)

    @ray.method(concurrency_group="compute")
    def configure(self, spec: WorkerSpec, source: ClosureSource, closure_actor: Any = None) -> None:
        """Build the worker for a run: grid, closure (a local copy, or a proxy of ``closure_actor``)."""
        from ensemble.worker import SolverWorker

        self.closure_actor = closure_actor
        remote = RemoteClosure(closure_actor, self.name) if closure_actor is not None else None
        self.worker = SolverWorker(spec, source, closure=remote, name=self.name)

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
        return {} if self.worker is None else dict(self.worker.progress)

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
        import torch
        from ray.util import metrics

        from ensemble.closures import build_closure
        from solvers.config import resolve_device
        from solvers.grid import SpectralGrid

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
        import torch

        from solvers.random import MemberRandom

        vorticity = np.concatenate([r[1] for r in requests])
        seeds = [s for r in requests for s in r[3]]
        rng = MemberRandom(seeds, key, calls)
        w = torch.from_numpy(vorticity).to(self.grid.device, self.grid.dtype)
        out = self.closure(w, time, rng).cpu().numpy().astype(vorticity.dtype, copy=False)
        self.sizes.append(len(seeds))
        self.batch_gauge.set(len(seeds))
        bounds = np.cumsum([0] + [len(r[3]) for r in requests])
        return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
