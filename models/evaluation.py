"""A-priori evaluation of a closure on held-out pairs ``(w, C)``: ensemble accuracy, calibration, cost.

For each of ``samples`` test pairs, ``members`` closure samples ``X_1..X_M`` are drawn for the
same ``w`` (each member with its own random stream). Metrics, averaged over the test pairs:

* ``relative_error_mean``: ``||mean_i X_i - C||_F / ||C||_F`` (the paper's a-priori error);
* ``relative_error_member``: the same for single members, averaged over members;
* ``spectrum_error``: ``sum_k |E_X(k) - E_C(k)| / sum_k E_C(k)`` with ``E(k)`` the shell-summed
  power spectrum ``|C^(k)|^2/2`` of the field (ensemble-averaged for ``X``);
* ``relative_error_mean_by_shell``: per wavenumber shell ``k = 0..n/2``,
  ``sqrt(sum E_{mean X - C}(k) / sum E_C(k))`` pooled over the test pairs: where in scale the
  ensemble mean misses (the coarse model's small scales depend on the shells near ``n/4``);
* ``crps``: the fair ensemble CRPS, pointwise, averaged over grid points (physical units);
* ``spread_skill``: ``sqrt((M+1)/M) sqrt(mean var_i X) / sqrt(mean (mean_i X - C)^2)``
  (1 for a calibrated ensemble);
* ``reconstruction_error_closure`` / ``_vorticity`` (latent models): ``||f - D(E(f))|| / ||f||``;
* ``seconds_per_member``: wall time of the closure calls divided by the number of samples drawn.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from models.closures import GenerativeClosure
from models.data import ClosurePairs
from models.sampling_options import SamplerOptions
from solvers.grid import SpectralGrid
from solvers.random import MemberRandom, mix_seed


def fair_crps(ensemble: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Fair ensemble CRPS at every point: ``ensemble [M, ...]``, ``truth [...]`` -> ``[...]``.

    ``CRPS_fair = mean_i |X_i - y| - sum_{i,j} |X_i - X_j| / (2 M (M - 1))``, the pair sum
    computed from the sorted ensemble as ``2 sum_i (2 i - M - 1) X_(i)`` (``i = 1..M``).
    """
    m = ensemble.shape[0]
    if m < 2:
        raise ValueError("the fair CRPS needs at least 2 members")
    skill = (ensemble - truth).abs().mean(0)
    ranks = torch.arange(1, m + 1, dtype=ensemble.dtype, device=ensemble.device)
    coeff = (2 * ranks - m - 1).reshape(-1, *([1] * (ensemble.dim() - 1)))
    pair_sum = 2 * (coeff * ensemble.sort(dim=0).values).sum(0)
    return skill - pair_sum / (2 * m * (m - 1))


