"""Checkpoints: safetensors round trip, and refusal of wrong grids, methods, configs and edited files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.builders import build_model
from models.checkpoint import Checkpoint, _digest, load_checkpoint, save_checkpoint
from models.closures import load_closure
from models.config import ModelSection, TrainingSection
from models.normalization import FieldNormalization, Normalization
from solvers.errors import UserError
from solvers.random import MemberRandom

SMALL = ModelSection(physical_width=6, physical_modes=3, physical_layers=2, latent_width=6, latent_layers=2, ae_channels=4)


def make_checkpoint(tmp_path, method="joint-lcdm", n=16):
    torch.manual_seed(0)
    model = build_model(method, SMALL)
    ckpt = Checkpoint(
        model=model,
        method=method,
        model_config=SMALL,
        training_config=TrainingSection(),
        normalization=Normalization(FieldNormalization(0.1, 2.0), FieldNormalization(-0.2, 3.0)),
        grid_size=n,
        dataset_fingerprint="abc",
        metrics={"loss": 1.5},
        epoch=7,
    )
    return save_checkpoint(ckpt, tmp_path / f"{method}.safetensors"), model


def rewrite(path, edit_metadata, keep_digest=True):
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    edit_metadata(meta)
    if not keep_digest:
        meta.pop("digest")
        meta["digest"] = _digest(meta, tensors)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("method", ["pcdm", "lcdm", "joint-lcdm", "flow"])
def test_round_trip_restores_weights_and_metadata(tmp_path, method):
    path, model = make_checkpoint(tmp_path, method)
    loaded = load_checkpoint(path, grid_size=16, method=method, model_config=SMALL)
    assert loaded.method == method and loaded.epoch == 7 and loaded.metrics == {"loss": 1.5}
    assert loaded.normalization.closure == FieldNormalization(-0.2, 3.0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_loaded_closure_samples_do_not_depend_on_loading_twice(tmp_path):
    path, _ = make_checkpoint(tmp_path, "joint-lcdm")
    w = torch.randn(3, 16, 16)
    a = load_closure(path)(w, 0.0, MemberRandom([5, 6, 7]))
    b = load_closure(path, steps=10)(w, 0.0, MemberRandom([5, 6, 7]))
    assert torch.equal(a, b)


def test_refuses_wrong_grid_and_method(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    with pytest.raises(UserError, match="16\\^2 grid, expected 32\\^2"):
        load_checkpoint(path, grid_size=32)
    with pytest.raises(UserError, match="method is 'joint-lcdm', expected 'pcdm'"):
        load_closure(path, method="pcdm")


def test_refuses_a_different_model_config(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    other = SMALL.model_copy(update={"latent_width": 12})
    with pytest.raises(UserError, match="latent_width"):
        load_checkpoint(path, model_config=other)


def test_refuses_tampered_metadata(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    rewrite(path, lambda m: m.update(normalization=json.dumps({"vorticity": {"mean": 0, "std": 1}, "closure": {"mean": 0, "std": 1}})))
    with pytest.raises(UserError, match="digest mismatch"):
        load_checkpoint(path)


def test_refuses_metadata_that_does_not_match_the_weights(tmp_path):
    """Even with a recomputed digest, a config that does not fit the tensors is refused."""
    path, _ = make_checkpoint(tmp_path)
    rewrite(path, lambda m: m.update(model_config=SMALL.model_copy(update={"latent_width": 12}).model_dump_json()), keep_digest=False)
    with pytest.raises(UserError, match="weights do not match"):
        load_checkpoint(path)


def test_refuses_files_that_are_not_checkpoints(tmp_path):
    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a safetensors checkpoint"):
        load_checkpoint(bogus)
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(plain))
    with pytest.raises(UserError, match="not a closure checkpoint"):
        load_checkpoint(plain)


def test_unknown_sampler_option_is_a_user_error(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    with pytest.raises(UserError, match="unknown sampler option"):
        load_closure(path, stepz=3)
    with pytest.raises(UserError, match="sampler"):
        load_closure(path, sampler="ddim")


def test_sampler_defaults_may_differ_from_the_requested_config(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    loaded = load_checkpoint(path, model_config=SMALL.model_copy(update={"flow_steps": 2, "t_max": 0.2}))
    assert loaded.model_config.flow_steps == SMALL.flow_steps
