"""Per-field normalisation with statistics from the training split: affine ``(x - mean) / std``,
optionally after a spectral whitening that lifts the weak small scales to the level of the
strongest shell.

Why whiten: at the small preset the closure term's per-mode variance falls from 1 at |k| = 1 to
3e-3 at |k| = 5 and 6e-5 at |k| = 8 (the vorticity's to 4e-8), so an L2 loss on the scalar-
normalised field ignores those shells, and a coarse run driven by a closure that lacks them
loses 60-90 % of its energy there (``checkpoints/small/README.md``). Whitening makes every shell
up to ``k_max`` weigh alike in the loss and in the autoencoders' latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from solvers.grid import SpectralGrid


@lru_cache(maxsize=8)
def shell_index(n: int) -> torch.Tensor:
    """Shell ``round(|k|)`` (clamped to ``n/2``) of each ``rfft2`` coefficient: ``[n, n//2+1]`` int64."""
    return SpectralGrid(n).shell


@lru_cache(maxsize=16)
def _gain_grid(gain: tuple[float, ...], n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(gain, dtype=torch.float64)[shell_index(n)].to(device=device, dtype=dtype)


def shell_variance(fields: np.ndarray) -> np.ndarray:
    """Mean per-mode variance ``P(k) = <|x_hat(k')|^2>`` over the shell ``round|k'| = k`` and the
    fields ``[N, n, n]`` (mean removed first): ``[n//2 + 1]`` float64."""
    x = torch.from_numpy(np.asarray(fields, dtype=np.float64))
    x = x - x.mean()
    n = x.shape[-1]
    power = torch.zeros(n, n // 2 + 1, dtype=torch.float64)
    for block in x.split(256):
        power += (torch.fft.rfft2(block).abs() ** 2).sum(0)
    shells = shell_index(n).flatten()
    total = torch.zeros(n // 2 + 1, dtype=torch.float64).index_add_(0, shells, power.flatten())
    return (total / torch.bincount(shells, minlength=n // 2 + 1) / len(x)).numpy()


def whitening_gain(variance: np.ndarray, k_max: int, strength: float = 1.0) -> tuple[float, ...]:
    """Per-shell gain ``g(k) = (P(k_peak) / P(min(k, k_max)))^(strength/2)`` above the strongest
    shell ``k_peak >= 1``, ``1`` at and below it. At ``strength = 1`` shells ``k_peak .. k_max``
    come out with equal per-mode variance (at ``s < 1`` their spread shrinks to its power
    ``1 - s``); finer ones keep their decay. ``[n//2 + 1]``."""
    k_peak = 1 + int(np.argmax(variance[1:]))
    k_max = max(min(k_max, len(variance) - 1), k_peak)
    floor = variance[k_peak] * 1e-14  # a shell with no energy at all gets a finite gain
    gain = np.ones(len(variance))
    for k in range(k_peak + 1, len(variance)):
        gain[k] = (variance[k_peak] / max(variance[min(k, k_max)], floor)) ** (strength / 2)
    return tuple(float(g) for g in gain)


@dataclass(frozen=True)
class FieldNormalization:
    """Mean, std and optional per-shell whitening gain of one field over the training split.

    ``normalize(x) = W(x - mean) / std`` with ``W = F^-1 diag(g(|k|)) F`` on the last two dims
    (``W`` = identity when ``shell_gain`` is empty); ``denormalize`` inverts it.

    >>> norm = FieldNormalization(1.0, 2.0)
    >>> norm.denormalize(norm.normalize(torch.tensor([3.0]))).item()
    3.0
    """

    mean: float
    std: float
    shell_gain: tuple[float, ...] = ()

    @classmethod
    def fit(cls, values: np.ndarray | torch.Tensor, whiten_up_to: int = 0, strength: float = 1.0) -> FieldNormalization:
        """Statistics over all entries ``[N, n, n]`` (float64); ``whiten_up_to > 0`` adds the
        whitening gain up to that shell (:func:`whitening_gain`), and the std is then the
        whitened field's. Std floored at 1e-12."""
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean())
        gain = whitening_gain(shell_variance(arr), whiten_up_to, strength) if whiten_up_to > 0 else ()
        whitened = cls(mean, 1.0, gain).normalize(torch.from_numpy(arr)).numpy() if gain else arr - mean
        return cls(mean, max(float(whitened.std()), 1e-12), gain)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., n, n]`` physical units -> normalised, same shape."""
        return self._filter(x - self.mean, inverse=False) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self._filter(x * self.std, inverse=True) + self.mean

    def normalize_spectral(self, x_hat: torch.Tensor) -> torch.Tensor:
        """:meth:`normalize` of the field whose ``rfft2`` is ``x_hat [..., n, n//2+1]`` (``n`` even),
        with one inverse transform: ``F^-1[diag(g / std) (x_hat - mean n^2 delta_k0)]``, ``[..., n, n]``."""
        n = x_hat.shape[-2]
        scaled = x_hat * self._spectral_factor(n, x_hat.device, x_hat.real.dtype, inverse=False)
        scaled[..., 0, 0] -= self.mean * n * n * self._gain_at_zero() / self.std
        return torch.fft.irfft2(scaled, s=(n, n))

    def denormalize_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """``rfft2`` of :meth:`denormalize` ``(x)`` with one transform:
        ``diag(std / g) F x + mean n^2 delta_k0``, ``[..., n, n] -> [..., n, n//2+1]``."""
        n = x.shape[-1]
        x_hat = torch.fft.rfft2(x) * self._spectral_factor(n, x.device, x.dtype, inverse=True)
        x_hat[..., 0, 0] += self.mean * n * n
        return x_hat

    def _spectral_factor(self, n: int, device: torch.device, dtype: torch.dtype, inverse: bool) -> torch.Tensor | float:
        """``g / std`` (forward) or ``std / g`` (inverse) per ``rfft2`` coefficient, or the scalar without a gain."""
        if not self.shell_gain:
            return self.std if inverse else 1.0 / self.std
        gain = _gain_grid(self.shell_gain, n, device, dtype)
        return self.std / gain if inverse else gain / self.std

    def _gain_at_zero(self) -> float:
        return self.shell_gain[0] if self.shell_gain else 1.0

    def _filter(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        if not self.shell_gain:
            return x
        n = x.shape[-1]
        gain = _gain_grid(self.shell_gain, n, x.device, x.dtype)
        x_hat = torch.fft.rfft2(x)
        x_hat = x_hat / gain if inverse else x_hat * gain
        return torch.fft.irfft2(x_hat, s=(n, n))

    def to_dict(self) -> dict:
        out: dict = {"mean": self.mean, "std": self.std}
        if self.shell_gain:
            out["shell_gain"] = list(self.shell_gain)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FieldNormalization:
        return cls(float(data["mean"]), float(data["std"]), tuple(float(g) for g in data.get("shell_gain", ())))


@dataclass(frozen=True)
class Normalization:
    """Normalisation of both fields: ``vorticity`` (the condition) and ``closure`` (the target)."""

    vorticity: FieldNormalization
    closure: FieldNormalization

    @classmethod
    def fit(cls, vorticity: np.ndarray, closure: np.ndarray, whiten_up_to: int = 0, strength: float = 1.0) -> Normalization:
        return cls(FieldNormalization.fit(vorticity, whiten_up_to, strength), FieldNormalization.fit(closure, whiten_up_to, strength))

    def to_dict(self) -> dict[str, dict]:
        return {"vorticity": self.vorticity.to_dict(), "closure": self.closure.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        return cls(FieldNormalization.from_dict(data["vorticity"]), FieldNormalization.from_dict(data["closure"]))
