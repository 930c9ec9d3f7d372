"""Sampling precision: bfloat16 autoencoder halves follow float32 closely, never enter a checkpoint,
track weight updates, refuse autograd, and are ignored by P-CDM."""

from __future__ import annotations

import pytest
import torch

from models.closures import load_closure
from models.precision import CastStage
from models.sampling_options import SamplerOptions
from solvers.errors import UserError
from solvers.random import MemberRandom
from tests.test_models_checkpoint import make_checkpoint


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["flow", "joint-lcdm"])
def test_bfloat16_samples_follow_float32_for_the_same_noise(tmp_path, method):
    path, _ = make_checkpoint(tmp_path, method)
    w = torch.randn(6, 16, 16)
    full = load_closure(path)(w, 0.0, MemberRandom(range(6)))
    low_closure = load_closure(path, precision="bfloat16")
    low = low_closure(w, 0.0, MemberRandom(range(6)))
    assert low.dtype == torch.float32 and low.shape == full.shape
    assert not torch.equal(low, full)  # the bfloat16 path ran
    assert relative_distance(low, full) < 0.03  # bfloat16 keeps ~3 significant digits per operation
    assert low_closure.options.describe(method).endswith(", bfloat16 autoencoders")


def test_cast_copies_stay_out_of_the_checkpoint_and_follow_weight_updates(tmp_path):
    path, _ = make_checkpoint(tmp_path, "flow")
    closure = load_closure(path, precision="bfloat16")
    keys = set(closure.model.state_dict())
    w = torch.randn(4, 16, 16)
    closure(w, 0.0, MemberRandom(range(4)))
    assert set(closure.model.state_dict()) == keys
    with torch.inference_mode():
        encoder, _ = closure.model.sampling_halves("bfloat16")
    assert isinstance(encoder, CastStage) and encoder.stage is not closure.model.vorticity_ae.encoder
    with torch.no_grad():
        for p in closure.model.closure_ae.decoder.parameters():
            p.mul_(2.0)
    updated = closure(w, 0.0, MemberRandom(range(4)))
    reference = load_closure(path)
    with torch.no_grad():
        for p in reference.model.closure_ae.decoder.parameters():
            p.mul_(2.0)
    assert relative_distance(updated, reference(w, 0.0, MemberRandom(range(4)))) < 0.03


def test_bfloat16_refuses_autograd(tmp_path):
    path, _ = make_checkpoint(tmp_path, "flow")
    model = load_closure(path).model
    with pytest.raises(ValueError, match="without gradients"):
        model.draw(torch.randn(2, 1, 16, 16), torch.randn_like, SamplerOptions(precision="bfloat16"))


def test_precision_is_checked_and_pcdm_samples_in_float32(tmp_path):
    path, _ = make_checkpoint(tmp_path, "pcdm")
    with pytest.raises(UserError, match="unknown precision 'half'"):
        load_closure(path, precision="half")
    closure = load_closure(path, precision="bfloat16")
    assert closure.options.precision == "float32"
