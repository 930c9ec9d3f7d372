"""Latent generative closures: two autoencoders plus a score (L-CDM) or velocity (flow) network.

Fields are normalised ``[B, 1, n, n]``. ``E_C, D_C`` encode the closure term and ``E_w`` the
vorticity into ``[B, L, n/4, n/4]`` latents; the generative network acts on the standardised
closure latent ``y = (E_C(C) - latent_mean) / latent_std`` conditioned on ``E_w(w)``:

* ``objective="score"``: VE-SDE score model (conventional or joint L-CDM, Dong, Yang & Wu 2025);
* ``objective="flow"``: flow matching ``x_t = (1-t) z + t y`` (arXiv 2602.17089).

Joint loss (``joint=True``, the paper's):

    L = L_gen + a_C ||C - D_C(E_C(C))||^2 + a_w ||w - D_w(E_w(w))||^2
        + a_m 0.5 mean(var + mean^2 - 1 - log var)       (moments of E_C(C) over the batch)

Conventional L-CDM trains the autoencoders on reconstruction first (:meth:`reconstruction_loss`),
freezes them, sets ``latent_mean/std`` from the training latents, then trains the score
network alone (``joint=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.autoencoder import Autoencoder
from models.flow_matching import FlowMatchingLoss, flow_euler
from models.fno import ConditionalFNO
from models.precision import DTYPES, CastStage, parameter_versions
from models.sampling_options import SamplerOptions
from models.samplers import SAMPLERS, NoiseFn, prior_std, sampler_times
from models.sde import VESDE, DenoisingScoreMatchingLoss, _expand


def latent_moment_penalty(latent: torch.Tensor) -> torch.Tensor:
    """``0.5 mean(var + mean^2 - 1 - log var)`` with mean/var over the batch, per latent entry."""
    mean = latent.mean(0)
    var = latent.var(0, unbiased=False).clamp_min(1e-8)
    return 0.5 * (var + mean**2 - 1 - torch.log(var)).mean()


class LatentGenerative(nn.Module):
    """Autoencoders for ``C`` and ``w`` and a conditional FNO in their latent space.

    Args:
        objective: ``score`` (VE SDE) or ``flow`` (flow matching).
        joint: train autoencoders and generative network together (joint loss) or not.
        ae_channels, latent_channels: autoencoder size.
        ae_architecture: ``upsample`` or ``subpixel`` (:mod:`models.autoencoder`).
        width, modes, layers: latent FNO size (paper: 20, 4, 4).
        sde_sigma: VE SDE scale (score objective).
        weights: ``(a_C, a_w, a_m)`` of the joint loss (paper: 100, 1, 0.1).
        detach_closure_latent: joint loss with ``L_gen`` on ``stop_gradient(E_C(C))``: the
            C-autoencoder learns from reconstruction and moments only. A flow-matching loss can
            otherwise be lowered by an encoder that keeps only the part of ``C`` predictable
            from ``w`` (its loss vanishes for a deterministic target): under-dispersed samples.
    """

    def __init__(
        self,
        objective: str = "score",
        joint: bool = True,
        ae_channels: int = 16,
        ae_architecture: str = "upsample",
        latent_channels: int = 1,
        width: int = 20,
        modes: int = 4,
        layers: int = 4,
        sde_sigma: float = 30.0,
        weights: tuple[float, float, float] = (100.0, 1.0, 0.1),
        detach_closure_latent: bool = False,
    ) -> None:
        super().__init__()
        if objective not in ("score", "flow"):
            raise ValueError(f"objective must be 'score' or 'flow', got {objective!r}")
        self.objective, self.joint, self.weights = objective, joint, weights
        self.detach_closure_latent = detach_closure_latent
        self.method = "flow" if objective == "flow" else ("joint-lcdm" if joint else "lcdm")
        self.closure_ae = Autoencoder(ae_channels, latent_channels, ae_architecture)
        self.vorticity_ae = Autoencoder(ae_channels, latent_channels, ae_architecture)
        self.net = ConditionalFNO(latent_channels, latent_channels, width, modes, layers)
        self.sde = VESDE(sde_sigma)
        self.score_loss = DenoisingScoreMatchingLoss(self.sde)
        self.flow_loss = FlowMatchingLoss()
        self.register_buffer("latent_mean", torch.zeros(()))
        self.register_buffer("latent_std", torch.ones(()))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self._cast_halves: tuple[tuple, CastStage, CastStage] | None = None  # not a submodule: no checkpoint keys

    # --- pieces -----------------------------------------------------------------------------
    def closure_latent(self, closure: torch.Tensor) -> torch.Tensor:
        """Standardised closure latent ``y = (E_C(C) - latent_mean) / latent_std``."""
        return (self.closure_ae.encode(closure) - self.latent_mean) / self.latent_std

    def network(self, x: torch.Tensor, t: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Score ``F/sigma_t`` (score objective) or velocity ``F`` (flow objective)."""
        out = self.net(x, t, features)
        return out / _expand(self.sde.sigma(t), x) if self.objective == "score" else out

    # --- training ---------------------------------------------------------------------------
    def reconstruction_loss(self, vorticity: torch.Tensor, closure: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Autoencoder pre-training loss ``||C - D(E(C))||^2 + ||w - D(E(w))||^2`` (mean squares)."""
        rec_c = F.mse_loss(self.closure_ae(closure), closure)
        rec_w = F.mse_loss(self.vorticity_ae(vorticity), vorticity)
        return rec_c + rec_w, {"rec_closure": float(rec_c.detach()), "rec_vorticity": float(rec_w.detach())}

    def generative_loss(self, y: torch.Tensor, features: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Mean DSM or flow-matching loss on standardised latents ``y``."""
        noise = torch.randn(y.shape, generator=generator)
        fn = self.score_loss if self.objective == "score" else self.flow_loss
        t = fn.sample_time(y.shape[0], generator)
        return fn(lambda x, tt: self.network(x, tt, features), y, t, noise).mean()

    def loss(self, vorticity: torch.Tensor, closure: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Joint loss (``joint``) or the generative loss on frozen latents; returns ``(loss, parts)``."""
        if not self.joint:
            with torch.no_grad():
                y = self.closure_latent(closure)
                condition = self.vorticity_ae.encode(vorticity)
            gen = self.generative_loss(y, self.net.encode_condition(condition), generator)
            return gen, {"generative": float(gen.detach())}
        z_c = self.closure_ae.encode(closure)
        z_w = self.vorticity_ae.encode(vorticity)
        target = z_c.detach() if self.detach_closure_latent else z_c
        gen = self.generative_loss((target - self.latent_mean) / self.latent_std, self.net.encode_condition(z_w), generator)
        rec_c = F.mse_loss(self.closure_ae.decode(z_c), closure)
        rec_w = F.mse_loss(self.vorticity_ae.decode(z_w), vorticity)
        moments = latent_moment_penalty(z_c)
        a_c, a_w, a_m = self.weights
        total = gen + a_c * rec_c + a_w * rec_w + a_m * moments
        parts = {"generative": float(gen.detach()), "rec_closure": float(rec_c.detach()), "rec_vorticity": float(rec_w.detach()), "moments": float(moments.detach())}
        return total, parts

    # --- sampling ---------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, vorticity: torch.Tensor, noise: NoiseFn, options: SamplerOptions) -> torch.Tensor:
        """Normalised closure samples ``[M, 1, n, n]`` given normalised ``vorticity [M, 1, n, n]``
        (:meth:`draw` without autograd)."""
        return self.draw(vorticity, noise, options)

    def draw(self, vorticity: torch.Tensor, noise: NoiseFn, options: SamplerOptions) -> torch.Tensor:
        """:meth:`sample` with autograd: the sample is differentiable in the weights (for a fixed
        noise draw), as a-posteriori fine-tuning needs (:mod:`models.aposteriori`).

        The condition branch runs once; the sampler makes ``steps`` (EM), ``2 steps - 1``
        (Heun) or ``flow_steps`` (flow) latent network calls; one decoder call at the end.
        """
        encode, decode = self.sampling_halves(options.precision)
        condition = encode(vorticity)
        features = self.net.encode_condition(condition)
        fn = lambda x, t: self.network(x, t, features)  # noqa: E731
        if self.objective == "flow":
            y = flow_euler(fn, noise(condition), options.flow_steps)
        else:
            x_T = self.target_mean + prior_std(self.sde, options.t_max, float(self.target_std)) * noise(condition)
            times = sampler_times(options.sampler, self.sde, options.t_max, options.t_min, options.steps)
            y = SAMPLERS[options.sampler](fn, x_T, times, noise, self.sde)
        return decode(y * self.latent_std + self.latent_mean)  # D_C(latent_std y + latent_mean): [M, 1, n, n]

    def sampling_halves(self, precision: str = "float32") -> tuple[nn.Module, nn.Module]:
        """``(E_w, D_C)`` as sampling runs them: the autoencoders' own halves in float32, or frozen
        copies in ``precision`` (:mod:`models.precision`; inference only, rebuilt when a weight
        changes). ``[B, 1, n, n] -> [B, L, n/4, n/4]`` and back, float32 in and out."""
        if precision == "float32":
            return self.vorticity_ae.encoder, self.closure_ae.decoder
        if torch.is_grad_enabled():
            raise ValueError(f"precision {precision!r} samples without gradients only; fine-tune in float32")
        key = (precision, parameter_versions(self.vorticity_ae.encoder), parameter_versions(self.closure_ae.decoder),
               self.latent_std.device)
        if self._cast_halves is None or self._cast_halves[0] != key:
            dtype = DTYPES[precision]
            self._cast_halves = (key, CastStage(self.vorticity_ae.encoder, dtype), CastStage(self.closure_ae.decoder, dtype))
        return self._cast_halves[1], self._cast_halves[2]
