"""Training on a tiny DNS dataset (32^2 -> 16^2): loss decreases, resume is exact, seeds reproduce,
closures do not depend on batching, and the CLI reports bad input on one line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from ensemble.config import validate_config
from models.closures import load_closure
from models.latent_generative import LatentGenerative
from models.training import train
from solvers.dataset import generate_dataset
from solvers.errors import UserError
from solvers.random import MemberRandom

TINY_MODEL = {"physical_width": 8, "physical_modes": 4, "physical_layers": 2, "latent_width": 8, "latent_layers": 2, "ae_channels": 8}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    cfg = validate_config(
        {
            "data": {"n_fine": 32, "n_coarse": 16, "trajectories": 3, "n_train": 2, "t_start": 0.0,
                     "t_end": 0.1, "snapshot_interval": 0.01, "batch_size": 3, "path": str(path)},
            "solver": {"device": "cpu"},
        },
        "tiny",
    )
    generate_dataset(cfg, progress=False)
    return path


def config(**training):
    base = {"epochs": 4, "batch_size": 8, "checkpoint_every": 2, "pretrain_epochs": 3, "lr": 3e-3}
    return validate_config({"model": TINY_MODEL, "training": base | training}, "test")


def log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["joint-lcdm", "pcdm", "flow"])
def test_loss_goes_down(dataset, tmp_path, method):
    epochs = 20
    train(config(epochs=epochs, batch_size=4), method, data_path=dataset, out_dir=tmp_path, progress=False)
    losses = [r["loss"] for r in log(tmp_path / f"{method}.log.jsonl")]
    assert len(losses) == epochs
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


def test_conventional_lcdm_runs_two_phases(dataset, tmp_path):
    train(config(epochs=3, pretrain_epochs=15, batch_size=4), "lcdm", data_path=dataset, out_dir=tmp_path, progress=False)
    records = log(tmp_path / "lcdm.log.jsonl")
    assert [r["phase"] for r in records] == ["autoencoder"] * 15 + ["score"] * 3
    assert records[14]["loss"] < 0.8 * records[0]["loss"], [r["loss"] for r in records]
    closure = load_closure(tmp_path / "lcdm.safetensors")
    assert closure.method == "lcdm" and closure.grid_size == 16
    latents = closure.model.closure_latent(torch.zeros(1, 1, 16, 16))
    assert latents.shape == (1, 1, 4, 4)


def test_resume_continues_exactly(dataset, tmp_path):
    train(config(epochs=4), "joint-lcdm", data_path=dataset, out_dir=tmp_path / "a", progress=False)
    train(config(epochs=2), "joint-lcdm", data_path=dataset, out_dir=tmp_path / "b", progress=False)
    train(config(epochs=4), "joint-lcdm", data_path=dataset, out_dir=tmp_path / "b", resume=True, progress=False)
    a, b = log(tmp_path / "a/joint-lcdm.log.jsonl"), log(tmp_path / "b/joint-lcdm.log.jsonl")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5)


def test_overwrite_starts_a_new_log_and_detached_latent_trains(dataset, tmp_path):
    train(config(epochs=2), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    train(config(epochs=3, detach_closure_latent=True), "flow", data_path=dataset, out_dir=tmp_path,
          overwrite=True, progress=False)
    assert [r["epoch"] for r in log(tmp_path / "flow.log.jsonl")] == [1, 2, 3]
    assert load_closure(tmp_path / "flow.safetensors").checkpoint.training_config.detach_closure_latent


def test_same_seed_same_model_and_samples(dataset, tmp_path):
    for name in ("a", "b"):
        train(config(epochs=1), "flow", data_path=dataset, out_dir=tmp_path / name, seed=3, progress=False)
    wa, wb = (load_file(str(tmp_path / name / "flow.safetensors")) for name in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    w = torch.randn(4, 16, 16)
    sa = load_closure(tmp_path / "a/flow.safetensors")(w, 0.0, MemberRandom([1, 2, 3, 4]))
    sb = load_closure(tmp_path / "b/flow.safetensors", flow_steps=2)(w, 0.0, MemberRandom([1, 2, 3, 4]))
    assert torch.equal(sa, sb)
    assert not torch.equal(sa, load_closure(tmp_path / "a/flow.safetensors")(w, 0.0, MemberRandom([9, 2, 3, 4])))


@pytest.mark.parametrize(("method", "options"), [("pcdm", {}), ("joint-lcdm", {"sampler": "heun", "steps": 3}), ("flow", {"flow_steps": 2})])
def test_member_sample_is_the_same_alone_and_in_a_batch(dataset, tmp_path, method, options):
    train(config(epochs=1), method, data_path=dataset, out_dir=tmp_path, progress=False)
    closure = load_closure(tmp_path / f"{method}.safetensors", **options)
    w = torch.randn(6, 16, 16, dtype=torch.float64)
    seeds = [11, 12, 13, 14, 15, 16]
    batch = closure(w, 0.0, MemberRandom(seeds, key=(1, 5)))
    assert batch.shape == w.shape and batch.dtype == torch.float64
    for m in (0, 4):
        alone = closure(w[m : m + 1], 0.0, MemberRandom([seeds[m]], key=(1, 5)))
        # Same noise; only float32 round-off of batched kernels may differ.
        assert torch.allclose(alone[0], batch[m], rtol=1e-4, atol=1e-5 * float(batch.abs().max()))
    assert not torch.allclose(batch[0], batch[1])


def test_cli_train_evaluate_and_bad_input(dataset, tmp_path, monkeypatch, capsys):
    from ensemble.cli import main

    cfg_file = tmp_path / "tiny.toml"
    cfg_file.write_text(
        "[model]\n" + "".join(f"{k} = {v}\n" for k, v in TINY_MODEL.items()) + "[training]\nepochs = 2\nbatch_size = 8\n"
    )

    def run(*args):
        monkeypatch.setattr("sys.argv", ["closure", *map(str, args)])
        with pytest.raises(SystemExit) as exc:
            main()
        return exc.value.code, capsys.readouterr()

    out = tmp_path / "out"
    code, _ = run("train", cfg_file, "--method", "joint-lcdm", "--data", dataset, "--out", out, "--no-progress")
    assert code in (0, None) and (out / "joint-lcdm.safetensors").is_file()
    code, captured = run("evaluate", out / "joint-lcdm.safetensors", "--data", dataset, "--members", 4, "--samples", 3)
    assert code in (0, None) and "rel. err. mean" in captured.out
    result = json.loads((out / "joint-lcdm.apriori.json").read_text())
    assert result["members"] == 4 and result["samples"] == 3 and result["relative_error_mean"] > 0
    before = (out / "joint-lcdm.safetensors").read_bytes()
    for args, message in [
        (("train", cfg_file, "--method", "ddpm", "--data", dataset, "--out", out), "--method: unknown method 'ddpm'"),
        (("train", cfg_file, "--method", "joint-lcdm", "--data", dataset, "--out", out), "exists; pass --resume"),
        (("train", cfg_file, "--method", "pcdm", "--data", tmp_path / "none.h5", "--out", out), "no such dataset file"),
        (("evaluate", out / "none.safetensors", "--data", dataset), "no such checkpoint"),
    ]:
        code, captured = run(*args)
        assert code == 2 and captured.err.startswith("error: ") and message in captured.err
        assert captured.err.count("\n") == 1
    assert (out / "joint-lcdm.safetensors").read_bytes() == before


@pytest.mark.parametrize("detach", [False, True])
def test_detached_closure_latent_keeps_the_generative_loss_out_of_the_closure_encoder(detach):
    torch.manual_seed(0)
    model = LatentGenerative(objective="flow", ae_channels=4, width=6, layers=1, weights=(0.0, 0.0, 0.0),
                             detach_closure_latent=detach)
    w, c = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    loss, _ = model.loss(w, c, torch.Generator().manual_seed(0))  # the generative loss alone
    loss.backward()
    grad = sum(float(p.grad.abs().sum()) for p in model.closure_ae.encoder.parameters() if p.grad is not None)
    assert (grad == 0) == detach
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vorticity_ae.encoder.parameters())


def test_whitened_training_stores_its_gains_and_the_closure_undoes_them(dataset, tmp_path):
    """``[model] whiten_up_to``: the checkpoint carries the per-shell gains fitted on the training
    split, and the loaded closure returns physical units (its normalisation inverts exactly)."""
    cfg = validate_config({"model": TINY_MODEL | {"whiten_up_to": 4, "whiten_strength": 0.75, "latent_channels": 2},
                           "training": {"epochs": 2, "batch_size": 8}}, "test")
    train(cfg, "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    closure = load_closure(tmp_path / "flow.safetensors")
    norm = closure.normalization
    assert len(norm.closure.shell_gain) == 9 and len(norm.vorticity.shell_gain) == 9  # shells 0..16/2
    assert max(norm.vorticity.shell_gain) > 2 and norm.vorticity.shell_gain[4] == norm.vorticity.shell_gain[8]
    field = torch.randn(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(norm.closure.denormalize(norm.closure.normalize(field)), field, atol=1e-10)
    sample = closure(torch.randn(3, 16, 16), 0.0, MemberRandom([1, 2, 3]))
    assert sample.shape == (3, 16, 16) and torch.isfinite(sample).all()


def test_aposteriori_finetuning_lowers_the_rollout_loss_and_leaves_the_source(dataset, tmp_path):
    """``closure finetune``: the coupled-rollout loss on a fixed batch and noise draw falls, the
    source checkpoint is untouched, and the new one records its settings and loads."""
    from models.aposteriori import FinetuneSettings, _coupled_rollout, finetune, rollout_loss
    from models.checkpoint import load_checkpoint
    from solvers.dataset import read_dataset


    train(config(epochs=2), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    source = tmp_path / "flow.safetensors"
    before_bytes = source.read_bytes()
    settings = FinetuneSettings(iterations=100, intervals=5, batch=8, lr=1e-2, closure_every=5)
    data = read_dataset(dataset, split="train")
    trajectories = torch.from_numpy(data.vorticity)

    def fixed_batch_loss(path):
        rollout = _coupled_rollout(load_checkpoint(path), config(), data, settings)
        with torch.no_grad():
            pred = rollout(trajectories[:, 0], 5, torch.Generator().manual_seed(123))
        return float(rollout_loss(pred, trajectories[:, 1:6], trajectories[:, 0], rollout.vorticity_norm))

    out = finetune(source, config(), dataset, tmp_path / "tuned.safetensors", settings, progress=False)
    # the tiny DNS's own noise bounds what any closure can predict here: 0.306 -> 0.297 measured
    assert fixed_batch_loss(out) < 0.98 * fixed_batch_loss(source)
    assert source.read_bytes() == before_bytes
    assert len(log(tmp_path / "tuned.log.jsonl")) == 100
    tuned = load_checkpoint(out)
    assert tuned.metrics["aposteriori_iterations"] == 100 and tuned.metrics["aposteriori_closure_every"] == 5
    assert load_closure(out).method == "flow"


def test_finetune_refuses_pcdm_an_existing_out_and_a_refresh_that_does_not_divide(dataset, tmp_path):
    from models.aposteriori import FinetuneSettings, finetune

    train(config(epochs=1), "pcdm", data_path=dataset, out_dir=tmp_path, progress=False)
    train(config(epochs=1), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    settings = FinetuneSettings(iterations=1, intervals=1, batch=2)
    with pytest.raises(UserError, match="needs a latent closure"):
        finetune(tmp_path / "pcdm.safetensors", config(), dataset, tmp_path / "x.safetensors", settings, progress=False)
    with pytest.raises(UserError, match="exists"):
        finetune(tmp_path / "flow.safetensors", config(), dataset, tmp_path / "pcdm.safetensors", settings, progress=False)
    with pytest.raises(UserError, match="is the checkpoint being fine-tuned"):
        finetune(tmp_path / "flow.safetensors", config(), dataset, tmp_path / "flow.safetensors", settings,
                 overwrite=True, progress=False)
    with pytest.raises(UserError, match="must divide"):
        finetune(tmp_path / "flow.safetensors", config(), dataset, tmp_path / "x.safetensors",
                 FinetuneSettings(iterations=1, intervals=1, batch=2, closure_every=3), progress=False)


def test_spectrum_loss_is_the_mean_squared_log_ratio_of_shell_energies():
    from models.aposteriori import spectrum_loss
    from solvers.grid import SpectralGrid
    from solvers.initial import gaussian_random_field

    grid = SpectralGrid(16, dtype=torch.float64)
    w = gaussian_random_field(grid, MemberRandom([1, 2, 3])).reshape(1, 3, 16, 16)
    assert spectrum_loss(w, w, grid).item() == 0.0
    assert spectrum_loss(2 * w, w, grid).item() == pytest.approx(math.log(4.0) ** 2, rel=1e-12)


def _samples_from_fixed_noise(path, steps=None):
    """Latent end points of a checkpoint's flow sampler for fixed conditions and noise: ``[6, L, m, m]``."""
    from models.checkpoint import load_checkpoint
    from models.distillation import student_samples, teacher_samples

    ckpt = load_checkpoint(path)
    generator = torch.Generator().manual_seed(7)
    condition = torch.randn(6, ckpt.model_config.latent_channels, 4, 4, generator=generator)
    z = torch.randn(condition.shape, generator=generator)
    with torch.no_grad():
        return student_samples(ckpt.model, condition, z) if steps is None else teacher_samples(ckpt.model, condition, z, steps)


