"""Streaming ensemble statistics: mergeable reductions whose memory does not grow with members.

Statistics are kept per *group* (members sharing an initial condition and a reference: with
dataset initial conditions, group ``g`` is test trajectory ``g``; otherwise one group) and per
output time. A chunk of members becomes a :class:`GroupStatistics` (in the solver actor); the
driver merges them (:class:`Aggregator`) and turns the running state into table rows.

What is kept for ``T`` output times on an ``n x n`` grid (``K = n//2 + 1`` shells):

* member count ``[T]``; per-pixel mean and sum of squared deviations ``[T, n, n]`` (Welford,
  merged with Chan et al.'s pairwise update) -> ensemble mean and standard deviation fields;
* mean and ``M2`` of energy and enstrophy ``[T]``;
* energy-spectrum sum ``[T, K]`` and a histogram per shell on fixed logarithmic bins
  ``[T, K, S]`` -> mean spectrum and 5/50/95 % quantiles. Quantiles are interpolated
  geometrically inside a bin, so their error is at most one bin ratio
  (``10**(1/bins_per_decade)``, 12 % for the default 20 bins per decade);
* vorticity and closure-term histograms on fixed linear bins (plus below/above counts);
* with a reference: at ``P`` fixed probe points (a regular ``p x p`` sub-lattice) the number
  of members below the reference (rank histograms), and a :class:`~ensemble.crps.DeviationSketch`
  of probe vorticity, energy and enstrophy deviations (CRPS with a stated error bound).

Derived per (group, time): relative error of the ensemble mean
``||mean - ref|| / ||ref||``; ``rmse = sqrt(<(mean - ref)^2>)``; ``spread = sqrt(<var>)``
(unbiased variance, pixel average ``<.>``); spread-skill ratio
``sqrt((M+1)/M) spread / rmse`` (Fortin et al. 2014: 1 for a reliable ensemble).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ensemble.crps import DeviationSketch, signed_log_edges
from ensemble.run_config import EnsembleSection


@dataclass(frozen=True)
class StatisticsBins:
    """The fixed bins shared by every chunk of a run (derived from the [ensemble] section)."""

    n: int
    vorticity_edges: np.ndarray
    closure_edges: np.ndarray
    spectrum_edges: np.ndarray
    crps_edges: np.ndarray
    probes: np.ndarray  # [P, 2] grid indices (i, j)
    rank_bins: int

    @classmethod
    def from_section(cls, section: EnsembleSection, n: int) -> StatisticsBins:
        decades = math.log10(section.spectrum_max / section.spectrum_min)
        count = max(1, math.ceil(decades * section.spectrum_bins_per_decade))
        spacing = np.arange(section.probes_per_side) * n // section.probes_per_side
        probes = np.stack(np.meshgrid(spacing, spacing, indexing="ij"), -1).reshape(-1, 2)
        return cls(
            n=n,
            vorticity_edges=np.linspace(-section.vorticity_range, section.vorticity_range, section.pdf_bins + 1),
            closure_edges=np.linspace(-section.closure_range, section.closure_range, section.pdf_bins + 1),
            spectrum_edges=np.logspace(math.log10(section.spectrum_min), math.log10(section.spectrum_max), count + 1),
            crps_edges=signed_log_edges(section.crps_min, section.crps_max, section.crps_bins_per_decade),
            probes=probes,
            rank_bins=section.rank_bins,
        )


@dataclass
class Reference:
    """Reference (filtered DNS) of one group at the output times.

    Attributes:
        vorticity: ``[T, n, n]`` (anything where ``valid`` is False).
        energy, enstrophy: ``[T]``.
        valid: ``[T]`` bool, True where the reference has this output time.
    """

    vorticity: np.ndarray
    energy: np.ndarray
    enstrophy: np.ndarray
    valid: np.ndarray


@dataclass
class MemberFields:
    """What one chunk's surviving members produced at the ``T`` output times.

    Attributes:
        vorticity: ``[M, T, n, n]``.
        closure: ``[M, T, n, n]`` closure term used in the last step (zeros where absent).
        closure_valid: ``[T]`` bool, True where a closure term exists (not at the first output).
        energy, enstrophy: ``[M, T]``.
        spectrum: ``[M, T, K]`` energy spectrum ``E(k)``.
    """

    vorticity: np.ndarray
    closure: np.ndarray
    closure_valid: np.ndarray
    energy: np.ndarray
    enstrophy: np.ndarray
    spectrum: np.ndarray

    @classmethod
    def empty(cls, members: int, times: int, n: int) -> MemberFields:
        """Buffers to fill output by output: NaN where a member has no value (zero closure)."""
        nan = np.float32(np.nan)
        return cls(
            vorticity=np.full((members, times, n, n), nan, np.float32),
            closure=np.zeros((members, times, n, n), np.float32),
            closure_valid=np.zeros(times, bool),
            energy=np.full((members, times), np.nan),
            enstrophy=np.full((members, times), np.nan),
            spectrum=np.full((members, times, n // 2 + 1), np.nan),
        )

    def select(self, rows: np.ndarray) -> MemberFields:
        """The fields of the members ``rows`` (ascending, unique; ``closure_valid`` is shared): views
        when the rows are consecutive (a chunk's group, no member lost), copies otherwise."""
        if rows.size and rows[-1] - rows[0] + 1 == rows.size:
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        return MemberFields(
            vorticity=self.vorticity[rows], closure=self.closure[rows], closure_valid=self.closure_valid,
            energy=self.energy[rows], enstrophy=self.enstrophy[rows], spectrum=self.spectrum[rows],
        )


def uniform_bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.searchsorted(edges, values, side="right")`` for evenly spaced ``edges``, exactly, in O(1) per value.

    The index ``r`` (0 = below the first edge, ``len(edges)`` = at or above the last, NaN there
    too) is first estimated arithmetically, ``floor((v - e_0) / h) + 1``, then corrected by one
    against the edges themselves so that ``e[r - 1] <= v < e[r]`` holds as searchsorted has it.
    """
    bins = len(edges) - 1
    estimate = np.floor((values - values.dtype.type(edges[0])) * values.dtype.type(bins / (edges[-1] - edges[0])))
    index = np.maximum(np.fmin(estimate, bins), -1).astype(np.intp) + 1  # fmin: NaN -> bins, as searchsorted
    padded = np.concatenate(([-np.inf], edges, [np.nan]))  # padded[r] = e[r - 1]; no value is >= the NaN
    index -= values < padded[index]
    index += values >= padded[index + 1]
    return index


def _time_blocks(values: np.ndarray, block: int = 1 << 18) -> list[slice]:
    """Slices of the time axis of ``values [M, T, ...]`` holding about ``block`` values each: a
    reduction done block by block keeps its temporaries in cache instead of touching fresh memory."""
    t = values.shape[1]
    step = max(1, block * t // max(values.size, 1))
    return [slice(start, min(start + step, t)) for start in range(0, t, step)]


def _histogram_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts ``[T, bins + 2]`` of ``values [M, T, ...]`` per time (first = below, last = above) on
    evenly spaced ``edges``."""
    m, t = values.shape[:2]
    nb = len(edges) + 1
    flat = values.reshape(m, t, -1)
    counts = np.empty((t, nb), np.int64)
    for times in _time_blocks(flat):
        index = uniform_bin_index(flat[:, times], edges)  # [M, b, P]
        b = index.shape[1]
        index += (np.arange(b) * nb)[:, None]
        counts[times] = np.bincount(index.ravel(), minlength=b * nb).reshape(b, nb)
    return counts


def member_relative_error(vorticity: np.ndarray, ref: Reference) -> np.ndarray:
    """``||w_m(t) - w_ref(t)|| / ||w_ref(t)||`` ``[M, T]`` of ``vorticity [M, T, n, n]`` (NaN where
    the reference has no field)."""
    m, t = vorticity.shape[:2]
    diff = np.empty((m, t), vorticity.dtype)
    for times in _time_blocks(vorticity):
        deviation = (vorticity[:, times] - ref.vorticity[times]).reshape(m, -1, ref.vorticity[0].size)
        diff[:, times] = np.linalg.norm(deviation, axis=-1)
    norm = np.linalg.norm(ref.vorticity.reshape(t, -1), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ref.valid, diff / norm, np.nan)


def _mean_and_m2(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Member mean and sum of squared deviations ``[T, ...]`` (float64) of ``values [M, T, ...]``."""
    mean, m2 = np.empty(values.shape[1:]), np.empty(values.shape[1:])
    for times in _time_blocks(values):
        w = values[:, times].astype(np.float64)
        mean[times] = w.mean(0)
        m2[times] = ((w - mean[times]) ** 2).sum(0)
    return mean, m2


def _welford_merge(na, mean_a, m2_a, nb, mean_b, m2_b):
    """Chan et al. merge of (count, mean, M2); counts broadcast against the trailing dims."""
    n = na + nb
    shape = n.shape + (1,) * (mean_a.ndim - n.ndim)
    wb = np.where(n > 0, nb / np.maximum(n, 1), 0.0).reshape(shape)
    delta = mean_b - mean_a
    mean = mean_a + delta * wb
    m2 = m2_a + m2_b + delta**2 * (na.reshape(shape) * wb)
    return n, mean, m2


def _histogram_quantiles(counts: np.ndarray, edges: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` from log-bin counts ``[..., S + 2]`` (geometric interpolation in a bin).

    Values below the first edge report 0, values above the last edge report the last edge.
    """
    total = counts.sum(-1, keepdims=True)
    cum = np.cumsum(counts, -1)
    target = q * total
    index = np.minimum((cum < target).sum(-1, keepdims=True), counts.shape[-1] - 1)
    before = np.take_along_axis(cum - counts, index, -1)
    inside = np.take_along_axis(counts, index, -1)
    frac = np.clip(np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.0), 0, 1)
    lo_edge = np.concatenate(([edges[0]], edges))
    hi_edge = np.concatenate((edges, [edges[-1]]))
    lo, hi = lo_edge[index], hi_edge[index]
    value = lo * (hi / lo) ** frac
    value = np.where(index == 0, 0.0, value)
    return np.where(total > 0, value, np.nan)[..., 0]


@dataclass
class GroupStatistics:
    """Mergeable running statistics of one group over ``T`` output times (see module doc)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    energy_mean: np.ndarray
    energy_m2: np.ndarray
    enstrophy_mean: np.ndarray
    enstrophy_m2: np.ndarray
    spectrum_sum: np.ndarray
    spectrum_hist: np.ndarray
    vorticity_hist: np.ndarray
    closure_hist: np.ndarray
    below_reference: np.ndarray  # [T, P] members below the reference at each probe
    sketch: DeviationSketch  # [T, P + 2]: probes, energy, enstrophy

    @classmethod
    def empty(cls, times: int, bins: StatisticsBins) -> GroupStatistics:
        n, k, p = bins.n, bins.n // 2 + 1, len(bins.probes)
        return cls(
            count=np.zeros(times, np.int64),
            mean=np.zeros((times, n, n)),
            m2=np.zeros((times, n, n)),
            energy_mean=np.zeros(times),
            energy_m2=np.zeros(times),
            enstrophy_mean=np.zeros(times),
            enstrophy_m2=np.zeros(times),
            spectrum_sum=np.zeros((times, k)),
            spectrum_hist=np.zeros((times, k, len(bins.spectrum_edges) + 1), np.int32),
            vorticity_hist=np.zeros((times, len(bins.vorticity_edges) + 1), np.int64),
            closure_hist=np.zeros((times, len(bins.closure_edges) + 1), np.int64),
            below_reference=np.zeros((times, p), np.int64),
            sketch=DeviationSketch.empty((times, p + 2), bins.crps_edges),
        )

    @classmethod
    def from_members(
        cls, data: MemberFields, bins: StatisticsBins, reference: Reference | None
    ) -> GroupStatistics:
        """Reduce one chunk's members (all of one group) to mergeable statistics."""
        m, t = data.energy.shape
        stats = cls.empty(t, bins)
        if m == 0:
            return stats
        stats.count[:] = m
        stats.mean, stats.m2 = _mean_and_m2(data.vorticity)
        for name in ("energy", "enstrophy"):
            values = getattr(data, name).astype(np.float64)
            setattr(stats, f"{name}_mean", values.mean(0))
            setattr(stats, f"{name}_m2", ((values - values.mean(0)) ** 2).sum(0))
        spectrum = data.spectrum.astype(np.float64)
        stats.spectrum_sum = spectrum.sum(0)
        stats.spectrum_hist = cls._spectrum_counts(spectrum, bins)
        stats.vorticity_hist = _histogram_counts(data.vorticity, bins.vorticity_edges)
        if data.closure_valid.any():  # else zeros: a run without closure term, or only its first output
            closure_counts = _histogram_counts(data.closure, bins.closure_edges)
            stats.closure_hist = closure_counts * data.closure_valid[:, None]
        if reference is not None:
            stats._add_reference(data, bins, reference)
        return stats

    @staticmethod
    def _spectrum_counts(spectrum: np.ndarray, bins: StatisticsBins) -> np.ndarray:
        """Counts ``[T, K, S + 2]`` of ``E(k)`` per time and shell on the log bins."""
        m, t, k = spectrum.shape
        nb = len(bins.spectrum_edges) + 1
        index = np.searchsorted(bins.spectrum_edges, spectrum, side="right")  # [M, T, K]
        flat = (np.arange(t * k).reshape(t, k)[None] * nb + index).ravel()
        return np.bincount(flat, minlength=t * k * nb).reshape(t, k, nb).astype(np.int32)

    def _add_reference(self, data: MemberFields, bins: StatisticsBins, ref: Reference) -> None:
        i, j = bins.probes[:, 0], bins.probes[:, 1]
        probe_values = data.vorticity[:, :, i, j].astype(np.float64)  # [M, T, P]
        ref_probe = ref.vorticity[:, i, j]  # [T, P]
        valid = ref.valid[:, None]
        self.below_reference = ((probe_values < ref_probe) & valid).sum(0).astype(np.int64)
        deviation = np.concatenate(
            (
                probe_values - ref_probe,
                (data.energy - ref.energy)[..., None],
                (data.enstrophy - ref.enstrophy)[..., None],
            ),
            axis=-1,
        )
        deviation = np.where(valid[None], deviation, 0.0)
        self.sketch.add(deviation, np.broadcast_to(valid, self.sketch.members.shape))

    def merge(self, other: GroupStatistics) -> None:
        """Add ``other`` (same bins and times) into this state."""
        na, nb = self.count, other.count
        _, self.mean, self.m2 = _welford_merge(na, self.mean, self.m2, nb, other.mean, other.m2)
        for name in ("energy", "enstrophy"):
            _, mean, m2 = _welford_merge(
                na, getattr(self, f"{name}_mean"), getattr(self, f"{name}_m2"),
                nb, getattr(other, f"{name}_mean"), getattr(other, f"{name}_m2"),
            )
            setattr(self, f"{name}_mean", mean)
            setattr(self, f"{name}_m2", m2)
        self.count = na + nb
        for name in ("spectrum_sum", "spectrum_hist", "vorticity_hist", "closure_hist", "below_reference"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sketch.merge(other.sketch)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` (for ``np.savez``; see :meth:`from_arrays`)."""
        out = {f"{prefix}{f.name}": getattr(self, f.name) for f in fields(self) if f.name != "sketch"}
        out.update(self.sketch.arrays(f"{prefix}sketch."))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], prefix: str = "") -> GroupStatistics:
        kwargs = {f.name: np.array(arrays[f"{prefix}{f.name}"]) for f in fields(cls) if f.name != "sketch"}
        return cls(**kwargs, sketch=DeviationSketch.from_arrays(arrays, f"{prefix}sketch."))

    def std_field(self) -> np.ndarray:
        """Unbiased per-pixel ensemble standard deviation ``[T, n, n]`` (NaN where M < 2)."""
        shape = (-1, 1, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.m2 / np.where(self.count > 1, self.count - 1, np.nan).reshape(shape))

    def columns(self, bins: StatisticsBins, reference: Reference | None) -> dict[str, Any]:
        """Derived per-time columns (each a length-``T`` array or list of lists)."""
        m = self.count.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            dof = np.where(m > 1, m - 1, np.nan)
            variance = self.m2.mean(axis=(-2, -1)) / dof
            std = self.std_field()
            cols: dict[str, Any] = {
                "members": self.count,
                "mean_field_rms": np.sqrt((self.mean**2).mean(axis=(-2, -1))),
                "spread": np.sqrt(variance),
                "std_field_max": std.max(axis=(-2, -1)),
                "energy_mean": np.where(m > 0, self.energy_mean, np.nan),
                "energy_std": np.sqrt(self.energy_m2 / dof),
                "enstrophy_mean": np.where(m > 0, self.enstrophy_mean, np.nan),
                "enstrophy_std": np.sqrt(self.enstrophy_m2 / dof),
                "spectrum_mean": (self.spectrum_sum / m[:, None]).tolist(),
            }
        for q, name in ((0.05, "spectrum_q05"), (0.5, "spectrum_q50"), (0.95, "spectrum_q95")):
            cols[name] = _histogram_quantiles(self.spectrum_hist, bins.spectrum_edges, q).tolist()
        for name, hist, edges in (
            ("vorticity", self.vorticity_hist, bins.vorticity_edges),
            ("closure", self.closure_hist, bins.closure_edges),
        ):
            total = hist.sum(-1, keepdims=True).astype(np.float64)
            width = edges[1] - edges[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"{name}_pdf"] = (hist[:, 1:-1] / (total * width)).tolist()
                cols[f"{name}_outside"] = (hist[:, 0] + hist[:, -1]) / total[:, 0]
        cols.update(self._reference_columns(bins, reference, variance))
        return cols

    def _reference_columns(self, bins: StatisticsBins, ref: Reference | None, variance: np.ndarray) -> dict[str, Any]:
        t = len(self.count)
        nan = np.full(t, np.nan)
        names = (
            "rel_error_mean", "rmse", "spread_skill", "crps_vorticity", "crps_vorticity_bound",
            "crps_energy", "crps_energy_bound", "crps_enstrophy", "crps_enstrophy_bound",
        )
        if ref is None:
            cols: dict[str, Any] = {name: nan for name in names}
            cols["rank_histogram"] = [[0] * bins.rank_bins for _ in range(t)]
            return cols
        m = self.count.astype(np.float64)
        valid = ref.valid & (self.count > 0)
        diff = self.mean - ref.vorticity
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.linalg.norm(diff.reshape(t, -1), axis=1) / np.linalg.norm(ref.vorticity.reshape(t, -1), axis=1)
            rmse = np.sqrt((diff**2).mean(axis=(-2, -1)))
            ratio = np.sqrt((m + 1) / m * variance) / rmse
        score, bound = self.sketch.crps()
        cols = {
            "rel_error_mean": np.where(valid, rel, np.nan),
            "rmse": np.where(valid, rmse, np.nan),
            "spread_skill": np.where(valid, ratio, np.nan),
            "crps_vorticity": np.where(valid, score[:, :-2].mean(-1), np.nan),
            "crps_vorticity_bound": np.where(valid, bound[:, :-2].mean(-1), np.nan),
            "crps_energy": np.where(valid, score[:, -2], np.nan),
            "crps_energy_bound": np.where(valid, bound[:, -2], np.nan),
            "crps_enstrophy": np.where(valid, score[:, -1], np.nan),
            "crps_enstrophy_bound": np.where(valid, bound[:, -1], np.nan),
        }
        # rank r in 0..M (members below the reference) -> bin floor(r B / (M + 1))
        rank_bin = np.minimum(self.below_reference * bins.rank_bins // (self.count[:, None] + 1), bins.rank_bins - 1)
        hist = np.stack([np.bincount(row, minlength=bins.rank_bins) for row in rank_bin])
        cols["rank_histogram"] = np.where(valid[:, None], hist, 0).tolist()
        return cols


class Aggregator:
    """Running statistics of all groups: merges chunk results once each (by chunk id)."""

    def __init__(self, times: int, bins: StatisticsBins) -> None:
        self.times, self.bins = times, bins
        self.groups: dict[int, GroupStatistics] = {}
        self.merged_chunks: set[int] = set()

    def add(self, chunk_id: int, stats: dict[int, GroupStatistics]) -> bool:
        """Merge a chunk's statistics (one record per group it holds); a chunk already merged is ignored (returns False)."""
        if chunk_id in self.merged_chunks:
            return False
        for group, group_stats in stats.items():
            self.groups.setdefault(group, GroupStatistics.empty(self.times, self.bins)).merge(group_stats)
        self.merged_chunks.add(chunk_id)
        return True

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to resume, as flat arrays for ``np.savez``."""
        out: dict[str, np.ndarray] = {"merged_chunks": np.array(sorted(self.merged_chunks), np.int64)}
        out["groups"] = np.array(sorted(self.groups), np.int64)
        for g, stats in self.groups.items():
            out.update(stats.arrays(f"g{g}."))
        return out

    def load_state(self, arrays: dict[str, Any]) -> None:
        self.merged_chunks = {int(c) for c in arrays["merged_chunks"]}
        self.groups = {int(g): GroupStatistics.from_arrays(arrays, f"g{int(g)}.") for g in arrays["groups"]}
