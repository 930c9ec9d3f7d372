"""Training loop of the generative closures: Adam + StepLR, seeded, resumable, logged.

Outputs in ``out_dir``:

* ``<method>.safetensors``: the model checkpoint (see :mod:`models.checkpoint`), written every
  ``checkpoint_every`` epochs and at the end;
* ``<method>.state.safetensors``: optimiser, scheduler and random state for ``--resume``;
* ``<method>.log.jsonl``: one JSON line per epoch (loss and its parts, lr, seconds).

Conventional L-CDM runs two phases: ``autoencoder`` (reconstruction, ``pretrain_epochs``) then
``score`` on frozen latents (``epochs``); the other methods run one phase of ``epochs``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.builders import build_model, parameter_count
from models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from models.config import METHODS
from models.data import fingerprint, load_pairs
from models.normalization import Normalization
from solvers.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """One stage of training: ``autoencoder``, ``score`` or ``train`` over epochs ``[start, stop)``."""

    name: str
    start: int
    stop: int


def phases(method: str, epochs: int, pretrain_epochs: int) -> list[Phase]:
    """``lcdm``: autoencoder then score phase; others: one ``train`` phase."""
    if method == "lcdm":
        pre = pretrain_epochs or epochs
        return [Phase("autoencoder", 0, pre), Phase("score", pre, pre + epochs)]
    return [Phase("train", 0, epochs)]


def output_paths(out_dir: Path, method: str) -> dict[str, Path]:
    return {
        "checkpoint": out_dir / f"{method}.safetensors",
        "state": out_dir / f"{method}.state.safetensors",
        "log": out_dir / f"{method}.log.jsonl",
    }


def _trainable(model: nn.Module, phase: str) -> list[nn.Parameter]:
    """Freeze everything but the modules trained in ``phase``; return their parameters."""
    if phase == "autoencoder":
        modules = [model.closure_ae, model.vorticity_ae]
    elif phase == "score":
        modules = [model.net]
    else:
        modules = [model]
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _phase_loss(model: nn.Module, phase: str, w: torch.Tensor, c: torch.Tensor, gen: torch.Generator):
    if phase == "autoencoder":
        return model.reconstruction_loss(w, c)
    return model.loss(w, c, gen)


@torch.no_grad()
def _encode_all(model: nn.Module, c: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Closure latents (or the normalised fields for P-CDM) ``[N, ...]``, in the space the generative net sees."""
    if not hasattr(model, "closure_ae"):
        return c
    return torch.cat([model.closure_latent(c[i : i + batch]) for i in range(0, len(c), batch)])


@torch.no_grad()
def _set_latent_standardisation(model: nn.Module, c: torch.Tensor) -> None:
    """Conventional L-CDM: standardise the frozen closure latents with their training mean/std."""
    model.latent_mean.zero_()
    model.latent_std.fill_(1.0)
    z = _encode_all(model, c)
    model.latent_mean.fill_(float(z.mean()))
    model.latent_std.fill_(float(z.std()))


@torch.no_grad()
def _set_target_statistics(model: nn.Module, c: torch.Tensor) -> None:
    """Mean/std of the generative target (sets the sampler's prior ``N(mean, std^2 + sigma^2)``)."""
    y = _encode_all(model, c)
    model.target_mean.fill_(float(y.mean()))
    model.target_std.fill_(float(y.std()))


