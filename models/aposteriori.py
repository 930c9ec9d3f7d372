"""A-posteriori fine-tuning of a latent closure through the coarse solver.

A-priori training fits ``p(C | w)`` on stored pairs. In a coupled run the coarse solution drifts
away from those pairs, and a closure whose small scales follow the vorticity's (whitened fields,
:mod:`models.normalization`) answers the drift. At the small preset, the whitened subpixel flow
model keeps the spectrum within 7 % over 0.5 time units but overshoots it by 35-58 % after 2,
while the exact closure stays within 1.3 % (``checkpoints/small/README.md``, "Small scales").

This stage trains the closure inside the coupled model it serves. From a stored state
``w(t_i)`` of a training trajectory it integrates the coarse model for ``K`` snapshot intervals.
The closure is sampled every ``closure_every`` steps and held in between, the ensemble's
coupling. It minimises

    L = 1/K sum_{j=1..K} ||N(w_pred(t_{i+j})) - N(w(t_{i+j}))||^2 / ||N(w(t_{i+j})) - N(w(t_i))||^2

by backpropagation through the solver steps and the sampler (one fixed noise draw per sample:
the reparameterised path): the error relative to the true change since the start, the
closure's whole job in a missing-physics model. ``N`` is the checkpoint's own vorticity
normalisation, so a whitened model weighs every shell up to ``k_max`` alike. With
``spectrum_weight > 0`` the loss adds that weight times :func:`spectrum_loss`, the squared log
mismatch of the energy spectrum up to ``k = n/4`` (the spectrum target of the ensemble's
statistics).

The missing-physics coarse step is linear and diagonal in Fourier space, so the cost is the
closure's: one differentiable sample per refresh.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.checkpoint import Checkpoint, check_derived_path, load_checkpoint, log_path, save_checkpoint
from models.config import FinetuneSettings
from models.latent_generative import LatentGenerative
from models.normalization import FieldNormalization
from models.sampling_options import SamplerOptions
from models.training import progress_bar
from solvers.dataset import dataset_fingerprint, read_dataset
from solvers.diagnostics import energy_spectrum
from solvers.errors import UserError
from solvers.factory import build_simulation
from solvers.simulation import Simulation


@dataclass
class CoupledRollout:
    """The coarse model with a learned closure held for ``closure_every`` steps, differentiable.

    ``__call__(w0 [B, n, n], intervals, generator)`` -> vorticity ``[B, intervals, n, n]`` at the
    end of each snapshot interval of ``steps_per_interval`` steps.
    """

    model: LatentGenerative
    vorticity_norm: FieldNormalization
    closure_norm: FieldNormalization
    options: SamplerOptions
    sim: Simulation
    steps_per_interval: int
    closure_every: int

    def closure(self, w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One closure sample in physical units, ``[B, n, n]`` -> ``[B, n, n]``."""
        condition = self.vorticity_norm.normalize(w).unsqueeze(1)

        def noise(like: torch.Tensor) -> torch.Tensor:
            return torch.randn(like.shape, generator=generator)

        return self.closure_norm.denormalize(self.model.draw(condition, noise, self.options)[:, 0])

    def __call__(self, w0: torch.Tensor, intervals: int, generator: torch.Generator) -> torch.Tensor:
        grid, equation = self.sim.equation.grid, self.sim.equation
        w_hat, snapshots = grid.to_spectral(w0), []
        for _ in range(intervals):
            for step in range(self.steps_per_interval):
                if step % self.closure_every == 0:
                    equation.closure_hat = grid.to_spectral(self.closure(grid.to_physical(w_hat), generator))
                w_hat = self.sim.step_fn(w_hat)
            snapshots.append(grid.to_physical(w_hat))
        equation.closure_hat = None
        return torch.stack(snapshots, 1)


def rollout_loss(predicted: torch.Tensor, target: torch.Tensor, start: torch.Tensor,
                 norm: FieldNormalization) -> torch.Tensor:
    """``mean_j ||N(pred_j) - N(target_j)||^2 / ||N(target_j) - N(start)||^2`` over batch and
    snapshots: ``predicted, target [B, K, n, n]``, ``start [B, n, n]``."""
    target_n = norm.normalize(target)
    error = (norm.normalize(predicted) - target_n).pow(2).sum((-2, -1))
    change = (target_n - norm.normalize(start).unsqueeze(1)).pow(2).sum((-2, -1))
    return (error / change).mean()


