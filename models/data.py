"""Training pairs ``(w, C)`` from a closure dataset, flattened over trajectories and times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.normalization import Normalization
from solvers.dataset import dataset_fingerprint, read_dataset
from solvers.errors import UserError


@dataclass
class ClosurePairs:
    """``vorticity`` and ``closure`` ``[N, n, n]`` float32 (physical units), the file's attrs."""

    vorticity: np.ndarray
    closure: np.ndarray
    attrs: dict
    path: Path

    @property
    def grid_size(self) -> int:
        return int(self.vorticity.shape[-1])

    def __len__(self) -> int:
        return int(self.vorticity.shape[0])

    def normalized_tensors(self, norm: Normalization) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``(w, C)`` as ``[N, 1, n, n]`` float32 tensors."""
        w = norm.vorticity.normalize(torch.from_numpy(self.vorticity)).unsqueeze(1).float()
        c = norm.closure.normalize(torch.from_numpy(self.closure)).unsqueeze(1).float()
        return w, c


def load_pairs(path: str | Path, split: str = "train", max_samples: int = 0, seed: int = 0) -> ClosurePairs:
    """Read ``split`` of the dataset at ``path`` as pairs; ``max_samples > 0`` keeps a seeded subset."""
    data = read_dataset(path, split=split)
    w = data.vorticity.reshape(-1, *data.vorticity.shape[-2:]).astype(np.float32)
    c = data.closure.reshape(-1, *data.closure.shape[-2:]).astype(np.float32)
    if w.shape[0] == 0:
        raise UserError(f"{path}: the {split} split is empty")
    if w.shape[-1] % 4:
        raise UserError(f"{path}: grid size {w.shape[-1]} must be divisible by 4 (two stride-2 stages)")
    if 0 < max_samples < w.shape[0]:
        keep = np.sort(np.random.default_rng(seed).choice(w.shape[0], max_samples, replace=False))
        w, c = w[keep], c[keep]
    return ClosurePairs(w, c, data.attrs, Path(path))


def fingerprint(path: str | Path) -> str:
    """Dataset fingerprint (sha256 of the arrays, :func:`solvers.dataset.dataset_fingerprint`)."""
    return dataset_fingerprint(path)
