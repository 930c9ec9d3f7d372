"""``closure ensemble``: launch/status/resume and the bad-input cases (one line, exit 2, nothing overwritten)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from solvers.errors import UserError

TINY = ["--members", "2", "--in-process", "--no-progress", "--t-end", "0.05"]


def invoke(*args: str):
    return CliRunner().invoke(app, ["ensemble", *map(str, args)])


def user_error(result) -> str:
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def finished_run(ensemble_setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("launch", ensemble_setup, "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    return out


def test_launch_and_status(finished_run):
    result = invoke("status", finished_run)
    assert result.exit_code == 0
    assert "complete" in result.output and "members: 2/2 done" in result.output


def test_output_dir_with_another_run_is_refused_and_untouched(ensemble_setup, finished_run):
    manifest = (finished_run / "manifest.json").read_bytes()
    message = user_error(invoke("launch", ensemble_setup, "--out", finished_run, *TINY, "--seed", "5"))
    assert "already holds run" in message
    assert (finished_run / "manifest.json").read_bytes() == manifest


def test_cli_exit_code_2_and_one_line(ensemble_setup, finished_run):
    proc = subprocess.run(
        [sys.executable, "-c", "from ensemble.cli import main; main()", "ensemble", "launch", str(ensemble_setup),
         "--out", str(finished_run), *TINY],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --out:")


def test_unreachable_address(ensemble_setup, tmp_path):
    message = user_error(invoke("launch", ensemble_setup, "--out", tmp_path / "r", "--address", "127.0.0.1:9"))
    assert message.startswith("--address: cannot reach")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option, value, start", [
    ("--closure", "nowhere.safetensors", "--closure: 'nowhere.safetensors' is neither"),
    ("--data", "nowhere.h5", "nowhere.h5: no such dataset file"),
    ("--init", "nowhere.npy", "--init: nowhere.npy: no such file"),
])
def test_missing_input_files_are_refused_before_ray_is_joined(ensemble_setup, tmp_path, option, value, start):
    """A typo fails at once: before the (unreachable) cluster is even contacted."""
    message = user_error(invoke("launch", ensemble_setup, "--out", tmp_path / "r", "--address", "127.0.0.1:9",
                                option, value, "--no-progress"))
    assert message.startswith(start), message
    assert not (tmp_path / "r").exists()


def test_too_few_resources(ray_session, ensemble_setup, tmp_path):
    message = user_error(invoke("launch", ensemble_setup, "--out", tmp_path / "r", "--actors", "8", "--no-progress"))
    assert message.startswith("--actors: 8 actors")
    assert not (tmp_path / "r").exists()


def test_ray_launch_uses_the_actors_it_started_early_and_matches_the_in_process_run(ray_session, ensemble_setup,
                                                                                     finished_run, tmp_path):
    """The CLI starts the solver actors before importing the solver stack; the run configures and
    uses them (none is left behind) and its members equal the in-process run's."""
    from ensemble.parquet_sink import read_table

    ray_args = [a for a in TINY if a != "--in-process"]
    result = invoke("launch", ensemble_setup, "--out", tmp_path / "r", *ray_args, "--actors", "2", "--chunk-size", "1")
    assert result.exit_code == 0, result.output
    def rows(out):
        return read_table(out, "members").to_pandas().sort_values(["member", "step"])

    ray_rows, local_rows = rows(tmp_path / "r"), rows(finished_run)
    np.testing.assert_array_equal(ray_rows[["member", "step"]], local_rows[["member", "step"]])
    np.testing.assert_allclose(ray_rows["energy"], local_rows["energy"], rtol=1e-6)
    np.testing.assert_allclose(ray_rows["rel_error"], local_rows["rel_error"], atol=1e-6)  # float32 round-off at t0
    assert not [a for a in ray_session.util.list_named_actors() if a.startswith("solver-")]


def test_actors_started_early_are_killed_when_the_launch_fails(ray_session, ensemble_setup, tmp_path):
    ray_args = [a for a in TINY if a != "--in-process"]
    message = user_error(invoke("launch", ensemble_setup, "--out", tmp_path / "r", *ray_args, "--actors", "2",
                                "--data", tmp_path / "missing.h5"))
    assert "missing.h5" in message
    assert not [a for a in ray_session.util.list_named_actors() if a.startswith("solver-")]


def tiny_checkpoint(path, grid_size: int, closure_std: float = 0.01):
    """An untrained joint L-CDM checkpoint for the ``les`` problem on a ``grid_size``^2 grid, the same
    weights every time, its samples scaled to ``closure_std`` (the closure's normalisation)."""
    pytest.importorskip("models.checkpoint")
    import torch
    from models.builders import build_model
    from models.checkpoint import Checkpoint, save_checkpoint
    from models.config import ModelSection, TrainingSection
    from models.normalization import FieldNormalization, Normalization

    small = ModelSection(physical_width=6, physical_modes=3, physical_layers=2, latent_width=6, latent_layers=2, ae_channels=4)
    with torch.random.fork_rng():  # the caller's random state untouched
        torch.manual_seed(0)
        model = build_model("joint-lcdm", small)
    ckpt = Checkpoint(
        model=model, method="joint-lcdm", model_config=small,
        training_config=TrainingSection(), grid_size=grid_size, problem="les",
        normalization=Normalization(FieldNormalization(0.0, 1.0), FieldNormalization(0.0, closure_std)),
    )
    return save_checkpoint(ckpt, path)


