"""One-step distillation of a latent flow-matching closure's sampler.

A flow model samples by integrating ``dx/dt = v(x, t | c)`` from latent noise ``z ~ N(0, I)`` at
``t = 0`` to ``t = 1`` in ``K`` Euler steps (:func:`models.flow_matching.flow_euler`): ``K``
latent network calls per sample. Distillation trains a student of the teacher's architecture,
initialised from it, to reach the teacher's end point in one Euler step:

    min  E_{c, z} || z + v_S(z, 0 | c) - Phi_K(z | c) ||^2  /  E || Phi_K(z | c) ||^2

with ``Phi_K`` the teacher's ``K``-step Euler map and ``c`` the encoded vorticity of the
training split (knowledge distillation of a deterministic sampler, Luhman & Luhman 2021). The
map from noise to sample is the teacher's, so the student draws the teacher's samples (per
member, from the same noise) at the cost of one latent network call. The autoencoders stay
frozen: the student encodes the condition and decodes the closure exactly as the teacher does,
and only the latent FNO (both branches) is trained. Only the training split's vorticity is
needed, not its closure.

The student is saved as a flow checkpoint that samples with ``flow_steps = 1`` and records
``distilled_teacher_steps``; its velocity is trained at ``t = 0`` only, so
:func:`models.closures.load_closure` refuses more steps.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import Checkpoint, check_derived_path, load_checkpoint, log_path, save_checkpoint
from models.config import DistillSettings
from models.flow_matching import flow_euler
from models.latent_generative import LatentGenerative
from models.training import progress_bar
from solvers.dataset import dataset_fingerprint, read_dataset
from solvers.errors import UserError

ENCODE_BATCH = 512  # vorticity fields encoded at a time (bounds memory on large datasets)


def teacher_samples(model: LatentGenerative, condition: torch.Tensor, z: torch.Tensor, steps: int) -> torch.Tensor:
    """``Phi_K(z | c)``: the teacher's ``steps``-step Euler end point, ``[B, L, m, m]`` (no gradient)."""
    with torch.no_grad():
        features = model.net.encode_condition(condition)
        return flow_euler(lambda x, t: model.network(x, t, features), z, steps)


def student_samples(model: LatentGenerative, condition: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``z + v_S(z, 0 | c)``: one Euler step, differentiable in the student's weights, ``[B, L, m, m]``."""
    features = model.net.encode_condition(condition)
    return z + model.network(z, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device), features)


def relative_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``mean ||student - teacher||^2 / mean ||teacher||^2`` over the batch (the distillation loss)."""
    return (student - teacher).pow(2).mean() / teacher.pow(2).mean()


def encode_conditions(model: LatentGenerative, normalized_vorticity: torch.Tensor) -> torch.Tensor:
    """Condition latents ``[P, L, m, m]`` of normalised vorticity ``[P, n, n]``, a few hundred at a time."""
    with torch.no_grad():
        return torch.cat([model.vorticity_ae.encode(chunk.unsqueeze(1))
                          for chunk in normalized_vorticity.split(ENCODE_BATCH)])


def distill(source: Path, data_path: Path, out: Path, settings: DistillSettings,
            *, overwrite: bool = False, progress: bool = True) -> Path:
    """Distil the flow closure at ``source`` into a one-step student trained on the training split
    of ``data_path``; write it to ``out`` (never to ``source``) with a JSONL log beside it."""
    source, out, data_path = Path(source), Path(out), Path(data_path)
    check_derived_path(source, out, overwrite, "distilled")
    ckpt = load_checkpoint(source)
    teacher_steps = _teacher_steps(ckpt, source, settings)
    data = read_dataset(data_path, split="train")
    if data.vorticity.shape[-1] != ckpt.grid_size:
        raise UserError(f"{data_path}: grid {data.vorticity.shape[-1]}^2 does not match the checkpoint's "
                        f"{ckpt.grid_size}^2")
    teacher = ckpt.model.eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    student.net.requires_grad_(True)
    fields = torch.from_numpy(np.asarray(data.vorticity, dtype=np.float32)).reshape(-1, ckpt.grid_size, ckpt.grid_size)
    conditions = encode_conditions(teacher, ckpt.normalization.vorticity.normalize(fields))
    if len(conditions) < settings.batch:
        raise UserError(f"--batch {settings.batch}: {data_path} has only {len(conditions)} training fields")
    out.parent.mkdir(parents=True, exist_ok=True)
    log = log_path(out)
    log.unlink(missing_ok=True)
    losses = _optimise(student, teacher, conditions, teacher_steps, settings, log, progress)
    ckpt.model = student.eval()
    ckpt.model_config = ckpt.model_config.model_copy(update={"flow_steps": 1})
    ckpt.metrics = {**ckpt.metrics, "distilled_teacher_steps": teacher_steps, "distill_loss": losses[-1],
                    **{f"distill_{k}": v for k, v in asdict(settings).items() if k != "teacher_steps"}}
    ckpt.dataset_fingerprint = dataset_fingerprint(data_path)
    return save_checkpoint(ckpt, out)


def _teacher_steps(ckpt: Checkpoint, source: Path, settings: DistillSettings) -> int:
    """The teacher's Euler steps: ``settings.teacher_steps``, else the checkpoint's own sampler's."""
    if not isinstance(ckpt.model, LatentGenerative) or ckpt.method != "flow":
        raise UserError(f"{source}: distillation needs a latent flow-matching closure, not {ckpt.method}")
    if "distilled_teacher_steps" in ckpt.metrics:
        raise UserError(f"{source}: already a one-step student (of {ckpt.metrics['distilled_teacher_steps']} "
                        "steps); distil its teacher instead")
    steps = settings.teacher_steps or ckpt.model_config.flow_steps
    if steps < 2:
        raise UserError(f"--teacher-steps {steps}: a one-step student of a one-step sampler changes nothing; use 2 or more")
    return steps


def _optimise(student: LatentGenerative, teacher: LatentGenerative, conditions: torch.Tensor, teacher_steps: int,
              settings: DistillSettings, log: Path, progress: bool) -> list[float]:
    """Adam with a cosine learning-rate decay over ``settings.epochs`` passes; returns each epoch's mean loss."""
    params = list(student.net.parameters())
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    generator = torch.Generator().manual_seed(settings.seed)
    losses: list[float] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("distillation", total=settings.epochs, loss="-") if bar else None
        tic = time.perf_counter()
        for epoch in range(1, settings.epochs + 1):
            order = torch.randperm(len(conditions), generator=generator)
            batch_losses = []
            for rows in order.split(settings.batch):
                if len(rows) < settings.batch:
                    continue  # equal batches: the loss is a mean over the same count every step
                condition = conditions[rows]
                z = torch.randn(condition.shape, generator=generator)
                loss = relative_distance(student_samples(student, condition, z),
                                         teacher_samples(teacher, condition, z, teacher_steps))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                batch_losses.append(float(loss.detach()))
            schedule.step()
            losses.append(float(np.mean(batch_losses)))
            if not np.isfinite(losses[-1]):
                raise UserError(f"distillation diverged in epoch {epoch}; lower --lr")
            with log.open("a") as f:
                f.write(json.dumps({"epoch": epoch, "loss": losses[-1], "seconds": round(time.perf_counter() - tic, 3)}) + "\n")
            if bar:
                bar.update(task, advance=1, loss=f"{losses[-1]:.3g}")
    return losses
