"""Per-field affine normalisation ``(x - mean) / std`` with statistics from the training split."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class FieldNormalization:
    """Scalar mean and std of one field (vorticity or closure term) over the training split.

    >>> norm = FieldNormalization(1.0, 2.0)
    >>> norm.denormalize(norm.normalize(torch.tensor([3.0]))).item()
    3.0
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray | torch.Tensor) -> FieldNormalization:
        """Mean and std over all entries (float64 accumulation); std floored at 1e-12."""
        arr = np.asarray(values, dtype=np.float64)
        return cls(float(arr.mean()), max(float(arr.std()), 1e-12))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Normalization:
    """Normalisation of both fields: ``vorticity`` (the condition) and ``closure`` (the target)."""

    vorticity: FieldNormalization
    closure: FieldNormalization

    @classmethod
    def fit(cls, vorticity: np.ndarray, closure: np.ndarray) -> Normalization:
        return cls(FieldNormalization.fit(vorticity), FieldNormalization.fit(closure))

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"vorticity": self.vorticity.to_dict(), "closure": self.closure.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        return cls(FieldNormalization(**data["vorticity"]), FieldNormalization(**data["closure"]))
