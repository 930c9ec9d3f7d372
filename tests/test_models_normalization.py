"""Field normalisation: the spectral whitening flattens a known spectrum and inverts exactly."""

from __future__ import annotations

import numpy as np
import torch

from models.normalization import FieldNormalization, Normalization, shell_index, shell_variance


def fields_with_spectrum(decay: float, count: int = 400, n: int = 32, seed: int = 0) -> np.ndarray:
    """Random real fields ``[count, n, n]`` whose per-mode variance is ``exp(-decay |k|)``."""
    gen = torch.Generator().manual_seed(seed)
    amplitude = torch.exp(-decay * shell_index(n).double() / 2)
    noise = torch.randn(count, n, n, generator=gen, dtype=torch.float64)
    return torch.fft.irfft2(torch.fft.rfft2(noise) * amplitude, s=(n, n)).numpy() + 0.3


def test_whitening_flattens_shells_up_to_k_max_and_keeps_the_decay_beyond() -> None:
    fields = fields_with_spectrum(decay=2.0)
    before = shell_variance(fields)
    assert before[8] / before[1] < 1e-5  # exp(-14)
    norm = FieldNormalization.fit(fields, whiten_up_to=8)
    after = shell_variance(norm.normalize(torch.from_numpy(fields)).numpy())
    flat = after[1:9] / after[1]
    assert np.all(np.abs(flat - 1) < 0.25), flat  # sampling error of 400 fields, fewest modes at k = 1
    assert after[12] / after[8] < 1e-3  # beyond k_max the gain is held: the field keeps decaying
    assert abs(norm.normalize(torch.from_numpy(fields)).std(correction=0).item() - 1) < 1e-9


def test_half_strength_whitening_takes_the_square_root_of_the_gain() -> None:
    fields = fields_with_spectrum(decay=2.0)
    full = FieldNormalization.fit(fields, whiten_up_to=8).shell_gain
    half = FieldNormalization.fit(fields, whiten_up_to=8, strength=0.5).shell_gain
    assert np.allclose(np.sqrt(full), half)


def test_whitened_normalisation_inverts_to_rounding() -> None:
    fields = torch.from_numpy(fields_with_spectrum(decay=1.0, count=8))
    norm = FieldNormalization.fit(fields.numpy(), whiten_up_to=6)
    assert len(norm.shell_gain) == 17 and norm.shell_gain[6] > 10
    back = norm.denormalize(norm.normalize(fields))
    assert torch.allclose(back, fields, rtol=0, atol=1e-12)


def test_spectral_forms_equal_the_physical_ones() -> None:
    """normalize_spectral(rfft2 x) = normalize(x) and denormalize_spectral(x) = rfft2(denormalize x),
    whitened or scalar, mean included (float64)."""
    fields = torch.from_numpy(fields_with_spectrum(decay=1.0, count=8))
    for norm in (FieldNormalization.fit(fields.numpy(), whiten_up_to=6), FieldNormalization(0.3, 2.0)):
        torch.testing.assert_close(norm.normalize_spectral(torch.fft.rfft2(fields)), norm.normalize(fields),
                                   rtol=0, atol=1e-10)
        torch.testing.assert_close(norm.denormalize_spectral(fields), torch.fft.rfft2(norm.denormalize(fields)),
                                   rtol=0, atol=1e-9)


def test_normalisation_dict_round_trip_and_scalar_dicts_of_older_checkpoints() -> None:
    fields = fields_with_spectrum(decay=1.0, count=8)
    norm = Normalization.fit(fields, 2 * fields, whiten_up_to=4)
    assert Normalization.from_dict(norm.to_dict()) == norm
    old = {"vorticity": {"mean": 0.0, "std": 1.0}, "closure": {"mean": 0.1, "std": 2.0}}
    assert Normalization.from_dict(old).closure == FieldNormalization(0.1, 2.0)
    assert Normalization.from_dict(old).to_dict() == old
