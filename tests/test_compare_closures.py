"""``benchmarks/compare_closures.py``: contenders are parsed with one clear error each, a tiny
comparison runs end to end, repeats itself bit for bit, and its spectrum figures agree with an
offline recomputation from the reference file it names."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from solvers.dataset import read_dataset
from solvers.diagnostics import energy_spectrum
from solvers.grid import SpectralGrid

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "small" / "subpixel" / "flow-distilled.safetensors"
REFERENCE = ROOT / "checkpoints" / "small" / "reference.h5"


@pytest.fixture(scope="module")
def compare():
    return load_benchmark("compare_closures")


def test_contenders_parse_with_their_coupling(compare):
    assert compare.parse_contender("bare=none") == ("bare", "none", 5)
    assert compare.parse_contender(f"s={CHECKPOINT}@50") == ("s", str(CHECKPOINT), 50)


@pytest.mark.parametrize("text, message", [("nolabel", "expected LABEL=CHECKPOINT"), ("=none", "expected LABEL"),
                                           ("a=none@0", "positive number"), ("a=none@x", "positive number"),
                                           ("a=missing.safetensors", "no such checkpoint")])
def test_a_bad_contender_is_one_clear_error(compare, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        compare.parse_contender(text)


@pytest.mark.parametrize("option", ["--members", "--repeats", "--duration"])
def test_a_non_positive_size_is_refused(compare, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.parse_args(["a=none", option, "0"])
    assert exit_info.value.code != 0 and f"{option} must be positive" in capsys.readouterr().err


def test_an_earlier_comparison_is_not_overwritten(compare, tmp_path, capsys):
    (tmp_path / "compare.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        compare.parse_args(["a=none", "--out", str(tmp_path)])
    assert exit_info.value.code != 0 and "earlier comparison" in capsys.readouterr().err
    assert (tmp_path / "compare.json").read_text() == "{}"


@pytest.mark.skipif(not (CHECKPOINT.is_file() and REFERENCE.is_file()), reason="shipped checkpoint not present")
def test_tiny_comparison_repeats_itself_and_matches_an_offline_spectrum(compare, tmp_path):
    compare.main([f"a={CHECKPOINT}", f"b={CHECKPOINT}", "bare=none@1", "--members", "4", "--duration", "0.1",
                  "--repeats", "1", "--out", str(tmp_path)])
    rows = {row["label"]: row for row in json.loads((tmp_path / "compare.json").read_text())}
    assert rows["a"]["rel_error_mean"] == rows["b"]["rel_error_mean"]
    assert rows["a"]["spectrum_rel_error_per_shell"] == rows["b"]["spectrum_rel_error_per_shell"]
    assert rows["a"]["rel_error_mean"] != rows["bare"]["rel_error_mean"]
    # offline: the reference's test trajectories' mean spectrum at the final time, shells 1..n/4
    data = read_dataset(REFERENCE, split="test")
    index = int(np.argmin(np.abs(data.time - rows["a"]["final_time"])))
    grid = SpectralGrid(data.vorticity.shape[-1], dtype=torch.float64)
    ref = energy_spectrum(torch.from_numpy(data.vorticity[:, index].astype(np.float64)), grid).mean(0).numpy()
    for row in rows.values():
        shells = np.asarray(row["spectrum_rel_error_per_shell"])
        offline = np.asarray(row["spectrum_mean"])[1:9] / ref[1:9] - 1
        assert row["reference"] == str(REFERENCE)
        np.testing.assert_allclose(shells, offline, atol=1e-4)
        assert row["spectrum_max_rel_error"] == pytest.approx(np.abs(offline).max(), abs=1e-4)
    table = [line.split(" | ")[0] for line in (tmp_path / "compare.md").read_text().splitlines() if line.startswith("| ")]
    assert table == ["| contender", "| a", "| b", "| bare"]
