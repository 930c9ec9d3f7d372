"""Learned closures behind the solver's Closure protocol, and :func:`load_closure`.

    closure(vorticity [M, n, n], time, rng: MemberRandom) -> C [M, n, n]   (physical units)
    closure.spectral(rfft2(vorticity), time, rng) -> rfft2(C)     (the solver's fast path)

Every random number comes from ``rng`` (each member's own stream), so member ``m``'s sample
is the same alone or inside any batch. The network runs under ``torch.inference_mode`` in
float32 on the closure's device; the result is returned on the input's device and dtype.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from solvers.allocator import tune_allocator
from models.checkpoint import Checkpoint, load_checkpoint
from models.precision import native_bfloat16
from models.sampling_options import SamplerOptions
from solvers.errors import UserError
from solvers.random import MemberRandom

logger = logging.getLogger(__name__)


class GenerativeClosure:
    """A trained generative model (P-CDM, L-CDM, joint L-CDM or flow) as a :class:`~solvers.closure.Closure`.

    Attributes:
        method: ``pcdm``, ``lcdm``, ``joint-lcdm`` or ``flow``.
        grid_size: the grid ``n`` it was trained on.
        options: the :class:`SamplerOptions` used.
        checkpoint: the loaded :class:`~models.checkpoint.Checkpoint`.
    """

    def __init__(self, checkpoint: Checkpoint, options: SamplerOptions, device: torch.device | str = "cpu") -> None:
        self.checkpoint, self.options = checkpoint, options
        self.method, self.grid_size = checkpoint.method, checkpoint.grid_size
        self.device = torch.device(device)
        self.model = checkpoint.model.to(self.device).eval()
        self.normalization = checkpoint.normalization

    def __repr__(self) -> str:
        return f"GenerativeClosure(method={self.method!r}, n={self.grid_size}, {self.options})"

    @property
    def teacher_steps(self) -> int | None:
        """Euler steps of the sampler this one-step student was distilled from (None: not distilled)."""
        return self.checkpoint.metrics.get("distilled_teacher_steps")

    def __call__(self, vorticity: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        """Closure samples ``[M, n, n]`` for ``vorticity [M, n, n]`` (``time`` is unused: the model is autonomous)."""
        self._check("vorticity", tuple(vorticity.shape), (self.grid_size, self.grid_size), rng)
        if vorticity.shape[0] == 0:
            return torch.zeros_like(vorticity)
        with torch.inference_mode():
            w = self.normalization.vorticity.normalize(vorticity.to(self.device, torch.float32))
            out = self.normalization.closure.denormalize(self._sample(w, rng))
        return out.to(device=vorticity.device, dtype=vorticity.dtype)

    def spectral(self, vorticity_hat: torch.Tensor, time: float, rng: MemberRandom) -> torch.Tensor:
        """``rfft2`` of ``self(irfft2(vorticity_hat), time, rng)``, to float rounding:
        ``[M, n, n//2+1]`` complex in and out. The (de)normalisation's whitening works on the
        coefficients, so a sample costs two transforms instead of six with the solver's."""
        n = self.grid_size
        self._check("vorticity coefficients", tuple(vorticity_hat.shape), (n, n // 2 + 1), rng)
        if vorticity_hat.shape[0] == 0:
            return torch.zeros_like(vorticity_hat)
        with torch.inference_mode():
            w = self.normalization.vorticity.normalize_spectral(vorticity_hat.to(self.device, torch.complex64))
            out = self.normalization.closure.denormalize_spectral(self._sample(w, rng))
        return out.to(device=vorticity_hat.device, dtype=vorticity_hat.dtype)

    @staticmethod
    def _check(what: str, shape: tuple[int, ...], last: tuple[int, int], rng: MemberRandom) -> None:
        if len(shape) != 3 or shape[1:] != last:
            raise ValueError(f"expected {what} [M, {last[0]}, {last[1]}], got {list(shape)}")
        if len(rng) != shape[0]:
            raise ValueError(f"rng has {len(rng)} members, {what} {shape[0]}")

    def _sample(self, w: torch.Tensor, rng: MemberRandom) -> torch.Tensor:
        """Normalised closure samples ``[M, n, n]`` for normalised vorticity ``w [M, n, n]``."""

        def noise(like: torch.Tensor) -> torch.Tensor:
            return rng.randn(*like.shape[1:], device=self.device, dtype=torch.float32)

        return self.model.sample(w.unsqueeze(1), noise, self.options)[:, 0]


def load_closure(
    path: str | Path,
    device: torch.device | str | None = None,
    *,
    grid_size: int | None = None,
    method: str | None = None,
    tune_malloc: bool = True,
    **sampler_overrides: Any,
) -> GenerativeClosure:
    """Load a checkpoint as a closure.

    Args:
        path: a ``.safetensors`` checkpoint written by ``closure train``.
        device: where the network runs (default CPU).
        grid_size, method: when given, a checkpoint for another grid or method is refused
            with a :class:`~solvers.errors.UserError`.
        tune_malloc: raise glibc's mmap/trim thresholds (:func:`solvers.allocator.tune_allocator`,
            process-wide, ~2x faster sampling on CPU).
        **sampler_overrides: ``sampler`` (euler_maruyama | ancestral | heun), ``steps``, ``t_max``,
            ``t_min``, ``flow_steps``, ``precision`` (float32 | bfloat16: a latent model's autoencoder
            halves, :mod:`models.precision`); defaults come from the checkpoint's [model] section
            (precision: float32).
    """
    if tune_malloc:
        tune_allocator()
    ckpt = load_checkpoint(path, grid_size=grid_size, method=method, device=device)
    if ckpt.phase == "autoencoder":
        raise UserError(f"{path}: checkpoint of an unfinished L-CDM (autoencoder phase only); train on or --resume")
    options = SamplerOptions.from_section(ckpt.model_config).with_overrides(**sampler_overrides)
    if "distilled_teacher_steps" in ckpt.metrics and options.flow_steps != 1:
        raise UserError(f"{path}: a one-step distilled flow closure samples with 1 flow step, not {options.flow_steps} "
                        "(its velocity is trained at t = 0 only)")
    options = checked_precision(options, ckpt.method, device or "cpu", path)
    closure = GenerativeClosure(ckpt, options, device or "cpu")
    logger.info("loaded %r from %s", closure, path)
    return closure


def checked_precision(options: SamplerOptions, method: str, device: torch.device | str, path: str | Path) -> SamplerOptions:
    """``options`` with a precision the model can use: P-CDM has no autoencoder, so it samples in
    float32 whatever was asked (logged); a device without native bfloat16 runs the bfloat16 halves
    slower than float32 (a warning)."""
    if options.precision == "float32":
        return options
    if method == "pcdm":
        logger.info("%s: P-CDM has no autoencoder; precision %s ignored, it samples in float32", path, options.precision)
        return options.with_overrides(precision="float32")
    if not native_bfloat16(device):
        logger.warning("%s: %s has no native bfloat16; %s autoencoders will sample slower than float32",
                       path, torch.device(device), options.precision)
    return options
