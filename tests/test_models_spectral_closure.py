"""A learned closure's Fourier-space form gives the physical form's samples, transformed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.checkpoint import load_checkpoint
from models.closures import GenerativeClosure
from models.normalization import FieldNormalization, Normalization, whitening_gain
from models.sampling_options import SamplerOptions
from solvers.closure import SpectralClosure
from solvers.random import MemberRandom
from tests.test_models_checkpoint import make_checkpoint


@pytest.mark.parametrize("method", ["flow", "joint-lcdm", "pcdm"])
def test_spectral_samples_are_the_transformed_physical_samples(tmp_path, method):
    path, _ = make_checkpoint(tmp_path, method)
    checkpoint = load_checkpoint(path)
    gain = whitening_gain(torch.linspace(1.0, 1e-4, 9).double().numpy(), k_max=6, strength=0.75)
    whitened = Normalization(FieldNormalization(0.1, 2.0, gain), FieldNormalization(-0.2, 3.0, gain))
    closure = GenerativeClosure(dataclasses.replace(checkpoint, normalization=whitened), SamplerOptions())
    assert isinstance(closure, SpectralClosure)
    w = torch.randn(5, 16, 16)
    physical = closure(w, 0.0, MemberRandom(range(5), key=(3,)))
    spectral = closure.spectral(torch.fft.rfft2(w), 0.0, MemberRandom(range(5), key=(3,)))
    assert spectral.dtype == torch.complex64 and spectral.shape == (5, 16, 9)
    torch.testing.assert_close(torch.fft.irfft2(spectral, s=(16, 16)), physical, rtol=1e-4, atol=1e-5 * physical.abs().max().item())


def test_spectral_form_checks_its_input(tmp_path):
    closure = GenerativeClosure(load_checkpoint(make_checkpoint(tmp_path, "flow")[0]), SamplerOptions())
    with pytest.raises(ValueError, match=r"vorticity coefficients \[M, 16, 9\]"):
        closure.spectral(torch.zeros(2, 16, 16, dtype=torch.complex64), 0.0, MemberRandom(range(2)))
    assert closure.spectral(torch.zeros(0, 16, 9, dtype=torch.complex64), 0.0, MemberRandom([])).shape == (0, 16, 9)
