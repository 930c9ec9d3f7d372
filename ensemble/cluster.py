"""The driver's side of Ray: joining a cluster, checking its resources, starting named actors.

Nothing here imports torch, so a launch can connect and start its solver actors
(:meth:`SolverActorPool.start`) before the driver imports the solver stack itself: the actors'
start-up, a new process importing torch (~1.3 s), then runs beside the driver's. A
:class:`SolverActorPool` also keeps actors alive from one run to the next, so that a series of
runs pays that start-up once.
"""

from __future__ import annotations

import logging
import socket
import time as clock
from pathlib import Path
from typing import Any

from ensemble.config import ProjectConfig
from solvers.errors import UserError


def connect_ray(address: str | None, dashboard: bool = False) -> bool:
    """Start a local Ray instance (``address`` None) or join one; returns True if we started it."""
    import ray

    if address is not None and address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"--address: expected auto or HOST:PORT, got {address!r}")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as exc:
            raise UserError(f"--address: cannot reach a Ray cluster at {address} ({exc})") from None
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=dashboard, logging_level=logging.WARNING, configure_logging=False)
        return True
    try:
        ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - every failure to join is one user error
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--address: cannot connect to Ray at {address} ({message})") from None
    return False


def check_resources(cfg: ProjectConfig, shared_closure: bool) -> None:
    """The cluster must be able to host the requested actors (else UserError, before starting any)."""
    import ray

    ens = cfg.ensemble
    total = ray.cluster_resources()
    cpus = ens.actors * ens.cpus_per_actor
    gpus = (ens.actors + (1 if shared_closure else 0)) * ens.gpus_per_actor
    if total.get("CPU", 0) + 1e-9 < cpus:
        raise UserError(
            f"--actors: {ens.actors} actors x {ens.cpus_per_actor:g} CPU need {cpus:g} CPUs, "
            f"the Ray cluster has {total.get('CPU', 0):g}"
        )
    if gpus > 0 and total.get("GPU", 0) + 1e-9 < gpus:
        raise UserError(f"--gpus-per-actor: the actors need {gpus:g} GPUs, the Ray cluster has {total.get('GPU', 0):g}")


def create_named(actor_class: Any, name: str, options: dict[str, Any], *args: Any) -> Any:
    """Create a named actor; a name still held by a just-killed actor is retried, then suffixed."""
    for attempt in range(20):
        try:
            return actor_class.options(name=name if attempt < 10 else f"{name}-{attempt}", **options).remote(*args)
        except ValueError:  # "The name ... is already taken": the GCS frees it shortly after a kill
            clock.sleep(0.2)
    raise UserError(f"cannot create Ray actor {name!r}: the name is taken in this Ray namespace")


def solver_actor_options(cfg: ProjectConfig) -> dict[str, Any]:
    """Ray options of every solver actor of a run (CPUs and GPUs per actor)."""
    return dict(num_cpus=cfg.ensemble.cpus_per_actor, num_gpus=cfg.ensemble.gpus_per_actor)


class SolverActorPool:
    """Solver actors that outlive a run: each run takes its actors from the pool, configures them
    for itself and gives them back; :meth:`close` (or leaving the ``with`` block) kills them.

    An actor's start-up, a new process importing torch and the solver stack, takes 1.1-1.7 s,
    as long as a short run itself. A pool pays it once for every run made on it (a study's
    methods, a sweep launched from Python). Chunks carry their members' seeds and a run
    configures every actor it takes, so a member's result does not depend on the actor's history.

    Example::

        with SolverActorPool() as pool:
            for closure in ("none", "checkpoints/small/flow.safetensors"):
                launch(cfg, out / closure, {"ensemble.closure": closure}, actor_pool=pool)
    """

    def __init__(self) -> None:
        self.idle: list[tuple[str, dict[str, Any], Any]] = []  # (name, Ray options, handle), oldest first
        self.lent: dict[int, tuple[str, dict[str, Any], Any]] = {}  # id(handle) -> the same, for taken actors

    def __enter__(self) -> SolverActorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, cfg: ProjectConfig) -> None:
        """Start the run's ``cfg.ensemble.actors`` actors (``solver-0`` ...) that the pool lacks
        (idle actors with other Ray options are killed first).

        Returns at once; each new actor process imports the solver stack in the background.
        """
        from ensemble.actors import SolverActor

        check_resources(cfg, shared_closure=False)
        options = solver_actor_options(cfg)
        self._drop_other_options(options)
        names = {name for name, _, _ in self.idle}
        for slot in range(cfg.ensemble.actors):
            name = f"solver-{slot}"
            if name not in names:
                self.idle.append((name, options, create_named(SolverActor, name, options, name)))

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every idle actor has started (else UserError after ``timeout`` seconds)."""
        import ray

        refs = [handle.ping.remote() for _, _, handle in self.idle]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            raise UserError(f"--actors: only {len(ready)} of {len(refs)} solver actors started within {timeout:g} s "
                            "(the cluster's resources are busy)")

    def take(self, name: str, options: dict[str, Any]) -> Any:
        """An idle actor with these Ray ``options``, the one called ``name`` if idle; else a new one.

        Idle actors with other options are killed first: they hold resources the new one may need.
        """
        from ensemble.actors import SolverActor

        self._drop_other_options(options)
        names = [idle_name for idle_name, _, _ in self.idle]
        if self.idle:
            name, _, handle = self.idle.pop(names.index(name) if name in names else 0)
        else:
            handle = create_named(SolverActor, name, options, name)
        self.lent[id(handle)] = (name, options, handle)
        return handle

    def _drop_other_options(self, options: dict[str, Any]) -> None:
        """Kill the idle actors started with other Ray options (CPUs, GPUs) than ``options``."""
        kill_actors([handle for _, opts, handle in self.idle if opts != options])
        self.idle = [entry for entry in self.idle if entry[1] == options]

    def give_back(self, handles: list[Any]) -> None:
        """Return actors taken from the pool for the next run (live ones: a run kills its dead ones)."""
        self.idle.extend(self.lent.pop(id(handle)) for handle in handles)

    def forget(self, handles: list[Any]) -> None:
        """Kill actors taken from the pool instead of returning them (an interrupted run's)."""
        for handle in handles:
            self.lent.pop(id(handle), None)
        kill_actors(handles)

    def close(self) -> None:
        """Kill every actor of the pool, idle or still taken by a run."""
        kill_actors([handle for _, _, handle in [*self.idle, *self.lent.values()]])
        self.idle, self.lent = [], {}


def kill_actors(handles: list[Any]) -> None:
    """Kill actors, ignoring those already gone."""
    import ray

    for handle in handles:
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def launch_with_early_actors(cfg: ProjectConfig, out: Path, *, address: str | None, dashboard: bool = False,
                             progress: bool = False) -> Any:
    """:func:`ensemble.run.launch` on Ray, its solver actors started before the solver stack is
    imported here (see module docstring); returns its :class:`~ensemble.run.RunSummary`.

    Joins ``address`` (None: starts a local instance, shut down at the end) and kills the actors
    at the end, also when the launch fails.
    """
    owned = connect_ray(address, dashboard)
    try:
        with SolverActorPool() as pool:
            pool.start(cfg)
            from ensemble.run import launch  # torch and the solver stack, while the actors import theirs

            return launch(cfg, out, address=address, progress=progress, actor_pool=pool)
    finally:
        if owned:
            import ray

            ray.shutdown()
