"""Ensemble runs end to end on the session's local Ray: completion, exact bookkeeping under
actor death and driver interruption, batching-independent members, statistics equal to an
offline recomputation from the saved member fields, and a schema every reader accepts.

Setup (``conftest.ensemble_setup``): 16^2 LES with Smagorinsky, 64 members from 4 test
trajectories (4 groups of 16), 40 steps, 5 outputs, chunks of 8 on 2 actors.
"""

from __future__ import annotations

import glob
import time

import h5py
import numpy as np
import pyarrow.dataset as pads
import pytest

from ensemble.crps import crps_fair
from ensemble.manifest import Manifest
from ensemble.parquet_sink import latest_stats, read_table
from ensemble.run import Hooks, launch, plan_chunks, resume
from solvers.dataset import read_dataset

MEMBERS, GROUPS, TIMES = 64, 4, 5


def members_table(out) -> dict[str, np.ndarray]:
    table = read_table(out, "members").sort_by([("member", "ascending"), ("step", "ascending")])
    return {name: table[name].to_numpy() for name in table.column_names}


def assert_each_member_once(out) -> None:
    rows = members_table(out)
    keys = set(zip(rows["member"].tolist(), rows["step"].tolist()))
    assert len(keys) == len(rows["member"]) == MEMBERS * TIMES
    assert set(rows["member"].tolist()) == set(range(MEMBERS))
    manifest = Manifest.load(out)
    assert manifest.complete and manifest.members_with("done") == MEMBERS


