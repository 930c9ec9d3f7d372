"""``closure study``: one row per applicable method on the same initial conditions, numbers equal to
the runs' Parquet statistics, learned methods without a checkpoint and LES-only methods on the
missing-physics problem skipped with a note, bad input refused.

Setup: the session's tiny 16^2 LES config (``conftest.ensemble_setup``), 8 members per method
(2 per initial condition, so the spread is defined).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.parquet_sink import latest_stats, read_table
from ensemble.study import plan_methods, run_study
from solvers.errors import UserError

METHODS = ["none", "smagorinsky", "dynamic-smagorinsky", "joint-lcdm"]


@pytest.fixture(scope="module")
def study(ensemble_setup, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = root / "study.toml"  # [training].out points where no checkpoint exists
    config.write_text(ensemble_setup.read_text() + f'\n[training]\nout = "{root / "no-checkpoints"}"\n')
    out = root / "out"
    result = CliRunner().invoke(app, ["study", str(config), "--out", str(out), "--members", "8", "--methods",
                                      ",".join(METHODS), "--closure-every", "3", "--sampler", "ancestral",
                                      "--sampler-steps", "4", "--closure-precision", "bfloat16", "--no-progress"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_one_row_per_applicable_method_and_a_note_for_the_rest(study):
    out, output = study
    rows = [line for line in (out / "study.md").read_text().splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["no closure", "Smagorinsky", "dynamic Smagorinsky"]
    assert "Not run: joint L-CDM: no checkpoint" in output
    assert "closure every 3 steps" in (out / "study.md").read_text()  # --closure-every reached the runs' config
    config = json.loads((out / "runs" / "smagorinsky" / "manifest.json").read_text())["config"]
    assert config["coupling"]["closure_every"] == 3
    assert (config["ensemble"]["sampler"], config["ensemble"]["sampler_steps"]) == ("ancestral", 4)
    assert config["ensemble"]["closure_precision"] == "bfloat16"
    assert "score models sampled with ancestral x4, latent models' autoencoders in bfloat16" in (out / "study.md").read_text()
    assert (out / "study_spectra.png").stat().st_size > 10_000 and (out / "study_errors.png").stat().st_size > 10_000


def test_methods_share_initial_conditions_and_the_table_is_the_parquet_numbers(study):
    out, _ = study
    payload = json.loads((out / "study.json").read_text())
    times = payload["score_times"]
    assert len(times) == 4 and payload["problem"] == "les"
    first = {}
    for row in payload["rows"]:
        run = out / "runs" / row["method"]
        members = read_table(run, "members").to_pydict()
        t0 = min(members["time"])
        first[row["method"]] = sorted(e for e, t in zip(members["enstrophy"], members["time"]) if t == t0)
        stats = latest_stats(run).to_pydict()
        for t, value in zip(times, row["rel_errors"]):
            expected = np.mean([e for e, s in zip(stats["rel_error_mean"], stats["time"]) if s == t])
            assert value == pytest.approx(expected, rel=1e-12)
        last = [v for v, s in zip(stats["spread_skill"], stats["time"]) if s == times[-1]]
        assert np.isfinite(last).all() and row["spread_skill"] == pytest.approx(np.mean(last), rel=1e-12)
        assert row["members"] == 8 and row["blowups"] == 0 and row["wall_s"] > 0
    assert first["none"] == first["smagorinsky"] == first["dynamic-smagorinsky"]  # same initial fields
    errors = {r["method"]: r["rel_errors"][-1] for r in payload["rows"]}
    assert errors["none"] != errors["smagorinsky"]  # the closure changed the run


def test_the_study_on_ray_actors_started_once_gives_the_in_process_numbers(ray_session, ensemble_setup, study,
                                                                           tmp_path):
    out, _ = study
    on_ray = run_study(ensemble_setup, tmp_path / "ray", members=8,
                       methods=["none", "smagorinsky"], closure_every=3, in_process=False, progress=False)
    assert "started once before the first method" in on_ray.table.read_text()
    in_process = {row["method"]: row for row in json.loads((out / "study.json").read_text())["rows"]}
    for row in on_ray.rows:
        expected = in_process[row.method]
        np.testing.assert_allclose(row.rel_errors, expected["rel_errors"], rtol=1e-6, err_msg=row.method)
        assert row.crps == pytest.approx(expected["crps"], rel=1e-6)


def test_les_only_methods_do_not_apply_to_missing_physics(tmp_path):
    (tmp_path / "flow.safetensors").write_bytes(b"")
    run, skipped = plan_methods(["none", "smagorinsky", "pcdm", "flow"], "missing_physics", tmp_path)
    assert run == {"none": "none", "flow": str(tmp_path / "flow.safetensors")}
    assert "does not apply" in skipped["smagorinsky"] and "no checkpoint" in skipped["pcdm"]
    run, _ = plan_methods(["smagorinsky"], "les", tmp_path)
    assert run == {"smagorinsky": "smagorinsky"}


def test_bad_input_is_refused_without_touching_outputs(ensemble_setup, study, tmp_path):
    with pytest.raises(UserError, match="--methods: unknown"):
        plan_methods(["none", "magic"], "les", tmp_path)
    out, _ = study
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match="--out"):
        run_study(ensemble_setup, out, members=2, methods=["none"], progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
    with pytest.raises(UserError, match="--data"):
        run_study(ensemble_setup, tmp_path / "new", data=str(Path(tmp_path) / "missing.h5"), progress=False)


def test_quickstart_end_to_end_with_the_shipped_closure(ray_session, tmp_path):
    """``closure quickstart`` with few members: both runs complete, the report and summary exist."""
    from ensemble.quickstart import CHECKPOINT, REFERENCE, run_quickstart, summary_text

    if not (Path(CHECKPOINT).is_file() and Path(REFERENCE).is_file()):
        pytest.skip("shipped checkpoint or reference missing")
    result = run_quickstart(tmp_path / "qs", members=8, progress=False)
    numbers = result.report.numbers
    assert not result.report.partial and numbers["members_done"] == 8 and len(result.report.plots) == 4
    # the learned closure beats no closure on the ensemble-mean error at the last time
    assert numbers["per_time"][-1]["rel_error_mean"] < numbers["baseline"]["rel_error_final"]
    assert str(result.report.out) in summary_text(result)
