"""``closure report``: the plots exist and are images, the summary's numbers are the Parquet numbers,
the reference is the right trajectory at the right times, a non-run is one-line exit 2, and an
interrupted run is reported as partial.

Setup: the session's tiny 16^2 LES config (``conftest.ensemble_setup``), 16 members from 4 test
trajectories, in one process (the report does not care how a run was executed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.parquet_sink import latest_stats
from ensemble.report import load_reference, load_run, make_report, spectrum_error
from ensemble.run import Hooks, launch
from solvers.dataset import read_dataset
from solvers.errors import UserError

TINY = {"ensemble.members": 16, "ensemble.chunk_size": 4}  # 4 groups of 4: one chunk per group


@pytest.fixture(scope="module")
def runs(ensemble_setup, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    launch(ensemble_setup, root / "smag", TINY, in_process=True)
    launch(ensemble_setup, root / "none", {**TINY, "ensemble.closure": "none"}, in_process=True)
    return root / "smag", root / "none"


@pytest.fixture(scope="module")
def report(runs):
    run, baseline = runs
    return make_report(run, baseline)


def test_report_writes_four_readable_pngs(report, runs):
    assert report.out == runs[0] / "report"
    assert [p.name for p in report.plots] == ["spectrum.png", "pdfs.png", "fields.png", "metrics.png"]
    for path in report.plots:
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # not a blank canvas


def test_summary_numbers_are_the_parquet_numbers(report, runs):
    stats = latest_stats(runs[0]).to_pydict()
    numbers = json.loads((report.out / "summary.json").read_text())
    assert numbers["partial"] is False and numbers["members_done"] == 16 and numbers["groups"] == [0, 1, 2, 3]
    for row in numbers["per_time"]:
        at = [i for i, t in enumerate(stats["time"]) if t == row["time"]]
        assert len(at) == 4  # one row per group
        assert row["members"] == sum(stats["members"][i] for i in at)
        for name in ("rel_error_mean", "crps_vorticity", "spread", "energy_mean"):
            assert row[name] == pytest.approx(np.mean([stats[name][i] for i in at]), rel=1e-12)
    final = numbers["per_time"][-1]
    text = report.summary.read_text()
    assert f"{final['rel_error_mean']:.4g}" in text and "complete" in text and "PARTIAL" not in text
    baseline_final = latest_stats(runs[1]).to_pydict()
    last = max(baseline_final["time"])
    expected = np.mean([e for e, t in zip(baseline_final["rel_error_mean"], baseline_final["time"]) if t == last])
    assert numbers["baseline"]["rel_error_final"] == pytest.approx(expected, rel=1e-12)


def test_reference_is_each_groups_trajectory_at_the_output_times(runs, ensemble_setup):
    results = load_run(runs[0])
    reference = load_reference(results)
    data = read_dataset(ensemble_setup.parent / "reference.h5", split="test")
    for j, t in enumerate(results.times):
        k = int(np.argmin(np.abs(data.time - t)))
        np.testing.assert_array_equal(reference.vorticity[:, j], data.vorticity[:, k])
    # every member starts from its group's reference field: same spectrum at the first output
    for i, g in enumerate(results.groups):
        np.testing.assert_allclose(results.column("spectrum_mean", g)[0], reference.spectrum[i, 0], rtol=1e-4,
                                   atol=1e-12)
        assert results.column("rel_error_mean", g)[0] < 1e-6


def test_spectrum_error_is_the_rms_log10_ratio_over_the_first_quarter_of_shells():
    reference = np.geomspace(1.0, 1e-8, 17)  # k = 0..16 of a 32^2 grid
    assert spectrum_error(reference, reference) == 0.0
    assert spectrum_error(10 * reference, reference) == pytest.approx(1.0)
    perturbed = reference.copy()
    perturbed[9:] *= 1e6  # beyond n/4 = 8: ignored
    perturbed[8] *= 100.0  # one of the 8 shells off by two decades
    assert spectrum_error(perturbed, reference) == pytest.approx(np.sqrt(4 / 8))


def test_report_of_a_directory_that_is_not_a_run_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(result.exception, UserError) and "not an ensemble run directory" in str(result.exception)
    proc = subprocess.run([sys.executable, "-c", "from ensemble.cli import main; main()", "report",
                           str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:")
    assert not any(tmp_path.iterdir())  # nothing written


class Interrupt(Exception):
    pass


def test_interrupted_run_is_reported_as_partial(ensemble_setup, tmp_path):
    def stop_after_first_flush(results: int, scheduler) -> None:
        if results == 2:  # flush_every = 2: one flush with 2 of 4 chunks written
            raise Interrupt

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        launch(ensemble_setup, out, TINY, in_process=True, hooks=Hooks(after_result=stop_after_first_flush))
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("partial run: 8 of 16 members finished")
    numbers = json.loads((out / "report" / "summary.json").read_text())
    assert numbers["partial"] is True and len(numbers["groups"]) == 2
    assert "PARTIAL" in (out / "report" / "summary.md").read_text()


def test_run_interrupted_before_any_statistics_says_so(ensemble_setup, tmp_path):
    def stop_at_once(results: int, scheduler) -> None:
        raise Interrupt

    out = tmp_path / "no_stats"
    with pytest.raises(Interrupt):
        launch(ensemble_setup, out, TINY, in_process=True, hooks=Hooks(after_result=stop_at_once))
    report = make_report(out)
    assert report.partial and report.plots == []
    assert "No statistics have been written yet" in report.summary.read_text()
