"""``closure data generate``: writes and resumes datasets, bad input is one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np

from cli_runner import run_cli
from ensemble.config import load_config
from solvers.dataset import dataset_fingerprint, generate_dataset, read_dataset

TINY_TOML = """
[solver]
dt = 1e-3
device = "cpu"

[data]
n_fine = 32
n_coarse = 16
trajectories = 3
n_train = 2
t_start = 0.002
t_end = 0.006
snapshot_interval = 0.002
batch_size = 2
path = "{path}"
"""


def write_config(tmp_path, extra: str = "", name: str = "tiny.toml"):
    path = tmp_path / name
    path.write_text(TINY_TOML.format(path=tmp_path / "data.h5") + extra)
    return path


def test_generate_writes_a_complete_dataset_and_a_summary(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path)
    out = tmp_path / "custom" / "out.h5"
    code, stdout, _ = run_cli(capsys, monkeypatch, "data", "generate", config, "--out", out,
                              "--precision", "float64", "--no-progress")
    assert code == 0, stdout
    assert str(out) in stdout and "3 trajectories (2 train / 1 test)" in stdout
    data = read_dataset(out, "all")
    assert data.vorticity.shape == (3, 3, 16, 16) and data.vorticity.dtype == np.float32
    assert load_config(config).data.path != str(out)
    assert '"precision":"float64"' in data.attrs["config"].replace(" ", "")


def test_generate_resumes_an_interrupted_file(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path)
    cfg = load_config(config, {"solver.precision": "float64"})
    path = generate_dataset(cfg, progress=False, max_batches=1)
    with h5py.File(path, "r") as f:
        assert list(f["done"][:]) == [True, True, False]
        first_two = f["vorticity"][:2]
    code, stdout, _ = run_cli(capsys, monkeypatch, "data", "generate", config, "--precision", "float64",
                              "--no-progress")
    assert code == 0
    data = read_dataset(path, "all")
    np.testing.assert_array_equal(data.vorticity[:2], first_two)  # done trajectories were skipped
    assert np.isfinite(data.vorticity).all()


def test_mismatched_or_bad_input_is_one_line_exit_2_and_leaves_the_file(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path)
    assert run_cli(capsys, monkeypatch, "data", "generate", config, "--no-progress")[0] == 0
    path = tmp_path / "data.h5"
    before = dataset_fingerprint(path), path.stat().st_mtime_ns
    cases = [
        (("--trajectories", "4"), "[data].trajectories"),
        (("--trajectories", "1"), "n_train"),
        (("--precision", "float16"), "[solver].precision"),
        (("--device", "warp-drive"), "device"),
    ]
    for extra, named in cases:
        code, _, err = run_cli(capsys, monkeypatch, "data", "generate", config, "--no-progress", *extra)
        assert code == 2, (extra, err)
        assert err.count("\n") == 1 and err.startswith("error:") and named in err, err
    for toml, named in [("\n[physics]\nviscosity = 'thick'\n", "[physics].viscosity"),
                        ("\n[physics]\nviscocity = 1e-3\n", "[physics].viscocity")]:
        bad = write_config(tmp_path, toml, name="bad.toml")
        code, _, err = run_cli(capsys, monkeypatch, "data", "generate", bad, "--no-progress")
        assert code == 2 and named in err and err.count("\n") == 1, err
    code, _, err = run_cli(capsys, monkeypatch, "data", "generate", tmp_path / "missing.toml")
    assert code == 2 and "missing.toml" in err
    assert (dataset_fingerprint(path), path.stat().st_mtime_ns) == before


def test_console_script_reports_user_errors_with_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from ensemble.cli import main; main()", "data", "generate",
         str(tmp_path / "nowhere.toml")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere.toml'}: no such config file"]


def test_command_line_starts_without_torch():
    """Help, status and bad-input errors answer in a fraction of a second: torch (1 s to import) is
    loaded only by the commands that compute. The actor classes and the driver's Ray helpers do not
    import it either, so a launch starts its actors before importing it (ensemble.cluster)."""
    code = ("import sys, ensemble.cli, ensemble.status, ensemble.cluster; "
            "print(sorted(m for m in ('torch', 'ray', 'h5py') if m in sys.modules)); "
            "import ensemble.actors; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "False"]


def test_console_script_leaves_ray_it_connected_to(monkeypatch):
    """``main`` disconnects explicitly at the end of a command that used Ray (faster than Ray's exit
    hook), and does not import Ray for commands that did not."""
    import types

    from ensemble import cli

    calls = []
    fake = types.SimpleNamespace(is_initialized=lambda: True, shutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(cli, "app", lambda: None)
    cli.main()
    assert calls == ["shutdown"]
    monkeypatch.delitem(sys.modules, "ray")
    cli.main()
    assert calls == ["shutdown"] and "ray" not in sys.modules
