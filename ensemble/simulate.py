"""Integrate given initial vorticity fields and write the trajectory to HDF5 (``closure simulate``).

Contract::

    closure simulate CONFIG --init FIELD.npy --t-end T --out OUT.h5

* ``FIELD.npy``: ``[N, N]`` or ``[members, N, N]`` vorticity, ``w[i, j]`` at ``(x, y) = (i/N, j/N)``;
  the run uses an ``N x N`` grid.
* ``OUT.h5``: datasets ``vorticity`` ``[members, times, N, N]`` (the initial field first, the
  field at ``T`` last; float32, or float64 with ``--precision float64``) and ``time``
  ``[times]``; attrs ``config`` (JSON), ``seed``, ``dt``, ``physics``, ``closure``, ``noise``,
  ``t_end``, ``output_interval``, ``status`` (``complete`` or ``blow_up``), ``blow_ups``
  (JSON list of ``{member, step, time}``) and ``versions``.

Exit codes: 0 success; 2 bad input (one line on stderr naming the key or file; an existing
``OUT`` is untouched); 3 blow-up: some member became non-finite. On a blow-up the other
members still run to ``T``; ``OUT`` is written with ``status = "blow_up"``, the lost member's
frames after its last finite output are NaN, and one line on stderr names each lost member,
the step and the time.

:func:`simulate_to_file` does the work; :mod:`ensemble.cli.simulate` is the command's thin shell.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from ensemble.closures import build_closure, resolve_closure
from ensemble.config import ProjectConfig
from solvers.closure import Closure
from solvers.config import steps_in
from solvers.dataset import package_versions
from solvers.errors import UserError
from solvers.factory import build_simulation
from solvers.grid import SpectralGrid
from solvers.initial import load_field
from solvers.random import member_seeds
from solvers.simulation import BlowUp

logger = logging.getLogger(__name__)

PHYSICS = {"full": "full", "missing": "missing_physics"}
CLOSURES = ("none", "smagorinsky", "dynamic-smagorinsky")


@dataclass
class SimulationResult:
    """What :func:`simulate_to_file` wrote: the file, its shape and any blow-ups."""

    path: Path
    members: int
    times: int
    n: int
    blow_ups: list[BlowUp] = field(default_factory=list)


def make_closure(name: str, grid: SpectralGrid, config: ProjectConfig, physics: str) -> Closure | None:
    """The closure named on the command line for ``grid`` (None for ``none``).

    Classical closures are LES eddy viscosities (``--physics full``); a learned checkpoint must
    have been trained for the run's problem (``missing`` -> missing physics, ``full`` -> LES).
    """
    if name == "none":
        return None
    problem = "missing_physics" if physics == "missing" else "les"
    if name in CLOSURES and physics == "missing":
        raise UserError(f"--closure {name} is an LES eddy viscosity; use it with --physics full")
    source = resolve_closure(name, grid.n, problem, config.data.filter_width)
    return build_closure(source, grid, grid.device)


def output_steps(t_end: float, dt: float, interval: float | None, default_interval: float) -> tuple[int, int]:
    """``(n_steps, output_every)`` for a run to ``t_end``; UserError naming the bad option.

    Without ``--output-interval`` the config's snapshot interval is used when ``t_end`` is a
    multiple of it, else only the first and last fields are written.
    """
    if not t_end > 0:
        raise UserError(f"--t-end must be > 0, got {t_end}")
    n_steps = steps_in(t_end, dt, "--t-end")
    if interval is None:
        every = round(min(default_interval, t_end) / dt)
        if every < 1 or n_steps % every or abs(every * dt - min(default_interval, t_end)) > 1e-9:
            every = n_steps
        return n_steps, every
    if not interval > 0:
        raise UserError(f"--output-interval must be > 0, got {interval}")
    every = steps_in(interval, dt, "--output-interval")
    if n_steps % every:
        raise UserError(f"--t-end ({t_end:g}) must be a multiple of --output-interval ({interval:g})")
    return n_steps, every


def simulate_to_file(
    config: ProjectConfig,
    init: Path,
    t_end: float,
    out: Path,
    *,
    physics: str = "full",
    closure: str = "none",
    noise: bool = True,
    output_interval: float | None = None,
    seed: int | None = None,
) -> SimulationResult:
    """Integrate the fields in ``init`` to ``t_end`` and write ``out`` (see module docstring).

    The file is written to ``out.partial`` and moved over ``out`` only at the end, so an
    error leaves an existing ``out`` untouched. Member ``m`` uses seed
    ``member_seeds(seed, [m])`` (``seed`` defaults to ``[data].seed``).
    """
    if physics not in PHYSICS:
        raise UserError(f"--physics must be one of {', '.join(PHYSICS)}, got {physics!r}")
    try:
        w0 = load_field(init)
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(str(exc)) from None
    members, n = w0.shape[0], w0.shape[-1]
    dt = config.solver.dt
    n_steps, every = output_steps(t_end, dt, output_interval, config.data.snapshot_interval)
    model = PHYSICS[physics]
    grid = SpectralGrid(n, device=config.solver.torch_device(), dtype=config.solver.torch_dtype)
    closure_fn = make_closure(closure, grid, config, physics)
    if closure_fn is not None and model == "full":
        model = "les"
    sim = build_simulation(config.physics, config.solver, n, model=model, closure=closure_fn,
                           coupling=config.coupling, noise=noise, device=grid.device, dtype=grid.dtype,
                           filter_width=config.data.filter_width)
    seed = config.data.seed if seed is None else int(seed)
    seeds = member_seeds(seed, range(members))
    noisy = sim.noise is not None
    attrs = {
        "config": config.to_json(), "seed": seed, "dt": dt, "physics": model, "closure": closure,
        "noise": noisy, "t_end": t_end, "output_interval": every * dt, "init": str(init),
        "versions": json.dumps(package_versions()),
    }
    times = n_steps // every + 1
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    dtype = "float64" if config.solver.precision == "float64" else "float32"
    blow_ups: list[BlowUp] = []
    try:
        with torch.no_grad(), h5py.File(partial, "w") as f:
            vort = f.create_dataset("vorticity", shape=(members, times, n, n), dtype=dtype,
                                    chunks=(1, 1, n, n), fillvalue=np.nan)
            f.create_dataset("time", data=np.arange(times, dtype=np.float64) * every * dt)
            w_init = torch.as_tensor(w0, dtype=grid.dtype, device=grid.device)
            for snap in sim.run(w_init, seeds, n_steps, every):
                blow_ups += snap.blow_ups
                if snap.members.numel() and snap.step % every == 0:
                    rows = snap.members.cpu().numpy()
                    frame = snap.vorticity.detach().cpu().numpy().astype(dtype)
                    for r, m in enumerate(rows):
                        vort[m, snap.step // every] = frame[r]
            attrs["status"] = "blow_up" if blow_ups else "complete"
            attrs["blow_ups"] = json.dumps([b.__dict__ for b in blow_ups])
            f.attrs.update(attrs)
        os.replace(partial, out)
    finally:
        if partial.exists():
            partial.unlink()
    return SimulationResult(out, members, times, n, blow_ups)