def power_spectrum(field: torch.Tensor, grid: SpectralGrid) -> torch.Tensor:
    """Shell-summed ``|f^(k)|^2 / 2`` (transform normalised by ``n^2``), ``[..., n//2 + 1]``."""
    f_hat = torch.fft.rfft2(field) / grid.n**2
    weights = torch.full((grid.n // 2 + 1,), 2.0, dtype=field.dtype, device=field.device)
    weights[0] = weights[-1] = 1.0
    density = 0.5 * f_hat.abs() ** 2 * weights
    out = torch.zeros(*density.shape[:-2], grid.n // 2 + 1, dtype=field.dtype, device=field.device)
    return out.index_add_(-1, grid.shell.reshape(-1), density.reshape(*density.shape[:-2], -1))


def _relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(a - b, dim=(-2, -1)) / torch.linalg.vector_norm(b, dim=(-2, -1))


def pick_samples(total: int, samples: int) -> np.ndarray:
    """``samples`` evenly spaced indices in ``range(total)`` (all when ``samples <= 0`` or ``>= total``)."""
    if samples <= 0 or samples >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, samples).round().astype(np.int64))


@torch.no_grad()
def reconstruction_errors(closure: GenerativeClosure, pairs: ClosurePairs, index: np.ndarray) -> dict[str, float]:
    """Mean relative reconstruction errors of the two autoencoders (latent models only)."""
    model = closure.model
    if not hasattr(model, "closure_ae"):
        return {}
    norm = closure.normalization
    out = {}
    for name, data, field_norm, ae in (
        ("closure", pairs.closure, norm.closure, model.closure_ae),
        ("vorticity", pairs.vorticity, norm.vorticity, model.vorticity_ae),
    ):
        f = torch.from_numpy(data[index]).float()
        rec = field_norm.denormalize(ae(field_norm.normalize(f).unsqueeze(1))[:, 0])
        out[f"reconstruction_error_{name}"] = float(_relative(rec, f).mean())
    return out


def evaluate_closure(
    closure: GenerativeClosure,
    pairs: ClosurePairs,
    *,
    members: int = 32,
    samples: int = 20,
    seed: int = 0,
    batch_members: int = 256,
) -> dict[str, Any]:
    """A-priori metrics (see module docstring) on ``samples`` pairs with ``members`` samples each."""
    if members < 2:
        raise ValueError("members must be >= 2")
    index = pick_samples(len(pairs), samples)
    grid = SpectralGrid(pairs.grid_size, dtype=torch.float32)
    per_chunk = max(1, batch_members // members)
    sums: dict[str, float] = {k: 0.0 for k in ("mean", "member", "spectrum", "crps")}
    var_sum = mse_sum = seconds = 0.0
    shell_error = shell_truth = 0.0
    for start in range(0, len(index), per_chunk):
        chunk = index[start : start + per_chunk]
        w = torch.from_numpy(pairs.vorticity[chunk]).float()
        truth = torch.from_numpy(pairs.closure[chunk]).float()
        seeds = [mix_seed(seed, int(i), m) for i in chunk for m in range(members)]
        tic = time.perf_counter()
        draws = closure(w.repeat_interleave(members, 0), 0.0, MemberRandom(seeds))
        seconds += time.perf_counter() - tic
        ens = draws.reshape(len(chunk), members, *truth.shape[-2:]).transpose(0, 1)  # [M, k, n, n]
        mean = ens.mean(0)
        sums["mean"] += float(_relative(mean, truth).sum())
        sums["member"] += float(_relative(ens, truth).mean(0).sum())
        spec_x, spec_c = power_spectrum(ens, grid).mean(0), power_spectrum(truth, grid)
        shell_error = shell_error + power_spectrum(mean - truth, grid).sum(0).double()
        shell_truth = shell_truth + spec_c.sum(0).double()
        sums["spectrum"] += float(((spec_x - spec_c).abs().sum(-1) / spec_c.sum(-1)).sum())
        sums["crps"] += float(fair_crps(ens, truth).mean(dim=(-2, -1)).sum())
        var_sum += float(ens.var(0, unbiased=True).mean(dim=(-2, -1)).sum())
        mse_sum += float((mean - truth).pow(2).mean(dim=(-2, -1)).sum())
    k = len(index)
    result = {
        "method": closure.method,
        "grid_size": closure.grid_size,
        "sampler": closure.options.to_dict(),
        "distilled_teacher_steps": getattr(closure, "teacher_steps", None),
        "members": members,
        "samples": int(k),
        "relative_error_mean": sums["mean"] / k,
        "relative_error_member": sums["member"] / k,
        "spectrum_error": sums["spectrum"] / k,
        "relative_error_mean_by_shell": (shell_error / shell_truth).sqrt().tolist(),
        "crps": sums["crps"] / k,
        "closure_std": float(pairs.closure[index].std()),
        "spread_skill": float(np.sqrt((members + 1) / members) * np.sqrt(var_sum / max(mse_sum, 1e-300))),
        "seconds_per_member": seconds / (k * members),
    }
    result.update(reconstruction_errors(closure, pairs, index))
    return result


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`evaluate_closure` results, one row each."""
    columns = [
        ("method", "method", "{}"),
        ("sampler", "sampler", "{}"),
        ("rel. err. mean", "relative_error_mean", "{:.3f}"),
        ("rel. err. member", "relative_error_member", "{:.3f}"),
        ("spectrum err.", "spectrum_error", "{:.3f}"),
        ("CRPS", "crps", "{:.3g}"),
        ("CRPS / std C", "crps_over_std", "{:.3f}"),
        ("spread-skill", "spread_skill", "{:.2f}"),
        ("rec. err. C", "reconstruction_error_closure", "{:.3f}"),
        ("rec. err. w", "reconstruction_error_vorticity", "{:.4f}"),
        ("ms / member", "ms_per_member", "{:.3f}"),
    ]
    lines = ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        row = dict(row)
        row["crps_over_std"] = row["crps"] / row["closure_std"]
        row["ms_per_member"] = 1e3 * row["seconds_per_member"]
        row["sampler"] = SamplerOptions(**row["sampler"]).describe(row["method"], row.get("distilled_teacher_steps"))
        cells = [fmt.format(row[key]) if key in row else "-" for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