def test_distilled_student_draws_the_teachers_samples_in_one_step(dataset, tmp_path):
    """``closure distill``: from the same noise, the one-step student lands far nearer the teacher's
    4-step end point than the teacher's own single step does; the source stays untouched, the
    student samples with one step and refuses more.

    A tiny model trained briefly has nearly straight paths (its 1- and 4-step samples differ by
    1e-5), so the teacher's target branch is scaled by 3 to curve them: 1 against 4 steps then
    differ by 0.06, and the student measured 0.001.
    """
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.config import DistillSettings
    from models.distillation import distill, relative_distance

    train(config(epochs=2), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    curved = load_checkpoint(tmp_path / "flow.safetensors")
    net = curved.model.net
    with torch.no_grad():
        for layer in [*net.target_spectral, *net.target_pointwise, net.project[2]]:
            layer.weight.mul_(3.0)
    source = save_checkpoint(curved, tmp_path / "curved.safetensors")
    before = source.read_bytes()
    out = distill(source, dataset, tmp_path / "student.safetensors",
                  DistillSettings(teacher_steps=4, epochs=40, batch=8, lr=3e-3), progress=False)
    teacher = _samples_from_fixed_noise(source, steps=4)
    untrained = relative_distance(_samples_from_fixed_noise(source, steps=1), teacher)
    distilled = relative_distance(_samples_from_fixed_noise(out), teacher)
    assert untrained > 0.01 and distilled < 0.1 * untrained
    assert source.read_bytes() == before
    assert len(log(tmp_path / "student.log.jsonl")) == 40
    student = load_checkpoint(out)
    assert student.model_config.flow_steps == 1 and student.metrics["distilled_teacher_steps"] == 4
    closure = load_closure(out)
    assert closure.options.flow_steps == 1 and closure.teacher_steps == 4
    assert closure.options.describe("flow", closure.teacher_steps) == "flow Euler x1, distilled from x4"
    with pytest.raises(UserError, match="samples with 1 flow step"):
        load_closure(out, flow_steps=2)


def test_distill_refuses_pcdm_a_student_an_existing_or_same_out_and_a_one_step_teacher(dataset, tmp_path):
    from models.config import DistillSettings
    from models.distillation import distill

    train(config(epochs=1), "pcdm", data_path=dataset, out_dir=tmp_path, progress=False)
    train(config(epochs=1), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    flow = tmp_path / "flow.safetensors"
    quick = DistillSettings(epochs=1, batch=8)
    student = distill(flow, dataset, tmp_path / "student.safetensors", quick, progress=False)
    for source, out, settings, message in [
        (tmp_path / "pcdm.safetensors", tmp_path / "x.safetensors", quick, "needs a latent flow-matching closure"),
        (student, tmp_path / "x.safetensors", quick, "already a one-step student"),
        (flow, tmp_path / "pcdm.safetensors", quick, "exists; pass --overwrite"),
        (flow, tmp_path / "x.safetensors", DistillSettings(teacher_steps=1), "changes nothing"),
        (flow, tmp_path / "x.safetensors", DistillSettings(batch=10_000), "training fields"),
    ]:
        with pytest.raises(UserError, match=message):
            distill(source, dataset, out, settings, progress=False)
    with pytest.raises(UserError, match="is the checkpoint being distilled"):
        distill(flow, dataset, flow, quick, overwrite=True, progress=False)
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_distill_writes_a_student_and_reports_bad_input_on_one_line(dataset, tmp_path, monkeypatch, capsys):
    from tests.cli_runner import run_cli

    train(config(epochs=1), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    code, stdout, _ = run_cli(capsys, monkeypatch, "distill", tmp_path / "flow.safetensors", "--data", dataset,
                              "--out", tmp_path / "s.safetensors", "--epochs", 2, "--batch", 8, "--no-progress")
    assert code == 0 and "wrote" in stdout and (tmp_path / "s.safetensors").is_file()
    code, _, stderr = run_cli(capsys, monkeypatch, "distill", tmp_path / "s.safetensors", "--data", dataset,
                              "--out", tmp_path / "t.safetensors", "--no-progress")
    assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1 and "already a one-step" in stderr


def test_distillation_with_the_same_seed_gives_the_same_student(dataset, tmp_path):
    from models.checkpoint import load_checkpoint
    from models.config import DistillSettings
    from models.distillation import distill

    train(config(epochs=1), "flow", data_path=dataset, out_dir=tmp_path, progress=False)
    students = [distill(tmp_path / "flow.safetensors", dataset, tmp_path / f"s{seed}-{i}.safetensors",
                        DistillSettings(epochs=2, batch=8, seed=seed), progress=False)
                for i, seed in enumerate((0, 0, 1))]
    weights = [load_checkpoint(path).model.net.state_dict() for path in students]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
