"""Fan chunks of members out to solver actors: bounded in-flight work, retries, restarts.

The driver keeps at most ``in_flight`` chunks queued per actor and waits with ``ray.wait``
for whichever finishes first (the pattern Ray's docs recommend over ``ActorPool`` when actors
may die). A chunk that fails is put back at the front of the queue and preferably handed to a
*different* actor; when the failure is the actor's death (``RayActorError``), that actor is
replaced by a fresh one under a new name. After ``max_attempts`` tries a chunk is reported
failed (the run records it; nothing is dropped silently).

Results are delivered once per chunk id: Ray's at-least-once execution can run a chunk twice
(a retry after a presumed failure), and the second result is ignored. Exactly-once *output*
comes from this plus deterministic chunk contents and atomic files (see ``parquet_sink``).
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from ensemble.cluster import kill_actors
from ensemble.in_process import ErrorFn, ResultFn
from ensemble.worker import Chunk

logger = logging.getLogger(__name__)


class ChunkScheduler:
    """Run chunks on ``actors`` Ray actors (see module docstring).

    Args:
        make_actor: ``name -> actor handle`` (creates a named actor).
        actors: number of actor slots (``solver-0`` .. ``solver-<actors-1>``).
        submit: ``(handle, chunk) -> ObjectRef`` of a :class:`ChunkResult`.
        on_result: called once per finished chunk, in completion order.
        on_error: called for every failed attempt with a one-line message.
        on_failure: called when a chunk has failed ``max_attempts`` times.
        in_flight: chunks queued per actor.
        max_attempts: tries per chunk.
        poll_s: ``ray.wait`` timeout, the period of ``on_tick``.
        on_tick: called every loop turn with the scheduler (for progress displays).
        give_back: called with the actors at :meth:`shutdown` when no chunk is left running on them
            (a :class:`~ensemble.cluster.SolverActorPool` keeps them for the next run).
        discard: called with actors to get rid of: a dead one before its replacement, all of them
            at a :meth:`shutdown` with chunks still running.
    """

    def __init__(
        self,
        make_actor: Callable[[str], Any],
        actors: int,
        submit: Callable[[Any, Chunk], Any],
        on_result: ResultFn,
        on_error: ErrorFn | None = None,
        on_failure: ErrorFn | None = None,
        in_flight: int = 1,
        max_attempts: int = 3,
        poll_s: float = 0.5,
        on_tick: Callable[[ChunkScheduler], None] | None = None,
        give_back: Callable[[list[Any]], None] = kill_actors,
        discard: Callable[[list[Any]], None] = kill_actors,
    ) -> None:
        self.make_actor, self.submit = make_actor, submit
        self.on_result, self.on_error, self.on_failure, self.on_tick = on_result, on_error, on_failure, on_tick
        self.in_flight, self.max_attempts, self.poll_s = in_flight, max_attempts, poll_s
        self.give_back, self.discard = give_back, discard
        self.generation = [0] * actors
        self.handles = [make_actor(self.actor_name(slot)) for slot in range(actors)]
        self.inflight: dict[Any, tuple[Chunk, int, int]] = {}
        self.finished: set[int] = set()
        self.restarts = 0

    def actor_name(self, slot: int) -> str:
        generation = self.generation[slot]
        return f"solver-{slot}" if generation == 0 else f"solver-{slot}-r{generation}"

    def run(self, chunks: Sequence[Chunk]) -> None:
        """Run every chunk; returns when each has finished or failed ``max_attempts`` times."""
        queue = deque(chunks)
        load = [0] * len(self.handles)
        attempts: dict[int, int] = defaultdict(int)
        avoid: dict[int, int] = {}
        while queue or self.inflight:
            self._dispatch(queue, load, avoid)
            ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=self.poll_s)
            for ref in ready:
                chunk, slot, generation = self.inflight.pop(ref)
                load[slot] -= 1
                try:
                    result = ray.get(ref)
                except RayError as exc:
                    if isinstance(exc, RayActorError) and generation == self.generation[slot]:
                        self._restart(slot)
                    self._retry(queue, chunk, slot, exc, attempts, avoid)
                    continue
                self._dispatch(queue, load, avoid)  # the actor computes the next chunk while the driver stores this one
                if chunk.id not in self.finished:
                    self.finished.add(chunk.id)
                    self.on_result(result)
            if self.on_tick is not None:
                self.on_tick(self)

    def _dispatch(self, queue: deque, load: list[int], avoid: dict[int, int]) -> None:
        while queue:
            chunk = queue[0]
            free = [s for s in range(len(self.handles)) if load[s] < self.in_flight]
            if not free:
                return
            preferred = [s for s in free if s != avoid.get(chunk.id)] or free
            slot = min(preferred, key=lambda s: load[s])
            queue.popleft()
            self.inflight[self.submit(self.handles[slot], chunk)] = (chunk, slot, self.generation[slot])
            load[slot] += 1

    def _retry(self, queue: deque, chunk: Chunk, slot: int, exc: Exception, attempts: dict, avoid: dict) -> None:
        attempts[chunk.id] += 1
        message = f"attempt {attempts[chunk.id]} on {self.actor_name(slot)}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        logger.warning("chunk %d failed (%s)", chunk.id, message)
        if self.on_error is not None:
            self.on_error(chunk, message)
        if attempts[chunk.id] >= self.max_attempts:
            if self.on_failure is not None:
                self.on_failure(chunk, message)
            return
        avoid[chunk.id] = slot
        queue.appendleft(chunk)

    def _restart(self, slot: int) -> None:
        self.discard([self.handles[slot]])
        self.generation[slot] += 1
        self.restarts += 1
        name = self.actor_name(slot)
        logger.warning("actor slot %d died; starting %s", slot, name)
        self.handles[slot] = self.make_actor(name)

    def progress(self, timeout: float = 0.2) -> list[dict[str, Any]]:
        """Best-effort progress of the chunks running now (``chunk``, ``step``, ``members``)."""
        refs = [h.progress.remote() for h in self.handles]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        out = []
        for ref in ready:
            try:
                out.append(ray.get(ref))
            except RayError:
                continue
        running = {chunk.id for chunk, _, _ in self.inflight.values()}
        return [p for p in out if p.get("chunk") in running]

    def shutdown(self, keep: bool = True) -> None:
        """Give the actors back (``keep``, and no chunk left running on them), else discard them."""
        (self.give_back if keep and not self.inflight else self.discard)(self.handles)
        self.handles = []