def _save_state(path: Path, optimizer, scheduler, generator: torch.Generator, epoch: int, phase: str) -> None:
    """Optimiser moments, scheduler and generator state (safetensors + JSON metadata, no pickle)."""
    state = optimizer.state_dict()
    tensors = {"generator": generator.get_state()}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            tensors[f"state.{idx}.{name}"] = torch.as_tensor(value).detach().clone().cpu()
    meta = {
        "param_groups": json.dumps(state["param_groups"]),
        "scheduler": json.dumps({k: v for k, v in scheduler.state_dict().items() if _jsonable(v)}),
        "epoch": str(epoch),
        "phase": phase,
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def _load_state(path: Path, optimizer, scheduler, generator: torch.Generator) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    generator.set_state(tensors.pop("generator"))
    per_param: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        per_param[int(idx)][name] = value
    optimizer.load_state_dict({"state": dict(per_param), "param_groups": json.loads(meta["param_groups"])})
    scheduler.load_state_dict(json.loads(meta["scheduler"]))


def _batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled full batches of indices (the remainder is dropped; one batch if ``n < batch``)."""
    order = torch.randperm(n, generator=gen)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i : i + batch]


def progress_bar(enabled: bool):
    """A rich progress bar (epochs, loss, time left), or a null context when disabled."""
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        transient=False,
    )


def train(
    config,
    method: str,
    *,
    data_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    epochs: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int | None = None,
    progress: bool = True,
) -> Path:
    """Train ``method`` on the dataset's training split; returns the checkpoint path.

    Args:
        config: a :class:`ensemble.config.ProjectConfig` ([model], [training], [data] used).
        method: ``pcdm``, ``lcdm``, ``joint-lcdm`` or ``flow``.
        data_path: HDF5 dataset (default ``config.data.path``).
        out_dir: output directory (default ``config.training.out``).
        epochs: overrides ``training.epochs`` (the total of the last phase).
        resume: continue from ``<method>.state.safetensors`` in ``out_dir``.
        overwrite: allow replacing an existing checkpoint when not resuming.
        seed: overrides ``training.seed``.
        progress: show a rich progress bar.
    """
    if method not in METHODS:
        raise UserError(f"--method: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    tcfg = config.training
    epochs = tcfg.epochs if epochs is None else epochs
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    seed = tcfg.seed if seed is None else seed
    data_path = Path(data_path or config.data.path)
    out_dir = Path(out_dir or tcfg.out)
    paths = output_paths(out_dir, method)
    if not resume and paths["checkpoint"].exists() and not overwrite:
        raise UserError(f"{paths['checkpoint']} exists; pass --resume to continue it or --out for a new directory")
    if resume and not (paths["checkpoint"].exists() and paths["state"].exists()):
        raise UserError(f"--resume: no {paths['checkpoint'].name} with its .state file in {out_dir}")

    pairs = load_pairs(data_path, "train", tcfg.max_samples, seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if resume:
        ckpt = load_checkpoint(paths["checkpoint"], grid_size=pairs.grid_size, method=method, model_config=config.model)
        model, norm, start = ckpt.model.train(), ckpt.normalization, ckpt.epoch
    else:
        model = build_model(method, config.model, tcfg)
        norm = Normalization.fit(pairs.vorticity, pairs.closure, config.model.whiten_up_to,
                                 config.model.whiten_strength)
        start = 0
    w, c = pairs.normalized_tensors(norm)
    meta = dict(method=method, pairs=pairs, norm=norm, config=config, fp=fingerprint(data_path))
    logger.info("training %s (%d parameters) on %d pairs of %d^2", method, parameter_count(model), len(w), pairs.grid_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        paths["log"].unlink(missing_ok=True)  # a fresh (or --overwrite) run starts its own log
    for phase in phases(method, epochs, tcfg.pretrain_epochs):
        if start >= phase.stop:
            continue
        if phase.name == "score" and start == phase.start:
            _set_latent_standardisation(model, c)
        params = _trainable(model, phase.name)
        optimizer = torch.optim.Adam(params, lr=tcfg.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, tcfg.lr_step, tcfg.lr_gamma)
        if resume and start > phase.start:
            _load_state(paths["state"], optimizer, scheduler, generator)
        _run_phase(model, phase, start, w, c, optimizer, scheduler, generator, paths, meta, progress)
        start = phase.stop
    return paths["checkpoint"]


def _run_phase(model, phase, start, w, c, optimizer, scheduler, generator, paths, meta, progress) -> None:
    tcfg = meta["config"].training
    params = [p for g in optimizer.param_groups for p in g["params"]]
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{meta['method']} {phase.name}", total=phase.stop - phase.start, loss="-") if bar else None
        if bar:
            bar.update(task, completed=start - phase.start)
        for epoch in range(start, phase.stop):
            model.train()
            tic, sums, count = time.perf_counter(), defaultdict(float), 0
            for idx in _batches(len(w), tcfg.batch_size, generator):
                loss, parts = _phase_loss(model, phase.name, w[idx], c[idx], generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tcfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
                optimizer.step()
                sums["loss"] += float(loss.detach())
                for k, v in parts.items():
                    sums[k] += v
                count += 1
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            record = {"epoch": epoch + 1, "phase": phase.name, **{k: v / count for k, v in sums.items()}}
            record.update(lr=lr, seconds=round(time.perf_counter() - tic, 3))
            with paths["log"].open("a") as f:
                f.write(json.dumps(record) + "\n")
            if bar:
                bar.update(task, advance=1, loss=f"{record['loss']:.4g}")
            last = epoch + 1 == phase.stop
            if (epoch + 1) % tcfg.checkpoint_every == 0 or last:
                _checkpoint(model, epoch + 1, phase, record, optimizer, scheduler, generator, paths, meta)
            if not torch.isfinite(torch.tensor(record["loss"])):
                raise UserError(f"training diverged at epoch {epoch + 1} (loss {record['loss']}); lower [training].lr")


def _checkpoint(model, epoch, phase, record, optimizer, scheduler, generator, paths, meta) -> None:
    model.eval()
    if phase.name != "autoencoder":
        _set_target_statistics(model, meta["pairs"].normalized_tensors(meta["norm"])[1])
    cfg = meta["config"]
    ckpt = Checkpoint(
        model=model,
        method=meta["method"],
        model_config=cfg.model,
        training_config=cfg.training,
        normalization=meta["norm"],
        grid_size=meta["pairs"].grid_size,
        problem=str(meta["pairs"].attrs.get("problem", "missing_physics")),
        dataset_fingerprint=meta["fp"],
        metrics={k: v for k, v in record.items() if isinstance(v, (int, float))},
        epoch=epoch,
        phase=phase.name,
    )
    save_checkpoint(ckpt, paths["checkpoint"])
    _save_state(paths["state"], optimizer, scheduler, generator, epoch, phase.name)
    logger.info("epoch %d: loss %.4g, checkpoint %s", epoch, record["loss"], paths["checkpoint"])