def spectrum_loss(predicted: torch.Tensor, target: torch.Tensor, grid) -> torch.Tensor:
    """``mean_k (log E_pred(k) - log E_target(k))^2`` over shells ``k = 1..n/4``, snapshots and
    batch (``[B, K, n, n]``): the energy spectrum the ensemble statistics report."""
    kept = slice(1, grid.n // 4 + 1)
    ratio = energy_spectrum(predicted, grid)[..., kept] / energy_spectrum(target, grid)[..., kept]
    return torch.log(ratio).pow(2).mean()


def finetune(source: Path, config, data_path: Path, out: Path, settings: FinetuneSettings,
             *, overwrite: bool = False, progress: bool = True) -> Path:
    """Fine-tune the latent closure at ``source`` a posteriori on the training split of
    ``data_path``; write the result to ``out`` (never to ``source``) with a JSONL log beside it.
    ``config`` is the project config (its [physics], [solver] and [data] sections build the
    coarse model)."""
    source, out, data_path = Path(source), Path(out), Path(data_path)
    check_derived_path(source, out, overwrite, "fine-tuned")
    ckpt = load_checkpoint(source)
    if not isinstance(ckpt.model, LatentGenerative):
        raise UserError(f"{source}: a-posteriori fine-tuning needs a latent closure (lcdm, joint-lcdm, flow), "
                        f"not {ckpt.method}")
    data = read_dataset(data_path, split="train")
    trajectories = torch.from_numpy(np.asarray(data.vorticity, dtype=np.float32))  # [T, S, n, n]
    rollout = _coupled_rollout(ckpt, config, data, settings)
    if trajectories.shape[1] <= settings.intervals:
        raise UserError(f"--intervals {settings.intervals}: {data_path} has only {trajectories.shape[1]} snapshots")
    model = ckpt.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = log_path(out)
    log.unlink(missing_ok=True)
    losses = _optimise(model, rollout, trajectories, optimizer, generator, settings, log, progress)
    ckpt.model = model.eval()
    ckpt.metrics = {**ckpt.metrics, "aposteriori_loss": float(np.mean(losses[-20:])),
                    **{f"aposteriori_{k}": v for k, v in asdict(settings).items()}}
    ckpt.dataset_fingerprint = dataset_fingerprint(data_path)
    return save_checkpoint(ckpt, out)


def _coupled_rollout(ckpt: Checkpoint, config, data, settings: FinetuneSettings) -> CoupledRollout:
    if data.vorticity.shape[-1] != ckpt.grid_size:
        raise UserError(f"dataset grid {data.vorticity.shape[-1]}^2 does not match the checkpoint's {ckpt.grid_size}^2")
    dt = float(data.attrs["dt"])
    steps = int(round(float(np.diff(data.time).mean()) / dt))
    if settings.closure_every < 1 or steps % settings.closure_every:
        raise UserError(f"--closure-every {settings.closure_every} must divide the {steps} steps between snapshots")
    sim = build_simulation(config.physics, config.solver, ckpt.grid_size, model=str(data.attrs["problem"]),
                           noise=False, dt=dt, device="cpu", dtype=torch.float32,
                           filter_width=config.data.filter_width)
    options = SamplerOptions.from_section(ckpt.model_config)
    return CoupledRollout(ckpt.model, ckpt.normalization.vorticity, ckpt.normalization.closure, options, sim,
                          steps, settings.closure_every)


def _optimise(model: nn.Module, rollout: CoupledRollout, trajectories: torch.Tensor, optimizer, generator,
              settings: FinetuneSettings, log: Path, progress: bool) -> list[float]:
    count, snapshots = trajectories.shape[:2]
    losses: list[float] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("a-posteriori", total=settings.iterations, loss="-") if bar else None
        tic = time.perf_counter()
        for iteration in range(1, settings.iterations + 1):
            traj = torch.randint(0, count, (settings.batch,), generator=generator)
            start = torch.randint(0, snapshots - settings.intervals, (settings.batch,), generator=generator)
            w0 = trajectories[traj, start]
            target = torch.stack([trajectories[traj, start + j + 1] for j in range(settings.intervals)], 1)
            predicted = rollout(w0, settings.intervals, generator)
            loss = rollout_loss(predicted, target, w0, rollout.vorticity_norm)
            if settings.spectrum_weight > 0:
                loss = loss + settings.spectrum_weight * spectrum_loss(predicted, target, rollout.sim.equation.grid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            if not np.isfinite(losses[-1]):
                raise UserError(f"fine-tuning diverged at iteration {iteration}; lower --lr")
            with log.open("a") as f:
                f.write(json.dumps({"iteration": iteration, "loss": losses[-1],
                                    "seconds": round(time.perf_counter() - tic, 3)}) + "\n")
            if bar:
                bar.update(task, advance=1, loss=f"{losses[-1]:.4g}")
    return losses
