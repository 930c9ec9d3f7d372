"""Continuous ranked probability score (CRPS) of an ensemble: exact and a mergeable sketch.

The *fair* ensemble estimator (Ferro 2014; ``scoringrules``' ``estimator="fair"``) of
``M`` members ``x_i`` against an observation ``y`` is

    CRPS_fair = (1/M) sum_i |x_i - y|  -  1/(2 M (M-1)) sum_i sum_j |x_i - x_j|.

The first term is additive over members; the second needs pairs. :func:`crps_fair` computes
it exactly from all members (``O(M log M)`` via sorting). :class:`DeviationSketch` keeps, per
quantity, fixed signed-logarithmic bins of the deviation ``d = x - y`` with each bin's count,
sum, minimum and maximum. Pairs in different bins are ordered, so their contribution
``sum (d_j - d_i)`` follows exactly from counts and sums; only pairs inside one bin are
estimated (from the bin's observed range), and the worst-case error of that estimate is
returned with the score. Memory is ``O(bins)``, independent of the ensemble size, and two
sketches merge exactly (add counts and sums, min/max the ranges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def crps_fair(ensemble: np.ndarray, obs: np.ndarray | float) -> np.ndarray:
    """Exact fair CRPS; ``ensemble [M, ...]`` (members first), ``obs`` broadcast to ``[...]``.

    Uses ``sum_{i,j} |x_i - x_j| = 2 sum_k (2k - M + 1) x_(k)`` for sorted ``x_(0..M-1)``.
    """
    x = np.sort(np.asarray(ensemble, dtype=np.float64), axis=0)
    m = x.shape[0]
    if m < 2:
        raise ValueError(f"the fair CRPS needs at least 2 members, got {m}")
    first = np.abs(x - np.asarray(obs, dtype=np.float64)).mean(axis=0)
    weights = (2 * np.arange(m) - m + 1).reshape((m,) + (1,) * (x.ndim - 1))
    pair_sum = 2.0 * (weights * x).sum(axis=0)
    return first - pair_sum / (2.0 * m * (m - 1))


def signed_log_edges(smallest: float, largest: float, per_decade: int) -> np.ndarray:
    """Inner bin edges ``[-largest .. -smallest, smallest .. largest]`` (ascending).

    With ``searchsorted(edges, d, side="right")`` they give ``len(edges) + 1`` bins ordered
    along the real line: below ``-largest``, negative log bins, ``|d| < smallest``, positive
    log bins, at or above ``largest``.
    """
    per_side = max(1, math.ceil(math.log10(largest / smallest) * per_decade))
    positive = np.logspace(math.log10(smallest), math.log10(largest), per_side + 1)
    return np.concatenate((-positive[::-1], positive))


@dataclass
class DeviationSketch:
    """Mergeable per-bin summaries of ``d = x - y`` for ``[..., quantities]`` and one observation each.

    Attributes (``shape`` = leading dims, ``B`` = bins):
        edges: inner bin edges (see :func:`signed_log_edges`).
        members: ``[*shape]`` members seen.
        abs_sum: ``[*shape]`` ``sum_i |d_i|`` (exact first CRPS term).
        count, total, low, high: ``[*shape, B]`` per-bin count, sum, min and max of ``d``.
    """

    edges: np.ndarray
    members: np.ndarray
    abs_sum: np.ndarray
    count: np.ndarray
    total: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...], edges: np.ndarray) -> DeviationSketch:
        bins = (*shape, len(edges) + 1)
        return cls(
            edges=edges,
            members=np.zeros(shape, np.int64),
            abs_sum=np.zeros(shape),
            count=np.zeros(bins, np.int64),
            total=np.zeros(bins),
            low=np.full(bins, np.inf),
            high=np.full(bins, -np.inf),
        )

    def add(self, deviation: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add members' deviations ``[M, *shape]``; ``valid`` (``[*shape]`` bool) masks entries."""
        d = np.asarray(deviation, dtype=np.float64)
        shape = self.members.shape
        if d.shape[1:] != shape:
            raise ValueError(f"deviations must be [M, {list(shape)}], got {list(d.shape)}")
        mask = np.ones(shape, bool) if valid is None else np.broadcast_to(valid, shape)
        nb = len(self.edges) + 1
        cells = np.flatnonzero(mask.ravel())
        flat_d = d.reshape(d.shape[0], -1)[:, cells]  # [M, cells]
        if not np.isfinite(flat_d).all():
            raise ValueError("non-finite deviation given to the CRPS sketch")
        self.members.reshape(-1)[cells] += d.shape[0]
        self.abs_sum.reshape(-1)[cells] += np.abs(flat_d).sum(axis=0)
        index = (cells[None, :] * nb + np.searchsorted(self.edges, flat_d, side="right")).ravel()
        values = flat_d.ravel()
        size = self.count.size
        self.count.reshape(-1)[:] += np.bincount(index, minlength=size)
        self.total.reshape(-1)[:] += np.bincount(index, weights=values, minlength=size)
        np.minimum.at(self.low.reshape(-1), index, values)
        np.maximum.at(self.high.reshape(-1), index, values)

    def merge(self, other: DeviationSketch) -> None:
        """Add ``other`` (same edges and shape) into this sketch, exactly."""
        if not np.array_equal(self.edges, other.edges) or self.count.shape != other.count.shape:
            raise ValueError("cannot merge CRPS sketches with different bins or shapes")
        self.members += other.members
        self.abs_sum += other.abs_sum
        self.count += other.count
        self.total += other.total
        np.minimum(self.low, other.low, out=self.low)
        np.maximum(self.high, other.high, out=self.high)

    def crps(self) -> tuple[np.ndarray, np.ndarray]:
        """Fair CRPS ``[*shape]`` and its worst-case absolute error ``[*shape]`` (NaN if M < 2).

        Cross-bin pairs: ``sum_{a<b} (c_a S_b - c_b S_a)`` (exact). Inside a bin with ``c``
        members spanning ``R = max - min``, the ordered-pair sum lies in
        ``[2 (c-1) R, 2 floor(c/2) ceil(c/2) R]``; the estimate places the two extremes at the
        ends and the other ``c - 2`` uniformly between: ``2 (c-1) R + (c-2)(c-3) R / 3``.
        """
        c = self.count.astype(np.float64)
        s = self.total
        c_before = np.cumsum(c, axis=-1) - c
        s_before = np.cumsum(s, axis=-1) - s
        cross = 2.0 * (s * c_before - c * s_before).sum(axis=-1)
        spread = np.where(self.count > 1, self.high - self.low, 0.0)
        lower = 2.0 * np.maximum(c - 1, 0) * spread
        upper = 2.0 * np.floor(c / 2) * np.ceil(c / 2) * spread
        estimate = lower + np.maximum(c - 2, 0) * np.maximum(c - 3, 0) * spread / 3.0
        within = estimate.sum(axis=-1)
        slack = np.maximum(estimate - lower, upper - estimate).sum(axis=-1)
        m = self.members.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.where(m > 1, 2.0 * m * (m - 1), np.nan)
            score = self.abs_sum / m - (cross + within) / norm
            bound = slack / norm
        return score, bound

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` for saving (see :meth:`from_arrays`)."""
        names = ("edges", "members", "abs_sum", "count", "total", "low", "high")
        return {f"{prefix}{name}": getattr(self, name) for name in names}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> DeviationSketch:
        names = ("edges", "members", "abs_sum", "count", "total", "low", "high")
        return cls(**{name: np.array(arrays[f"{prefix}{name}"]) for name in names})