@pytest.fixture(scope="module")
def two_actor_run(ray_session, ensemble_setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "two_actors"
    summary = launch(ensemble_setup, out)
    return out, summary


def test_64_members_on_2_actors_complete_once_each(two_actor_run):
    out, summary = two_actor_run
    assert_each_member_once(out)
    assert summary.member_steps == MEMBERS * 40 and summary.restarts == 0
    stats = latest_stats(out).to_pandas()
    assert stats["final"].all() and len(stats) == GROUPS * TIMES
    assert (stats["members"] == MEMBERS // GROUPS).all()
    assert read_table(out, "blowups").num_rows == 0
    assert np.isfinite(stats["crps_vorticity"]).all() and (stats["spread"][stats["time"] > 0] > 0).all()


def test_tables_read_with_pyarrow_pandas_and_duckdb(two_actor_run):
    duckdb = pytest.importorskip("duckdb")
    pd = pytest.importorskip("pandas")
    out, _ = two_actor_run
    for table, rows in (("members", MEMBERS * TIMES), ("stats", None), ("blowups", 0)):
        via_arrow = pads.dataset(out / table, format="parquet").to_table()
        via_pandas = pd.read_parquet(out / table)
        via_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{out / table}/*.parquet')").df()
        assert via_arrow.num_rows == len(via_pandas) == len(via_duckdb)
        assert list(via_pandas.columns) == list(via_duckdb.columns) == via_arrow.column_names
        if rows is not None:
            assert via_arrow.num_rows == rows
    final = duckdb.sql(
        f"SELECT \"group\", time, spectrum_q50[2] AS e1, rank_histogram FROM read_parquet('{out}/stats/*.parquet') "
        "WHERE final ORDER BY \"group\", time"
    ).df()
    assert len(final) == GROUPS * TIMES and (final["e1"] > 0).all()


@pytest.mark.parametrize("members, groups, size", [(64, 4, 8), (64, 4, 24), (10, 3, 4), (5, 1, 16)])
def test_chunks_cover_each_member_once_in_group_order(members, groups, size):
    chunks = plan_chunks(members, groups, size)
    ids = [k for c in chunks for k in c.members]
    assert sorted(ids) == list(range(members)) and all(len(c.members) <= size for c in chunks)
    assert all(c.groups == [k % groups for k in c.members] for c in chunks)
    assert [k % groups for k in ids] == sorted(k % groups for k in ids)  # group-major order
    per_group = members // groups
    assert all(len(set(c.groups)) <= size // per_group + 1 for c in chunks)


def test_one_actor_gives_the_same_members_as_two(ray_session, ensemble_setup, two_actor_run, tmp_path):
    """Same seeds, different actors and batch composition (chunks of 32 holding two groups vs 8)."""
    out2, _ = two_actor_run
    launch(ensemble_setup, tmp_path / "one", {"ensemble.actors": 1, "ensemble.chunk_size": 32})
    a, b = members_table(out2), members_table(tmp_path / "one")
    np.testing.assert_array_equal(a["member"], b["member"])
    for name in ("energy", "enstrophy", "rel_error"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=0, err_msg=name)


def test_runs_on_a_pool_reuse_its_actors_and_give_the_same_members(ray_session, ensemble_setup, two_actor_run,
                                                                    tmp_path):
    """Two runs on one :class:`SolverActorPool`: each runs on the actors started before it (same
    processes), leaves them alive for the next, and a member's result does not depend on what its
    actor computed before (a run with another chunking and closure in between). Closing the pool
    kills them."""
    from ray.exceptions import RayActorError

    from ensemble.cluster import SolverActorPool
    from ensemble.config import load_config

    with SolverActorPool() as pool:
        pool.start(load_config(ensemble_setup))
        handles = [handle for _, _, handle in pool.idle]
        pids = set(ray_session.get([handle.ping.remote() for handle in handles]))
        assert len(pids) == 2
        launch(ensemble_setup, tmp_path / "other", {"ensemble.chunk_size": 16, "ensemble.closure": "none"},
               actor_pool=pool)
        summary = launch(ensemble_setup, tmp_path / "again", actor_pool=pool)
        assert set(ray_session.get([handle.ping.remote() for _, _, handle in pool.idle])) == pids
        assert summary.restarts == 0 and not pool.lent
    assert not pool.idle and all(dies_within(handle, 30.0, ray_session, RayActorError) for handle in handles)
    assert_each_member_once(tmp_path / "again")
    for name, values in members_table(two_actor_run[0]).items():
        np.testing.assert_array_equal(members_table(tmp_path / "again")[name], values, err_msg=name)


def test_an_interrupted_run_kills_the_actors_it_took_from_a_pool(ray_session, ensemble_setup, tmp_path):
    """Chunks may still run on them: they are not handed to the next run."""
    from ray.exceptions import RayActorError

    from ensemble.cluster import SolverActorPool
    from ensemble.config import load_config

    def crash_after_1(results, scheduler):
        if results == 1:
            raise Interrupt

    with SolverActorPool() as pool:
        pool.start(load_config(ensemble_setup))
        handles = [handle for _, _, handle in pool.idle]
        with pytest.raises(Interrupt):
            launch(ensemble_setup, tmp_path / "interrupted", hooks=Hooks(after_result=crash_after_1), actor_pool=pool)
        assert not pool.idle and not pool.lent
        assert all(dies_within(handle, 30.0, ray_session, RayActorError) for handle in handles)


def test_a_pool_replaces_idle_actors_started_with_other_resources(ray_session, ensemble_setup):
    """Idle actors hold their CPUs: a request with other Ray options kills them, then starts its own."""
    from ray.exceptions import RayActorError

    from ensemble.cluster import SolverActorPool
    from ensemble.config import load_config

    with SolverActorPool() as pool:
        pool.start(load_config(ensemble_setup, {"ensemble.actors": 2, "ensemble.cpus_per_actor": 1}))
        old = [handle for _, _, handle in pool.idle]
        new = pool.take("solver-0", {"num_cpus": 0.5, "num_gpus": 0})
        assert all(dies_within(handle, 30.0, ray_session, RayActorError) for handle in old)
        assert ray_session.get(new.ping.remote(), timeout=60) > 0 and not pool.idle
        pool.give_back([new])
        assert [entry[2] for entry in pool.idle] == [new]


def dies_within(handle, seconds: float, ray, actor_error: type) -> bool:
    """Whether the actor stops answering within ``seconds``: ``ray.kill`` returns before the kill
    lands, so a ping sent right after it may still be answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(handle.ping.remote(), timeout=seconds)
        except actor_error:
            return True
        time.sleep(0.1)
    return False


def test_killed_actor_still_yields_each_member_once(ray_session, ensemble_setup, two_actor_run, tmp_path):
    killed = []

    def kill_solver_1(results, scheduler):
        if results == 1:
            ray_session.kill(ray_session.get_actor("solver-1"))
            killed.append(True)

    out = tmp_path / "killed"
    summary = launch(ensemble_setup, out, hooks=Hooks(after_result=kill_solver_1))
    assert killed and summary.restarts >= 1
    assert_each_member_once(out)
    assert any(c.errors for c in Manifest.load(out).chunks)  # the failure is recorded, not hidden
    ref = members_table(two_actor_run[0])
    got = members_table(out)
    np.testing.assert_array_equal(got["energy"], ref["energy"])


class Interrupt(Exception):
    pass


def test_resume_after_interrupted_driver(ray_session, ensemble_setup, two_actor_run, tmp_path):
    def crash_after_3(results, scheduler):
        if results == 3:
            raise Interrupt

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        launch(ensemble_setup, out, hooks=Hooks(after_result=crash_after_3))
    manifest = Manifest.load(out)
    assert not manifest.complete and manifest.members_with("done") == 16  # flushed after 2 chunks of 8
    summary = resume(out)
    assert summary.member_steps == (MEMBERS - 16) * 40  # finished chunks are not redone
    assert_each_member_once(out)
    np.testing.assert_array_equal(members_table(out)["energy"], members_table(two_actor_run[0])["energy"])
    got, ref = latest_stats(out).to_pandas(), latest_stats(two_actor_run[0]).to_pandas()
    for name in ("spread", "rmse", "energy_mean", "crps_vorticity", "crps_energy", "spread_skill"):
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, err_msg=name)
    assert got["rank_histogram"].map(list).tolist() == ref["rank_histogram"].map(list).tolist()


def test_statistics_equal_offline_recomputation_from_saved_fields(ensemble_setup, two_actor_run, tmp_path):
    """In-process run with field snapshots, one chunk of all groups; every statistic recomputed from the fields."""
    out = tmp_path / "snap"
    launch(ensemble_setup, out, {"ensemble.snapshots": True, "ensemble.chunk_size": MEMBERS}, in_process=True)
    np.testing.assert_allclose(members_table(out)["energy"], members_table(two_actor_run[0])["energy"], rtol=1e-6)
    fields = {"vorticity": [], "member": []}
    for path in sorted(glob.glob(str(out / "fields" / "*.h5"))):
        with h5py.File(path) as f:
            assert not f["blown_up"][:].any()
            fields["vorticity"].append(f["vorticity"][:].astype(np.float64))
            fields["member"].append(f["member"][:])
    w = np.concatenate(fields["vorticity"])  # [64, T, n, n]
    member = np.concatenate(fields["member"])
    ref_all = read_dataset(str(ensemble_setup.parent / "reference.h5"), split="test").vorticity.astype(np.float64)
    stats = latest_stats(out).to_pandas().sort_values(["group", "time"])
    for g in range(GROUPS):
        x = w[member % GROUPS == g]
        ref = ref_all[g]
        rows = stats[stats["group"] == g]
        mean, var = x.mean(0), x.var(0, ddof=1)
        rmse = np.sqrt(((mean - ref) ** 2).mean(axis=(-2, -1)))
        np.testing.assert_allclose(rows["spread"], np.sqrt(var.mean(axis=(-2, -1))), rtol=1e-9)
        np.testing.assert_allclose(rows["rmse"], rmse, rtol=1e-9)
        np.testing.assert_allclose(rows["enstrophy_mean"], (0.5 * (x**2).mean(axis=(-2, -1))).mean(0), rtol=1e-6)
        i, j = np.arange(4)[:, None] * 4, np.arange(4)[None, :] * 4
        probes, ref_probes = x[:, :, i, j].reshape(len(x), TIMES, -1), ref[:, i, j].reshape(TIMES, -1)
        exact = crps_fair(probes[:, 1:], ref_probes[1:]).mean(-1)
        assert np.all(np.abs(rows["crps_vorticity"].to_numpy()[1:] - exact) <= rows["crps_vorticity_bound"].to_numpy()[1:] + 1e-12)
        ranks = (probes < ref_probes[None]).sum(0)  # [T, P]
        expected = [np.bincount(r * 10 // (len(x) + 1), minlength=10).tolist() for r in ranks]
        assert rows["rank_histogram"].map(list).tolist() == expected
        counts = np.stack([np.histogram(x[:, t], bins=np.linspace(-4, 4, 129))[0] for t in range(TIMES)])
        pdf = np.stack(rows["vorticity_pdf"].map(np.asarray).tolist())
        np.testing.assert_allclose(pdf * (8 / 128) * x[:, 0].size, counts, atol=1e-6)


def test_learned_closure_shared_actor_equals_per_actor_copies(ray_session, ensemble_setup, tmp_path):
    """A (tiny, untrained) generative closure draws from each member's own stream, so batching
    requests of both solver actors in the closure actor changes nothing but rounding: oneDNN
    blocks a batch by its size, which can move a convolution's last bit (a row sent to the
    wrong member or drawn from another stream would differ at the percent level)."""
    pytest.importorskip("models.checkpoint")
    import torch

    from models.builders import build_model
    from models.checkpoint import Checkpoint, save_checkpoint
    from models.config import ModelSection, TrainingSection
    from models.normalization import FieldNormalization, Normalization

    torch.manual_seed(0)
    small = ModelSection(physical_width=6, physical_modes=3, physical_layers=2, latent_width=6, latent_layers=2, ae_channels=4)
    ckpt = Checkpoint(
        model=build_model("joint-lcdm", small), method="joint-lcdm", model_config=small,
        training_config=TrainingSection(), grid_size=16, problem="les",
        normalization=Normalization(FieldNormalization(0.0, 1.0), FieldNormalization(0.0, 0.01)),
    )
    path = save_checkpoint(ckpt, tmp_path / "tiny.safetensors")
    energies = {}
    for mode in ("per-actor", "shared"):
        overrides = {"ensemble.members": 16, "ensemble.closure": str(path), "ensemble.closure_mode": mode}
        summary = launch(ensemble_setup, tmp_path / mode, overrides)
        energies[mode] = members_table(tmp_path / mode)["energy"]
        assert bool(summary.closure_batches) == (mode == "shared")
    np.testing.assert_allclose(energies["shared"], energies["per-actor"], rtol=1e-5, atol=0)
    assert np.isfinite(energies["shared"]).all()

    # the closure actor batches concurrent requests of two solver actors into one evaluation
    from ensemble.actors import ClosureActor
    from ensemble.closures import resolve_closure
    from solvers.random import MemberRandom

    source = resolve_closure(str(path), 16, "les")
    actor = ClosureActor.remote(source, 16, "float32", "cpu", wait_s=30.0)
    ray_session.get([actor.set_active.remote("a", True), actor.set_active.remote("b", True)])
    w = np.random.default_rng(0).normal(size=(5, 16, 16)).astype(np.float32)
    key = (1, 10, 0)
    parts = [actor.sample.remote("a", w[:2], 0.5, (11, 12), key, 0), actor.sample.remote("b", w[2:], 0.5, (13, 14, 15), key, 0)]
    together = np.concatenate(ray_session.get(parts))
    assert ray_session.get(actor.batch_sizes.remote()) == [5]
    alone = source.payload(torch.from_numpy(w), 0.5, MemberRandom([11, 12, 13, 14, 15], key)).numpy()
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-9)  # other process, other thread count: last bits
    ray_session.kill(actor)


def test_blown_up_members_are_recorded_and_kept_out_of_statistics(ensemble_setup, tmp_path):
    """Odd members start from a field 1000x too strong for dt: they go non-finite and must be
    listed (member, step, time), keep their rows before the blow-up, and vanish from every statistic."""
    import torch

    from solvers.diagnostics import energy
    from solvers.grid import SpectralGrid
    from solvers.initial import gaussian_random_field
    from solvers.random import MemberRandom

    grid = SpectralGrid(16, dtype=torch.float64)
    fields = gaussian_random_field(grid, MemberRandom([1, 2], key=(0,)))
    fields[1] *= 1000
    np.save(tmp_path / "w.npy", fields.numpy())
    out = tmp_path / "blow"
    summary = launch(ensemble_setup, out, {"ensemble.members": 8, "ensemble.init": str(tmp_path / "w.npy"),
                                           "ensemble.closure": "none"}, in_process=True)
    blown = read_table(out, "blowups").to_pandas()
    assert sorted(blown["member"]) == [1, 3, 5, 7] and (blown["time"] > 0).all() and (blown["step"] > 0).all()
    assert sorted(b["member"] for b in summary.manifest.blowups) == [1, 3, 5, 7]
    rows = members_table(out)
    assert set(rows["member"].tolist()) == set(range(8))
    assert all((rows["member"] == k).sum() == TIMES for k in (0, 2, 4, 6))
    assert all((rows["member"] == k).sum() < TIMES for k in (1, 3, 5, 7))
    stats = latest_stats(out).to_pandas()
    assert (stats["members"] == 4).all() and np.isfinite(stats["energy_mean"]).all()
    assert stats["energy_mean"].iloc[0] == pytest.approx(float(energy(fields[0], grid)), rel=1e-5)


def test_failed_chunk_is_recorded_then_resumed(ensemble_setup, tmp_path, monkeypatch):
    """A chunk failing every attempt is reported (manifest, status), never silently dropped; resume redoes it."""
    from ensemble.worker import SolverWorker
    from ensemble.status import status_text

    original = SolverWorker.run_chunk

    def flaky(self, chunk, w0, reference):
        if chunk.id == 1:
            raise RuntimeError("injected failure")
        return original(self, chunk, w0, reference)

    monkeypatch.setattr(SolverWorker, "run_chunk", flaky)
    out = tmp_path / "failing"
    overrides = {"ensemble.members": 16, "ensemble.max_attempts": 2}
    summary = launch(ensemble_setup, out, overrides, in_process=True)
    record = summary.manifest.chunks[1]
    assert record.status == "failed" and record.attempts == 2 and "injected failure" in record.errors[-1]
    assert not summary.manifest.complete and summary.manifest.members_with("failed") == len(record.members)
    assert "1 failed attempts" not in status_text(out) and "chunk 1 (failed, 2 failed attempts)" in status_text(out)
    assert not set(record.members) & set(members_table(out)["member"].tolist())
    monkeypatch.setattr(SolverWorker, "run_chunk", original)
    resume(out, in_process=True)
    manifest = Manifest.load(out)
    assert manifest.complete and set(members_table(out)["member"].tolist()) == set(range(16))
