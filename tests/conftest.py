"""Shared fixtures: one local Ray instance for the whole session, and a tiny ensemble setup; and
:func:`load_benchmark`, a script of ``benchmarks/`` (not a package) as a module."""

from __future__ import annotations

import importlib.util
import json
import logging
from types import ModuleType
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module of that name."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENSEMBLE_TOML = """
[physics]
noise_sigma = 0.05

[solver]
dt = 0.005
device = "cpu"

[data]
problem = "les"
n_fine = 32
n_coarse = 16
trajectories = 6
n_train = 2
t_start = 0.0
t_end = 0.2
snapshot_interval = 0.05
path = "{data}"

[ensemble]
members = 64
actors = 2
chunk_size = 8
duration = 0.2
output_interval = 0.05
closure = "smagorinsky"
flush_every = 2
"""


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance (2 CPUs, no dashboard) shared by every test that asks for it."""
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
        started = True
    yield ray
    if started:
        ray.shutdown()


def _write_reference_dataset(path: Path, n: int = 16, trajectories: int = 6, n_train: int = 2) -> None:
    """A closure dataset in the HDF5 format of ``solvers.dataset`` whose test trajectories are
    full-model runs on the ``n x n`` grid (a stand-in for filtered DNS: any reference will do for
    the ensemble statistics). Times 0, 0.05, ..., 0.2 (dt = 0.005)."""
    from ensemble.config import ProjectConfig
    from solvers.config import PhysicsConfig, SolverConfig
    from solvers.factory import build_simulation
    from solvers.grid import SpectralGrid
    from solvers.initial import gaussian_random_field
    from solvers.random import MemberRandom, member_seeds

    solver = SolverConfig(dt=0.005, precision="float64", device="cpu")
    physics = PhysicsConfig()
    grid = SpectralGrid(n, dtype=torch.float64)
    seeds = member_seeds(1234, range(trajectories))
    w0 = gaussian_random_field(grid, MemberRandom(seeds, key=(9,)))
    sim = build_simulation(physics, solver, n, model="full", device="cpu")
    snaps = [s.vorticity.numpy() for s in sim.run(w0, seeds, 40, 10)]
    vorticity = np.stack(snaps, axis=1).astype(np.float32)  # [traj, 5, n, n]
    with h5py.File(path, "w") as f:
        f["vorticity"] = vorticity
        f["closure"] = np.zeros_like(vorticity)
        f["time"] = 0.05 * np.arange(vorticity.shape[1])
        f["done"] = np.ones(trajectories, bool)
        f.attrs.update(
            complete=True, problem="les", n_fine=2 * n, n_coarse=n, n_train=n_train, dt=0.005, seed=1234,
            config=ProjectConfig().to_json(), versions=json.dumps({}), format_version=1,
        )


@pytest.fixture(scope="session")
def ensemble_setup(tmp_path_factory) -> Path:
    """A config TOML (16^2 LES, 64 members, 4 test trajectories) next to its tiny dataset."""
    root = tmp_path_factory.mktemp("ensemble_setup")
    data = root / "reference.h5"
    _write_reference_dataset(data)
    config = root / "ensemble.toml"
    config.write_text(ENSEMBLE_TOML.format(data=data))
    return config
