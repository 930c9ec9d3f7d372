"""``closure simulate``: the output contract, determinism, batching, blow-ups and bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from cli_runner import run_cli
from ensemble.cli.simulate import EXIT_BLOW_UP
from ensemble.config import load_config
from solvers.factory import build_simulation
from solvers.random import member_seeds

CONFIG = """
[solver]
dt = 1e-3
device = "cpu"

[data]
snapshot_interval = 0.002
seed = 3
"""


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "sim.toml"
    config.write_text(CONFIG)
    rng = np.random.default_rng(0)
    fields = rng.standard_normal((3, 16, 16))
    np.save(tmp_path / "three.npy", fields)
    np.save(tmp_path / "one.npy", fields[0])
    return config, tmp_path


def read(path):
    with h5py.File(path, "r") as f:
        return f["vorticity"][:], f["time"][:], dict(f.attrs)


def simulate(capsys, monkeypatch, config, init, out, *extra):
    return run_cli(capsys, monkeypatch, "simulate", config, "--init", init, "--t-end", "0.006", "--out", out, *extra)


def test_contract_shapes_times_and_attrs(setup, capsys, monkeypatch):
    config, tmp = setup
    code, stdout, err = simulate(capsys, monkeypatch, config, tmp / "one.npy", tmp / "one.h5")
    assert code == 0, err
    w, t, attrs = read(tmp / "one.h5")
    assert w.shape == (1, 4, 16, 16) and w.dtype == np.float32
    np.testing.assert_allclose(t, [0.0, 0.002, 0.004, 0.006])
    np.testing.assert_allclose(w[0, 0], np.load(tmp / "one.npy"), atol=1e-5)
    assert attrs["status"] == "complete" and json.loads(attrs["blow_ups"]) == []
    assert attrs["physics"] == "full" and bool(attrs["noise"]) and attrs["seed"] == 3 and attrs["dt"] == 1e-3
    assert json.loads(attrs["config"])["solver"]["dt"] == 1e-3
    code, _, _ = simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / "three.h5",
                          "--output-interval", "0.006", "--precision", "float64")
    w3, t3, _ = read(tmp / "three.h5")
    assert code == 0 and w3.shape == (3, 2, 16, 16) and w3.dtype == np.float64
    np.testing.assert_allclose(t3, [0.0, 0.006])


def test_no_noise_is_deterministic_and_equals_a_direct_run(setup, capsys, monkeypatch):
    config, tmp = setup
    for name in ("a.h5", "b.h5"):
        code, _, err = simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / name, "--no-noise",
                                "--precision", "float64")
        assert code == 0, err
    wa, _, attrs = read(tmp / "a.h5")
    np.testing.assert_array_equal(wa, read(tmp / "b.h5")[0])
    assert not attrs["noise"]
    cfg = load_config(config, {"solver.precision": "float64"})
    sim = build_simulation(cfg.physics, cfg.solver, 16, model="full", noise=False)
    w0 = torch.from_numpy(np.load(tmp / "three.npy"))
    direct = np.stack([s.vorticity.numpy() for s in sim.run(w0, [0, 0, 0], 6, 2)], axis=1)
    np.testing.assert_allclose(wa, direct, rtol=0, atol=1e-12)


def test_noise_differs_per_seed_and_a_member_does_not_depend_on_its_batch(setup, capsys, monkeypatch):
    config, tmp = setup
    simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / "noisy.h5", "--precision", "float64")
    simulate(capsys, monkeypatch, config, tmp / "one.npy", tmp / "alone.h5", "--precision", "float64")
    simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / "calm.h5", "--precision", "float64", "--no-noise")
    simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / "seed9.h5", "--precision", "float64",
             "--seed", "9")
    noisy, alone, calm, seed9 = (read(tmp / f)[0] for f in ("noisy.h5", "alone.h5", "calm.h5", "seed9.h5"))
    np.testing.assert_allclose(alone[0], noisy[0], rtol=0, atol=1e-12)
    assert np.abs(noisy[:, -1] - calm[:, -1]).max() > 1e-9
    assert np.abs(noisy[:, -1] - seed9[:, -1]).max() > 1e-9
    assert member_seeds(3, [0]) != member_seeds(9, [0])


def test_missing_physics_and_classical_closures_run(setup, capsys, monkeypatch):
    config, tmp = setup
    results = {}
    for name, extra in [("full", ()), ("missing", ("--physics", "missing")),
                        ("smag", ("--closure", "smagorinsky")), ("dyn", ("--closure", "dynamic-smagorinsky"))]:
        code, _, err = simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / f"{name}.h5", "--no-noise", *extra)
        assert code == 0, (name, err)
        results[name] = read(tmp / f"{name}.h5")
    assert results["missing"][2]["physics"] == "missing_physics"
    assert results["smag"][2]["closure"] == "smagorinsky"
    for name, (w, _, _) in results.items():
        assert np.isfinite(w).all(), name
        if name != "full":
            assert np.abs(w[:, -1] - results["full"][0][:, -1]).max() > 1e-7, name


def test_blow_up_exits_3_names_member_and_step_and_keeps_the_rest(setup, capsys, monkeypatch):
    config, tmp = setup
    rng = np.random.default_rng(1)
    np.save(tmp / "wild.npy", np.stack([rng.standard_normal((16, 16)), 1e3 * rng.standard_normal((16, 16))]))
    code, _, err = run_cli(capsys, monkeypatch, "simulate", config, "--init", tmp / "wild.npy", "--t-end", "0.2",
                           "--dt", "0.01", "--output-interval", "0.05", "--out", tmp / "wild.h5")
    assert code == EXIT_BLOW_UP
    assert err.count("\n") == 1 and "member 1 at step" in err and "member 0" not in err
    w, t, attrs = read(tmp / "wild.h5")
    assert attrs["status"] == "blow_up"
    (lost,) = json.loads(attrs["blow_ups"])
    assert lost["member"] == 1 and f"step {lost['step']}" in err
    assert np.isfinite(w[0]).all() and np.isfinite(w[1, 0]).all() and np.isnan(w[1, -1]).all()


def test_bad_input_is_one_line_exit_2_naming_the_problem_and_out_is_untouched(setup, capsys, monkeypatch):
    config, tmp = setup
    out = tmp / "keep.h5"
    out.write_bytes(b"previous result")
    np.save(tmp / "odd.npy", np.zeros((15, 15)))
    np.save(tmp / "flat.npy", np.zeros(16))
    np.save(tmp / "rect.npy", np.zeros((2, 16, 8)))
    nan = np.zeros((16, 16))
    nan[3, 4] = np.nan
    np.save(tmp / "nan.npy", nan)
    (tmp / "unknown.toml").write_text(CONFIG + "\n[physics]\nviscocity = 1e-3\n")
    (tmp / "wrongtype.toml").write_text(CONFIG.replace("dt = 1e-3", "dt = 'small'"))
    good = tmp / "one.npy"
    cases = [
        ((tmp / "unknown.toml", good), (), "[physics].viscocity"),
        ((tmp / "wrongtype.toml", good), (), "[solver].dt"),
        ((config, tmp / "odd.npy"), (), "odd.npy"),
        ((config, good), ("--dt", "0"), "[solver].dt"),
        ((config, good), ("--dt", "-1e-3"), "[solver].dt"),
        ((config, tmp / "absent.npy"), (), "absent.npy"),
        ((tmp / "absent.toml", good), (), "absent.toml"),
        ((config, tmp / "flat.npy"), (), "flat.npy"),
        ((config, tmp / "rect.npy"), (), "rect.npy"),
        ((config, tmp / "nan.npy"), (), "nan.npy"),
        ((config, good), ("--output-interval", "0.004"), "--output-interval"),
        ((config, good), ("--physics", "partial"), "--physics"),
        ((config, good), ("--closure", "oracle"), "--closure"),
        ((config, good), ("--physics", "missing", "--closure", "smagorinsky"), "--physics full"),
        ((config, good), ("--precision", "half"), "[solver].precision"),
    ]
    for (cfg, init), extra, named in cases:
        code, _, err = run_cli(capsys, monkeypatch, "simulate", cfg, "--init", init, "--t-end", "0.006",
                               "--out", out, *extra)
        assert code == 2, (named, err)
        assert err.startswith("error:") and err.count("\n") == 1 and named in err, (named, err)
        assert out.read_bytes() == b"previous result"
    code, _, err = run_cli(capsys, monkeypatch, "simulate", config, "--init", good, "--t-end", "0.0055", "--out", out)
    assert code == 2 and "--t-end" in err
    assert out.read_bytes() == b"previous result"
    assert not any(p.name.endswith(".partial") for p in tmp.iterdir())


def test_learned_checkpoint_drives_the_missing_physics_model_and_a_wrong_grid_is_refused(setup, capsys, monkeypatch):
    from pathlib import Path

    config, tmp = setup
    checkpoint = Path(__file__).resolve().parent.parent / "checkpoints" / "small" / "flow.safetensors"
    np.save(tmp / "coarse.npy", np.random.default_rng(1).standard_normal((2, 32, 32)) * 0.3)
    code, _, err = simulate(capsys, monkeypatch, config, tmp / "coarse.npy", tmp / "learned.h5",
                            "--physics", "missing", "--closure", checkpoint)
    assert code == 0, err
    w, _, attrs = read(tmp / "learned.h5")
    assert np.isfinite(w).all() and attrs["physics"] == "missing_physics"
    code, _, err = simulate(capsys, monkeypatch, config, tmp / "three.npy", tmp / "wrong.h5",
                            "--physics", "missing", "--closure", checkpoint)
    assert code == 2 and "32x32" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "wrong.h5").exists()
