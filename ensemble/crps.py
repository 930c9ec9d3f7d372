"""Continuous ranked probability score (CRPS) of an ensemble: exact and a mergeable sketch.

The *fair* ensemble estimator (Ferro 2014; ``scoringrules``' ``estimator="fair"``) of
``M`` members ``x_i`` against an observation ``y`` is

    CRPS_fair = (1/M) sum_i |x_i - y|  -  1/(2 M (M-1)) sum_i sum_j |x_i - x_j|.

The first term is additive over members; the second needs pairs. :func:`crps_fair` computes
it exactly from all members (``O(M log M)`` via sorting). :class:`DeviationSketch` is mergeable
across chunks of members and holds the deviations ``d = x - y`` in one of two forms:

* **exact** while few members have been added (up to ``exact_limit``, by default 4 x the number
  of bins, where the raw deviations take no more memory than the bins would): the deviations
  themselves, and the score is :func:`crps_fair`'s, with a zero error bound;
* **binned** beyond that: per quantity, fixed signed-logarithmic bins of ``d`` with each bin's
  count, sum, minimum and maximum. Pairs in different bins are ordered, so their contribution
  ``sum (d_j - d_i)`` follows exactly from counts and sums; only pairs inside one bin are
  estimated (from the bin's observed range), and the worst-case error of that estimate is
  returned with the score. Memory is ``O(bins)``, independent of the ensemble size, and two
  binned sketches merge exactly (add counts and sums, min/max the ranges).

A merge that would pass ``exact_limit`` bins both sides first, so the result never depends on how
members were split into chunks beyond the rounding of sums.
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
    """Mergeable summary of deviations ``d = x - y`` for ``[*shape]`` quantities, one observation each.

    Attributes (``shape`` = leading dims, ``B`` = bins, ``R`` = members held exactly):
        edges: inner bin edges (see :func:`signed_log_edges`).
        members: ``[*shape]`` members seen.
        abs_sum: ``[*shape]`` ``sum_i |d_i|`` (exact first CRPS term).
        exact_limit: members held as raw deviations before the sketch bins them.
        raw: ``[R, *shape]`` the deviations, NaN where masked (exact form), or None (binned form).
        count, total, low, high: ``[*shape, B]`` per-bin count, sum, min and max of ``d``
            (binned form), or None (exact form).
    """

    edges: np.ndarray
    members: np.ndarray
    abs_sum: np.ndarray
    exact_limit: int
    raw: np.ndarray | None = None
    count: np.ndarray | None = None
    total: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    @classmethod
    def empty(cls, shape: tuple[int, ...], edges: np.ndarray, exact_limit: int | None = None) -> DeviationSketch:
        """An empty sketch in exact form (binned from the start when ``exact_limit`` is 0)."""
        limit = 4 * (len(edges) + 1) if exact_limit is None else int(exact_limit)
        sketch = cls(edges=edges, members=np.zeros(shape, np.int64), abs_sum=np.zeros(shape), exact_limit=limit,
                     raw=np.empty((0, *shape)))
        if limit == 0:
            sketch._to_bins()
        return sketch

    @property
    def exact(self) -> bool:
        return self.raw is not None

    def add(self, deviation: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add members' deviations ``[M, *shape]``; ``valid`` (``[*shape]`` bool) masks entries."""
        d = np.asarray(deviation, dtype=np.float64)
        shape = self.members.shape
        if d.shape[1:] != shape:
            raise ValueError(f"deviations must be [M, {list(shape)}], got {list(d.shape)}")
        mask = np.ones(shape, bool) if valid is None else np.broadcast_to(valid, shape)
        if not np.isfinite(d[:, mask]).all():
            raise ValueError("non-finite deviation given to the CRPS sketch")
        self.members += mask * d.shape[0]
        self.abs_sum += np.where(mask, np.abs(d), 0.0).sum(axis=0)
        if self.exact and len(self.raw) + len(d) <= self.exact_limit:
            self.raw = np.concatenate((self.raw, np.where(mask, d, np.nan)))
            return
        self._to_bins()
        self._bin(d, mask)

    def merge(self, other: DeviationSketch) -> None:
        """Add ``other`` (same edges and shape) into this sketch: exactly, in the form both fit."""
        if not np.array_equal(self.edges, other.edges) or self.members.shape != other.members.shape:
            raise ValueError("cannot merge CRPS sketches with different bins or shapes")
        self.members += other.members
        self.abs_sum += other.abs_sum
        if self.exact and other.exact and len(self.raw) + len(other.raw) <= self.exact_limit:
            self.raw = np.concatenate((self.raw, other.raw))
            return
        self._to_bins()
        if other.exact:
            self._bin(np.nan_to_num(other.raw), ~np.isnan(other.raw))
            return
        self.count += other.count
        self.total += other.total
        np.minimum(self.low, other.low, out=self.low)
        np.maximum(self.high, other.high, out=self.high)

    def _to_bins(self) -> None:
        """Switch to the binned form (no-op if binned), binning the raw deviations held so far."""
        if not self.exact:
            return
        raw, bins = self.raw, (*self.members.shape, len(self.edges) + 1)
        self.raw = None
        self.count, self.total = np.zeros(bins, np.int64), np.zeros(bins)
        self.low, self.high = np.full(bins, np.inf), np.full(bins, -np.inf)
        self._bin(np.nan_to_num(raw), ~np.isnan(raw))

    def _bin(self, d: np.ndarray, mask: np.ndarray) -> None:
        """Add deviations ``d [M, *shape]`` where ``mask`` (``[*shape]`` or ``[M, *shape]``) to the bins."""
        nb, cells = len(self.edges) + 1, self.members.size
        keep = np.broadcast_to(mask, d.shape).reshape(len(d), cells)
        cell = np.broadcast_to(np.arange(cells), keep.shape)[keep]
        values = d.reshape(len(d), cells)[keep]
        index = cell * nb + np.searchsorted(self.edges, values, side="right")
        size = self.count.size
        self.count.reshape(-1)[:] += np.bincount(index, minlength=size)
        self.total.reshape(-1)[:] += np.bincount(index, weights=values, minlength=size)
        np.minimum.at(self.low.reshape(-1), index, values)
        np.maximum.at(self.high.reshape(-1), index, values)

    def crps(self) -> tuple[np.ndarray, np.ndarray]:
        """Fair CRPS ``[*shape]`` and its worst-case absolute error ``[*shape]`` (NaN if M < 2):
        exact with a zero bound in the exact form, estimated with its bound in the binned form."""
        m = self.members.astype(np.float64)
        pairs, slack = self._exact_pairs() if self.exact else self._binned_pairs()
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.where(m > 1, 2.0 * m * (m - 1), np.nan)
            score = self.abs_sum / m - pairs / norm
            bound = slack / norm
        return score, bound

    def _exact_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``sum_ij |d_i - d_j| = 2 sum_k (2k - m + 1) d_(k)`` over each quantity's ``m`` sorted
        valid deviations (NaN, the masked entries, sort last), and a zero slack."""
        ordered = np.sort(self.raw, axis=0)
        rank = np.arange(len(ordered)).reshape((-1,) + (1,) * self.members.ndim)
        weight = np.where(rank < self.members, 2 * rank - self.members + 1, 0)
        return 2.0 * (weight * np.nan_to_num(ordered)).sum(axis=0), np.zeros(self.members.shape)

    def _binned_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Estimated ``sum_ij |d_i - d_j|`` and the worst case of its error.

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
        slack = np.maximum(estimate - lower, upper - estimate).sum(axis=-1)
        return cross + estimate.sum(axis=-1), slack

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` for saving (see :meth:`from_arrays`): the raw deviations in the
        exact form, the bins in the binned one."""
        names = ("raw",) if self.exact else ("count", "total", "low", "high")
        out = {f"{prefix}{name}": getattr(self, name) for name in ("edges", "members", "abs_sum", *names)}
        return {**out, f"{prefix}exact_limit": np.array(self.exact_limit)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> DeviationSketch:
        """The sketch :meth:`arrays` saved (a state without ``exact_limit``, from before the exact
        form, loads binned with the default limit)."""
        edges = np.array(arrays[f"{prefix}edges"])
        limit = arrays.get(f"{prefix}exact_limit")
        names = ("raw",) if f"{prefix}raw" in arrays else ("count", "total", "low", "high")
        return cls(edges=edges, exact_limit=4 * (len(edges) + 1) if limit is None else int(limit),
                   **{name: np.array(arrays[f"{prefix}{name}"]) for name in ("members", "abs_sum", *names)})