def test_checkpoint_for_another_grid(ensemble_setup, tmp_path):
    path = tiny_checkpoint(tmp_path / "n32.safetensors", 32)
    message = user_error(invoke("launch", ensemble_setup, "--out", tmp_path / "r", "--closure", path, *TINY))
    assert "32x32 grid" in message and "16x16" in message
    assert not (tmp_path / "r").exists()


def test_sampler_options_reach_the_closure(ensemble_setup, tmp_path):
    """``--sampler/--sampler-steps`` are recorded in the run's config, shown by status, and change the samples."""
    from ensemble.manifest import Manifest
    from ensemble.parquet_sink import read_table

    path = tiny_checkpoint(tmp_path / "n16.safetensors", 16)
    energies = {}
    for name, extra in {"default": [], "ancestral": ["--sampler", "ancestral", "--sampler-steps", "2"]}.items():
        result = invoke("launch", ensemble_setup, "--out", tmp_path / name, "--closure", path, *TINY, *extra)
        assert result.exit_code == 0, result.output
        energies[name] = read_table(tmp_path / name, "members").to_pandas()["energy"].to_numpy()
    config = Manifest.load(tmp_path / "ancestral").config["ensemble"]
    assert (config["sampler"], config["sampler_steps"]) == ("ancestral", 2)
    assert "(ancestral x2, t_max 0.4, sampled every" in invoke("status", tmp_path / "ancestral").output
    assert "(euler_maruyama x10, t_max 0.4, sampled every" in invoke("status", tmp_path / "default").output
    assert energies["default"].shape == energies["ancestral"].shape
    assert not np.array_equal(energies["default"][2:], energies["ancestral"][2:])  # rows 0-1: the shared start


def test_closure_precision_reaches_the_closure(ensemble_setup, tmp_path):
    """``--closure-precision bfloat16`` is recorded, shown by status, and samples close to float32."""
    from ensemble.manifest import Manifest
    from ensemble.parquet_sink import read_table

    # a closure strong enough that its bfloat16 rounding shows in the energies (at the default
    # 0.01 an unseeded model once gave bit-identical float32 and bfloat16 rollouts)
    path = tiny_checkpoint(tmp_path / "n16.safetensors", 16, closure_std=0.5)
    energies = {}
    for precision in ("float32", "bfloat16"):
        result = invoke("launch", ensemble_setup, "--out", tmp_path / precision, "--closure", path, *TINY,
                        "--closure-precision", precision)
        assert result.exit_code == 0, result.output
        energies[precision] = read_table(tmp_path / precision, "members").to_pandas()["energy"].to_numpy()
    assert Manifest.load(tmp_path / "bfloat16").config["ensemble"]["closure_precision"] == "bfloat16"
    assert "t_max 0.4, bfloat16 autoencoders, sampled every" in invoke("status", tmp_path / "bfloat16").output
    assert not np.array_equal(energies["float32"], energies["bfloat16"])
    np.testing.assert_allclose(energies["bfloat16"], energies["float32"], rtol=1e-2)


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--closure", "no-such-model"], "--closure:"),
        (["--init", "missing.npy"], "--init:"),
        (["--t-end", "-1"], "--t-end"),
        (["--output-interval", "0.03"], "--output-interval"),
        (["--closure-mode", "everywhere"], "[ensemble].closure_mode: Input should be"),
        (["--sampler", "rk4"], "[ensemble].sampler: Input should be"),
        (["--closure-precision", "half"], "[ensemble].closure_precision: Input should be"),
    ],
)
def test_bad_options(ensemble_setup, tmp_path, args, start):
    full = [*TINY[:-2], *args] if "--t-end" in args else [*TINY, *args]
    message = user_error(invoke("launch", ensemble_setup, "--out", tmp_path / "r", *full))
    assert start in message, message
    assert not (tmp_path / "r").exists()


def test_npy_initial_condition_of_wrong_grid(ensemble_setup, tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((3, 8, 8)))
    result = invoke("launch", ensemble_setup, "--out", tmp_path / "r", "--init", tmp_path / "w.npy", *TINY)
    assert result.exit_code == 0, result.output  # an .npy field sets the grid of the run
    message = user_error(invoke("resume", tmp_path / "nothing"))
    assert "not an ensemble run directory" in message


def test_closure_every_option_sets_the_coupling(ensemble_setup, finished_run, tmp_path):
    from ensemble.manifest import Manifest

    # --sampler is for learned closures: a classical closure's status does not claim one
    result = invoke("launch", ensemble_setup, "--out", tmp_path / "r", *TINY, "--closure-every", "3",
                    "--sampler", "ancestral")
    assert result.exit_code == 0, result.output
    run, default = Manifest.load(tmp_path / "r"), Manifest.load(finished_run)
    assert run.config["coupling"]["closure_every"] == 3 != default.config["coupling"]["closure_every"]
    assert run.run_id != default.run_id  # the coupling determines the members' results
    assert run.config["ensemble"]["closure"] != "none" and run.plan["sampler"] is None
    assert "(sampled every 3 steps)" in invoke("status", tmp_path / "r").output
