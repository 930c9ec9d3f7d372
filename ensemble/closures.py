"""Choose the ensemble's closure by name or checkpoint path, load it once, build it per device.

Names: ``none`` (no closure term: the bare coarse model), ``smagorinsky``,
``dynamic-smagorinsky`` (:mod:`solvers.smagorinsky`); anything else is a checkpoint path
loaded with :func:`models.closures.load_closure` (imported lazily, so the solver-only path
does not need the models package). The driver calls :func:`resolve_closure` once: it checks
the checkpoint's ``grid_size`` against the run's grid and loads the weights a single time;
each worker then calls :func:`build_closure` on its own device with the loaded payload
(shipped through Ray's object store, or held by the shared closure actor).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ensemble.run_config import CLASSICAL, check_closure_name
from solvers.closure import Closure
from solvers.errors import UserError
from solvers.grid import SpectralGrid
from solvers.smagorinsky import DynamicSmagorinsky, Smagorinsky

logger = logging.getLogger(__name__)


@dataclass
class ClosureSource:
    """What a worker needs to build the closure.

    Attributes:
        name: ``none``, ``smagorinsky``, ``dynamic-smagorinsky`` or ``checkpoint``.
        path: the checkpoint path (``checkpoint`` only).
        payload: the loaded closure object, or a Ray ``ObjectRef`` to it (``checkpoint`` only).
        filter_width: LES filter width of the Smagorinsky closures (None: ``2 / n``).
    """

    name: str
    path: str | None = None
    payload: Any = None
    filter_width: float | None = None


def resolve_closure(spec: str, n: int, problem: str, filter_width: float | None = None, *,
                    sampler: str | None = None, steps: int | None = None, precision: str | None = None) -> ClosureSource:
    """Validate a ``--closure`` value for an ``n x n`` run; load a checkpoint once (on CPU).

    ``sampler`` and ``steps`` replace a score model's sampler defaults (None: the checkpoint's);
    ``precision`` is a latent model's autoencoder precision (:mod:`models.precision`)."""
    if spec in CLASSICAL:
        if spec != "none" and problem == "missing_physics":
            logger.warning("%s models only the subgrid term; the missing-physics problem needs advection too", spec)
        return ClosureSource(spec, filter_width=filter_width)
    check_closure_name(spec)
    path = Path(spec)
    from models.closures import load_closure  # lazy: models/ is optional for classical closures

    try:
        closure = load_closure(path, device="cpu", sampler=sampler, steps=steps, precision=precision)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
        raise UserError(f"--closure: {path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
    check_grid(closure, n, str(path))
    trained_on = getattr(getattr(closure, "checkpoint", None), "problem", None)
    if trained_on is not None and trained_on != problem:
        raise UserError(f"--closure: {path} was trained for the {trained_on} problem but the run is {problem}")
    return ClosureSource("checkpoint", str(path), closure)


def sampler_description(source: ClosureSource) -> str | None:
    """How a loaded learned closure samples (:meth:`~models.sampling_options.SamplerOptions.describe`);
    None for the classical closures."""
    options = getattr(source.payload, "options", None)
    if options is None:
        return None
    return options.describe(source.payload.method, source.payload.teacher_steps)


def check_grid(closure: Any, n: int, where: str) -> None:
    """A closure with a ``grid_size`` must match the run's grid ``n`` (else :class:`UserError`)."""
    size = getattr(closure, "grid_size", None)
    if size is not None and int(size) != n:
        raise UserError(f"--closure: {where} was trained on a {size}x{size} grid but the run's grid is {n}x{n}")


def build_closure(source: ClosureSource, grid: SpectralGrid, device: torch.device) -> Closure | None:
    """The closure object for a worker on ``device`` (resolves an ObjectRef payload); None for ``none``."""
    if source.name == "none":
        return None
    if source.name == "smagorinsky":
        return Smagorinsky(grid, width=source.filter_width)
    if source.name == "dynamic-smagorinsky":
        return DynamicSmagorinsky(grid, width=source.filter_width)
    payload = source.payload
    if payload is None:
        raise ValueError(f"closure {source.path!r} was not loaded by the driver")
    if type(payload).__name__ == "ObjectRef":
        import ray

        payload = ray.get(payload)
    return _on_device(payload, torch.device(device))


def _on_device(closure: Any, device: torch.device) -> Any:
    """A generative closure rebuilt on ``device`` when it lives elsewhere (weights shared)."""
    current = getattr(closure, "device", None)
    if current is None or torch.device(current) == device:
        return closure
    return type(closure)(closure.checkpoint, closure.options, device)
