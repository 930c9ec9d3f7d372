"""Build the network of a closure method from the [model] and [training] config sections."""

from __future__ import annotations

from torch import nn

from models.config import METHODS, ModelSection, TrainingSection
from models.latent_generative import LatentGenerative
from models.physical_diffusion import PhysicalDiffusion
from solvers.errors import UserError


def build_model(method: str, model: ModelSection, training: TrainingSection | None = None) -> nn.Module:
    """``pcdm`` -> :class:`PhysicalDiffusion`; ``lcdm``/``joint-lcdm``/``flow`` -> :class:`LatentGenerative`."""
    if method not in METHODS:
        raise UserError(f"--method: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "pcdm":
        return PhysicalDiffusion(model.physical_width, model.physical_modes, model.physical_layers, model.sde_sigma)
    training = training or TrainingSection()
    return LatentGenerative(
        objective="flow" if method == "flow" else "score",
        joint=method != "lcdm",
        ae_channels=model.ae_channels,
        ae_architecture=model.ae_architecture,
        latent_channels=model.latent_channels,
        width=model.latent_width,
        modes=model.latent_modes,
        layers=model.latent_layers,
        sde_sigma=model.sde_sigma,
        weights=(training.weight_closure_recon, training.weight_vorticity_recon, training.weight_latent_moments),
        detach_closure_latent=training.detach_closure_latent,
    )


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())
