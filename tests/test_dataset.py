"""Closure datasets: exact content against a direct DNS, resume, refusal of bad files, both problems."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from ensemble.config import ProjectConfig
from solvers.dataset import dataset_fingerprint, generate_dataset, read_dataset
from solvers.errors import UserError
from solvers.factory import build_simulation
from solvers.filters import LESFilter, subsample
from solvers.grid import SpectralGrid
from solvers.initial import gaussian_random_field
from solvers.random import MemberRandom, member_seeds
from solvers.simulation import STREAM_FORCING
from solvers.spectral_ops import advection

TINY_DATA = dict(n_fine=32, n_coarse=16, trajectories=3, n_train=2, t_start=0.004, t_end=0.01,
                 snapshot_interval=0.002, batch_size=2, seed=7)


def tiny_config(tmp_path, **data) -> ProjectConfig:
    return ProjectConfig.model_validate({
        "solver": {"dt": 1e-3, "precision": "float64", "device": "cpu"},
        "data": {**TINY_DATA, "path": str(tmp_path / "tiny.h5"), **data},
    })


def direct_dns(config: ProjectConfig, trajectory: int, steps: int) -> list:
    """Snapshots of trajectory ``trajectory`` run alone, every step (the reference)."""
    sim = build_simulation(config.physics, config.solver, config.data.n_fine, model="full")
    seeds = member_seeds(config.data.seed, [trajectory])
    w0 = gaussian_random_field(sim.equation.grid, MemberRandom(seeds),
                               config.physics.init_alpha, config.physics.init_tau)
    return list(sim.run(w0, seeds, steps, 1)), sim


def test_missing_physics_data_is_the_subsampled_dns_and_its_exact_closure(tmp_path):
    config = tiny_config(tmp_path)
    data = read_dataset(generate_dataset(config, progress=False), split="all")
    assert data.vorticity.shape == data.closure.shape == (3, 4, 16, 16)
    np.testing.assert_allclose(data.time, [0.004, 0.006, 0.008, 0.010])
    snaps, sim = direct_dns(config, trajectory=2, steps=10)
    fine = sim.equation.grid
    for index, step in enumerate((4, 6, 8, 10)):
        w = snaps[step].vorticity
        np.testing.assert_allclose(data.vorticity[2, index], subsample(w, 16)[0].numpy(), rtol=0, atol=1e-6)
        # sigma xi of the step that ended at the snapshot, drawn again from the member's stream
        sigma_xi = sim.noise.sigma * fine.to_physical(
            sim.noise.xi_hat(MemberRandom(member_seeds(config.data.seed, [2]), key=(STREAM_FORCING, step - 1))))
        expected = subsample(-advection(w, fine) + sigma_xi, 16)[0]
        np.testing.assert_allclose(data.closure[2, index], expected.numpy(), rtol=0, atol=1e-6)
    assert np.abs(data.closure).max() > 1e-3


def test_les_data_is_the_filtered_dns_and_finite(tmp_path):
    config = tiny_config(tmp_path, problem="les", trajectories=2, n_train=1)
    data = read_dataset(generate_dataset(config, progress=False), split="all")
    assert np.isfinite(data.vorticity).all() and np.isfinite(data.closure).all()
    assert np.abs(data.closure).max() > 0
    snaps, sim = direct_dns(config, trajectory=1, steps=10)
    les = LESFilter(sim.equation.grid, SpectralGrid(16, dtype=torch.float64))
    np.testing.assert_allclose(data.vorticity[1, -1], les(snaps[10].vorticity)[0].numpy(), atol=1e-6)


def test_interrupted_file_is_refused_then_resumed_to_the_uninterrupted_result(tmp_path):
    config = tiny_config(tmp_path)
    path = generate_dataset(config, progress=False, max_batches=1)
    with pytest.raises(UserError, match="incomplete"):
        read_dataset(path)
    partial = read_dataset(path, split="all", allow_partial=True)
    assert list(partial.trajectories) == [0, 1]
    with h5py.File(path, "r") as f:
        assert not f.attrs["complete"] and list(f["done"][:]) == [True, True, False]
    generate_dataset(config, progress=False)
    resumed = read_dataset(path, split="all")
    other = tiny_config(tmp_path, batch_size=3)
    reference = read_dataset(generate_dataset(other, tmp_path / "ref.h5", progress=False), split="all")
    np.testing.assert_allclose(resumed.vorticity, reference.vorticity, rtol=0, atol=1e-6)
    np.testing.assert_allclose(resumed.closure, reference.closure, rtol=0, atol=1e-6)


def test_attrs_splits_and_fingerprint(tmp_path):
    config = tiny_config(tmp_path)
    path = generate_dataset(config, progress=False)
    train, test = read_dataset(path, "train"), read_dataset(path, "test")
    assert train.vorticity.shape[0] == 2 and test.vorticity.shape[0] == 1
    attrs = train.attrs
    assert attrs["complete"] is True and attrs["problem"] == "missing_physics"
    assert (attrs["n_fine"], attrs["n_coarse"], attrs["n_train"], attrs["seed"]) == (32, 16, 2, 7)
    assert attrs["dt"] == 1e-3 and attrs["format_version"] == 1
    assert ProjectConfig.model_validate_json(attrs["config"]) == config
    assert {"torch", "numpy", "h5py", "latent-closure"} <= set(json.loads(attrs["versions"]))
    first = dataset_fingerprint(path)
    assert first == dataset_fingerprint(path) and len(first) == 64
    with h5py.File(path, "r+") as f:
        f["closure"][0, 0, 0, 0] += 1.0
    assert dataset_fingerprint(path) != first


def test_different_config_or_foreign_file_is_refused_and_left_untouched(tmp_path):
    config = tiny_config(tmp_path)
    path = generate_dataset(config, progress=False)
    before = path.read_bytes()
    changed = ProjectConfig.model_validate({**config.model_dump(), "physics": {"viscosity": 2e-3}})
    with pytest.raises(UserError, match=r"\[physics\]\.viscosity"):
        generate_dataset(changed, progress=False)
    assert path.read_bytes() == before
    foreign = tmp_path / "notes.h5"
    foreign.write_text("not hdf5")
    with pytest.raises(UserError, match="notes.h5"):
        generate_dataset(config, foreign, progress=False)
    assert foreign.read_text() == "not hdf5"
    with pytest.raises(UserError, match="notes.h5"):
        read_dataset(foreign)


def test_a_complete_file_with_the_same_config_is_not_rewritten(tmp_path):
    config = tiny_config(tmp_path)
    path = generate_dataset(config, progress=False)
    fingerprint, mtime = dataset_fingerprint(path), path.stat().st_mtime_ns
    moved = ProjectConfig.model_validate({**config.model_dump(), "solver": {**config.solver.model_dump(), "device": "auto"}})
    generate_dataset(moved, path, progress=False)
    assert dataset_fingerprint(path) == fingerprint and path.stat().st_mtime_ns == mtime


def test_window_must_fit_the_time_step(tmp_path):
    with pytest.raises(UserError, match="snapshot_interval"):
        generate_dataset(tiny_config(tmp_path, snapshot_interval=0.0015), progress=False)
    assert not (tmp_path / "tiny.h5").exists()
