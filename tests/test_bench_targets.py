"""``make bench`` (``benchmarks/targets.py``): a row's pass follows its ratio and its accuracy
conditions, and the whole bench runs end to end (``--smoke``: tiny sizes, a separate output folder,
every row of issue #7 written, the committed results untouched, in-process and Ray runs identical).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("1", "2a", "2b", "3a", "3b", "3c", "4a", "4b", "3d", "3e", "3f", "4c", "4d", "5", "6", "6b", "6c", "6d")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("targets")


def test_a_row_passes_on_its_ratio_in_its_direction(bench):
    assert bench.target("x", 4.9, 5, False)["pass"]
    assert not bench.target("x", 5.1, 5, False)["pass"]
    assert bench.target("x", 10.0, 10, True)["pass"]
    assert not bench.target("x", 9.9, 10, True)["pass"]


@pytest.mark.parametrize("flag", ["accuracy_ok", "spectrum_ok", "same_results_in_every_mode"])
def test_a_fast_row_fails_when_its_accuracy_condition_fails(bench, flag):
    assert bench.target("x", 20.0, 10, True, **{flag: True})["pass"]
    row = bench.target("x", 20.0, 10, True, **{flag: False})
    assert not row["pass"] and row[flag] is False


def test_ratio_spread_takes_fastest_against_slowest(bench):
    assert bench.ratio_spread((2.0, 3.0), (0.5, 1.0)) == (2.0, 6.0)


def test_short_launches_are_repeated_and_long_ones_are_not(bench):
    assert bench.launches(0.1, 3) == bench.SHORT_REPEATS
    assert bench.launches(0.1, 3, short_repeats=1) == 3
    assert bench.launches(10.0, 3) == 3
    assert bench.launches(bench.LONG_S + 1, 3) == 1


def test_same_results_compares_bit_for_bit_and_nan_equal(bench):
    run = {"rel_error": float("nan"), "spectrum": [1.0, 2.0]}
    assert bench.same_results(run, dict(run))
    assert not bench.same_results(run, {**run, "spectrum": [1.0, 2.0 + 1e-12]})


def test_smoke_bench_without_out_is_refused(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--smoke"])
    assert exit_info.value.code == 2 and "--smoke needs --out" in capsys.readouterr().err


def test_smoke_bench_writes_every_row_elsewhere(tmp_path):
    committed = (ROOT / "benchmarks" / "results.json").read_bytes()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "targets.py"), "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (ROOT / "benchmarks" / "results.json").read_bytes() == committed

    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["targets"]
    assert [row["name"].split(".")[0] for row in rows] == list(ROWS)
    for row in rows:
        assert math.isfinite(row["measured"]) and row["measured"] > 0, row
        ratio_ok = row["measured"] >= row["target"] if row["direction"] == ">=" else row["measured"] <= row["target"]
        flags_ok = all(row.get(flag, True) for flag in ("accuracy_ok", "spectrum_ok", "same_results_in_every_mode"))
        assert row["pass"] == (ratio_ok and flags_ok), row
    ray_rows = [row for row in rows if row["name"].startswith(("6.", "6c.", "6d."))]
    assert all(row["same_results_in_every_mode"] for row in ray_rows)

    table = (tmp_path / "results.md").read_text()
    assert "Smoke run" in table
    for row in rows:
        assert f"| {row['name']} | {row['measured']} |" in table
