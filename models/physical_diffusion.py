"""P-CDM: conditional score-based diffusion directly on the normalised closure field.

Target ``x = (C - mean_C)/std_C`` and condition ``c = (w - mean_w)/std_w``, both
``[B, 1, n, n]``; the score is ``F(x, t, c) / sigma_t`` with ``F`` a conditional FNO.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fno import ConditionalFNO
from models.sampling_options import SamplerOptions
from models.samplers import SAMPLERS, NoiseFn, prior_std, sampler_times
from models.sde import VESDE, DenoisingScoreMatchingLoss, _expand


class PhysicalDiffusion(nn.Module):
    """Score model ``s(x, t | w)`` on the physical grid.

    Args:
        width, modes, layers: conditional FNO size (paper: 40, 6, 4).
        sde_sigma: VE SDE scale ``s``.
    """

    method = "pcdm"

    def __init__(self, width: int = 40, modes: int = 6, layers: int = 4, sde_sigma: float = 30.0) -> None:
        super().__init__()
        self.sde = VESDE(sde_sigma)
        self.score_loss = DenoisingScoreMatchingLoss(self.sde)
        self.net = ConditionalFNO(1, 1, width, modes, layers)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def score(self, x: torch.Tensor, t: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """``F(x, t, c) / sigma_t``: ``[B, 1, n, n]``."""
        return self.net(x, t, features) / _expand(self.sde.sigma(t), x)

    def loss(self, vorticity: torch.Tensor, closure: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Mean DSM loss on normalised ``[B, 1, n, n]`` pairs; returns ``(loss, {"score": ...})``."""
        features = self.net.encode_condition(vorticity)
        t = self.score_loss.sample_time(closure.shape[0], generator)
        noise = torch.randn(closure.shape, generator=generator)
        loss = self.score_loss(lambda x, tt: self.score(x, tt, features), closure, t, noise).mean()
        return loss, {"score": float(loss.detach())}

    @torch.inference_mode()
    def sample(self, vorticity: torch.Tensor, noise: NoiseFn, options: SamplerOptions) -> torch.Tensor:
        """Normalised closure samples ``[M, 1, n, n]`` given normalised ``vorticity [M, 1, n, n]``."""
        features = self.net.encode_condition(vorticity)
        x_T = self.target_mean + prior_std(self.sde, options.t_max, float(self.target_std)) * noise(vorticity)
        times = sampler_times(options.sampler, self.sde, options.t_max, options.t_min, options.steps)
        return SAMPLERS[options.sampler](lambda x, t: self.score(x, t, features), x_T, times, noise, self.sde)
