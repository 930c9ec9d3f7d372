"""The driver's side of Ray: joining a cluster, checking its resources, starting named actors.

Nothing here imports torch, so a launch can connect and start its solver actors
(:func:`start_solver_actors`) before the driver imports the solver stack itself: the actors'
start-up, a new process importing torch (~1.3 s), then runs beside the driver's.
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


def start_solver_actors(cfg: ProjectConfig) -> list[Any]:
    """Create the run's ``cfg.ensemble.actors`` solver actors, ``solver-0`` ..., unconfigured.

    Returns at once; each actor process starts and imports the solver stack in the background.
    The caller hands them to :func:`ensemble.run.launch` (which configures, uses and kills them)
    and kills any it did not hand over.
    """
    from ensemble.actors import SolverActor

    check_resources(cfg, shared_closure=False)
    return [create_named(SolverActor, f"solver-{slot}", solver_actor_options(cfg), f"solver-{slot}")
            for slot in range(cfg.ensemble.actors)]


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

    Joins ``address`` (None: starts a local instance, shut down at the end) and kills any started
    actor the run did not take over, also when the launch fails.
    """
    owned = connect_ray(address, dashboard)
    started: list[Any] = []
    try:
        started = start_solver_actors(cfg)
        from ensemble.run import launch  # torch and the solver stack, while the actors import theirs

        return launch(cfg, out, address=address, progress=progress, solver_actors=started)
    finally:
        kill_actors(started)  # those the run did not take over (it kills its own)
        if owned:
            import ray

            ray.shutdown()
