"""Typed [model] and [training] sections of a config file, and the a-posteriori fine-tuning settings.

>>> ModelSection().method
'joint-lcdm'
>>> TrainingSection().lr
0.001
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from solvers.config import Section

Architecture = Literal["upsample", "subpixel"]  # autoencoder layouts (models.autoencoder)

Method = Literal["pcdm", "lcdm", "joint-lcdm", "flow"]
SamplerName = Literal["euler_maruyama", "ancestral", "heun"]
METHODS: tuple[str, ...] = ("pcdm", "lcdm", "joint-lcdm", "flow")


class ModelSection(Section):
    """Network sizes and sampler defaults of the generative closures."""

    method: Method = Field("joint-lcdm", description="default method of `closure train`")
    # Physical-space conditional FNO (P-CDM); paper: 6 modes, width 40.
    physical_modes: int = Field(6, ge=1, description="Fourier modes per direction, physical FNO")
    physical_width: int = Field(40, ge=1, description="channels of the physical FNO")
    physical_layers: int = Field(4, ge=1, description="spectral layers of the physical FNO")
    # Latent-space conditional FNO (L-CDM, flow); paper: 4 modes, width 20 on 16^2.
    latent_modes: int = Field(4, ge=1, description="Fourier modes per direction, latent FNO")
    latent_width: int = Field(20, ge=1, description="channels of the latent FNO")
    latent_layers: int = Field(4, ge=1, description="spectral layers of the latent FNO")
    # Autoencoders (n -> n/4): `upsample` (convolutions at 1x, 2x, 4x the latent resolution, the
    # paper's layout) or `subpixel` (all at the latent resolution, with pixel (un)shuffle).
    ae_architecture: Architecture = Field("upsample", description="autoencoder layout: upsample or subpixel")
    ae_channels: int = Field(16, ge=1, description="hidden channels of each autoencoder")
    latent_channels: int = Field(1, ge=1, description="latent channels (1 = 16x compression)")
    whiten_up_to: int = Field(
        0, ge=0, description="spectral whitening of both fields up to this shell |k| before training "
        "(0 = scalar normalisation only; models/normalization.py)")
    whiten_strength: float = Field(1.0, gt=0, le=1, description="exponent of the whitening gain (1 = equal per-mode variance)")
    # VE SDE and samplers.
    sde_sigma: float = Field(30.0, gt=1, description="VE SDE scale s: g(t) = s^t")
    sampler: SamplerName = Field("euler_maruyama", description="score sampler: euler_maruyama, ancestral or heun")
    sampler_steps: int = Field(10, ge=1, description="sampler steps (Karras rho=7 grid)")
    t_max: float = Field(0.4, gt=0, le=1, description="truncated start time of the reverse SDE")
    t_min: float = Field(1e-3, gt=0, description="last time of the reverse SDE")
    flow_steps: int = Field(2, ge=1, description="Euler steps of latent flow matching (2: measured better than 1, same cost)")

    @model_validator(mode="after")
    def _check(self) -> ModelSection:
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")
        return self


class TrainingSection(Section):
    """Optimiser, epochs, loss weights and checkpoint cadence (paper: Adam 1e-3, StepLR(100, 0.5))."""

    epochs: int = Field(500, ge=1, description="training epochs")
    pretrain_epochs: int = Field(0, ge=0, description="autoencoder epochs of conventional L-CDM (0 = epochs)")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    lr_step: int = Field(100, ge=1, description="StepLR step size in epochs")
    lr_gamma: float = Field(0.5, gt=0, le=1, description="StepLR decay factor")
    grad_clip: float = Field(1.0, ge=0, description="gradient-norm clip (0 = off)")
    weight_closure_recon: float = Field(100.0, ge=0, description="joint loss weight of ||C - D(E(C))||^2")
    weight_vorticity_recon: float = Field(1.0, ge=0, description="joint loss weight of ||w - D(E(w))||^2")
    weight_latent_moments: float = Field(0.1, ge=0, description="joint loss weight of the C-latent moment penalty")
    detach_closure_latent: bool = Field(
        False, description="joint training: keep the generative loss from shaping the C-encoder (flow matching "
        "can otherwise lower its loss by encoding only the predictable part of C: under-dispersed samples)")
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints")
    max_samples: int = Field(0, ge=0, description="cap on training pairs (0 = all)")
    seed: int = Field(0, description="seed of initialisation, batching and noise")
    out: str = Field("runs/models", description="default output directory of `closure train`")


@dataclass(frozen=True)
class DistillSettings:
    """One-step distillation (:mod:`models.distillation`): the teacher's Euler steps (None: its
    checkpoint's own ``flow_steps``), passes over the training fields, fields per batch, Adam's
    initial learning rate (cosine decay to 0) and the seed of batching and noise. The defaults
    made the shipped ``*-distilled`` checkpoints (``checkpoints/small/README.md``)."""

    teacher_steps: int | None = None
    epochs: int = 100
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class FinetuneSettings:
    """Iterations of Adam, snapshot intervals ``K`` per rollout, rollouts per batch, learning rate,
    closure refresh interval (steps), seed (start states and noise) and the weight of the
    spectrum term. The defaults are the recipe of the shipped ``subpixel/flow-aposteriori``
    (the best of five measured, ``checkpoints/small/README.md``)."""

    iterations: int = 300
    intervals: int = 10
    batch: int = 32
    lr: float = 1e-4
    closure_every: int = 25
    seed: int = 0
    spectrum_weight: float = 10.0
