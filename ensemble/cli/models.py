"""``closure train``, ``closure finetune``, ``closure distill`` and ``closure evaluate``: thin shells
over :mod:`models.training`, :mod:`models.aposteriori`, :mod:`models.distillation` and
:mod:`models.evaluation`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from ensemble.config import load_config
from models.config import METHODS, DistillSettings, FinetuneSettings
from solvers.errors import UserError

logger = logging.getLogger(__name__)


def train_command(
    config: Path = typer.Argument(..., help="TOML config; [model], [training] and [data] are used."),
    method: Optional[str] = typer.Option(None, "--method", help=f"One of {', '.join(METHODS)} (default: [model].method)."),
    data: Optional[Path] = typer.Option(None, "--data", help="HDF5 closure dataset (default: [data].path)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: [training].out)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override [training].epochs."),
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpoint in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint in --out."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override [training].seed."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with the loss."),
) -> None:
    """Train a generative closure on the training split; writes OUT/<method>.safetensors and .log.jsonl."""
    from models.training import train

    cfg = load_config(config)
    method = method or cfg.model.method
    if method not in METHODS:
        raise UserError(f"--method: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    path = train(
        cfg, method, data_path=data, out_dir=out, epochs=epochs, resume=resume, overwrite=overwrite,
        seed=seed, progress=progress,
    )
    typer.echo(f"wrote {path}")


def finetune_command(
    checkpoint: Path = typer.Argument(..., help="A latent closure (lcdm, joint-lcdm, flow) from `closure train`."),
    config: Path = typer.Argument(..., help="TOML config; [physics], [solver] and [data] build the coarse model."),
    out: Path = typer.Option(..., "--out", help="The fine-tuned checkpoint (a new .safetensors file; log beside it)."),
    data: Optional[Path] = typer.Option(None, "--data", help="HDF5 closure dataset (default: [data].path); its training split is used."),
    iterations: int = typer.Option(FinetuneSettings.iterations, "--iterations", min=1, help="Adam iterations."),
    intervals: int = typer.Option(FinetuneSettings.intervals, "--intervals", min=1, help="Snapshot intervals per rollout."),
    batch: int = typer.Option(FinetuneSettings.batch, "--batch", min=1, help="Rollouts per iteration."),
    lr: float = typer.Option(FinetuneSettings.lr, "--lr", min=0.0, help="Adam learning rate."),
    closure_every: int = typer.Option(FinetuneSettings.closure_every, "--closure-every", min=1,
                                      help="Steps between closure samples in the rollouts (held in between)."),
    seed: int = typer.Option(FinetuneSettings.seed, "--seed", help="Seed of start states and closure noise."),
    spectrum_weight: float = typer.Option(FinetuneSettings.spectrum_weight, "--spectrum-weight", min=0.0,
                                          help="Weight of the log energy-spectrum mismatch (shells 1..n/4) in the loss."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with the loss."),
) -> None:
    """Fine-tune a latent closure a posteriori: through the coarse solver, against the training trajectories."""
    from models.aposteriori import finetune

    cfg = load_config(config)
    settings = FinetuneSettings(iterations, intervals, batch, lr, closure_every, seed, spectrum_weight)
    path = finetune(checkpoint, cfg, data or Path(cfg.data.path), out, settings, overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {path}")


def distill_command(
    checkpoint: Path = typer.Argument(..., help="A latent flow-matching closure from `closure train` or `closure finetune`."),
    out: Path = typer.Option(..., "--out", help="The one-step student (a new .safetensors file; log beside it)."),
    data: Path = typer.Option(..., "--data", help="HDF5 closure dataset; the vorticity of its training split is used."),
    teacher_steps: Optional[int] = typer.Option(None, "--teacher-steps", min=2,
                                                help="Euler steps of the teacher sampler (default: the checkpoint's flow_steps)."),
    epochs: int = typer.Option(DistillSettings.epochs, "--epochs", min=1, help="Passes over the training fields."),
    batch: int = typer.Option(DistillSettings.batch, "--batch", min=1, help="Fields per batch."),
    lr: float = typer.Option(DistillSettings.lr, "--lr", min=0.0, help="Initial Adam learning rate (cosine decay to 0)."),
    seed: int = typer.Option(DistillSettings.seed, "--seed", help="Seed of batching and noise."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with the loss."),
) -> None:
    """Distil a flow closure's K-step sampler into one network call: the teacher's samples, to the distillation error, for K - 1 calls fewer."""
    from models.distillation import distill

    settings = DistillSettings(teacher_steps, epochs, batch, lr, seed)
    path = distill(checkpoint, data, out, settings, overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {path}")


def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint from `closure train`."),
    data: Path = typer.Option(..., "--data", help="HDF5 closure dataset; its test split is used."),
    members: int = typer.Option(32, "--members", min=2, help="Closure samples per test pair."),
    samples: int = typer.Option(20, "--samples", min=1, help="Test pairs (evenly spaced over the split)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory of the table (default: the checkpoint's)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="euler_maruyama, ancestral or heun (score models)."),
    steps: Optional[int] = typer.Option(None, "--steps", "--sampler-steps", min=1, help="Sampler steps (score models)."),
    t_max: Optional[float] = typer.Option(None, "--t-max", min=0.0, max=1.0, help="Start time of the sampler."),
    flow_steps: Optional[int] = typer.Option(None, "--flow-steps", min=1, help="Euler steps (flow)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Autoencoders of a latent model: float32 | "
                                            "bfloat16 (models/precision.py; default float32)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the closure samples."),
) -> None:
    """A-priori table on the test split: ensemble-mean error, spectrum error, CRPS, spread-skill, cost."""
    from models.checkpoint import read_metadata
    from models.closures import load_closure
    from models.data import fingerprint, load_pairs
    from models.evaluation import evaluate_closure, markdown_table

    meta = read_metadata(checkpoint)
    closure = load_closure(checkpoint, sampler=sampler, steps=steps, t_max=t_max, flow_steps=flow_steps,
                           precision=precision)
    pairs = load_pairs(data, "test")
    if pairs.grid_size != closure.grid_size:
        raise UserError(f"{data}: grid {pairs.grid_size}^2 does not match the checkpoint's {closure.grid_size}^2")
    if meta.get("dataset_fingerprint") and meta["dataset_fingerprint"] != fingerprint(data):
        typer.echo(f"warning: {data} is not the dataset {checkpoint.name} was trained on", err=True)
    result = evaluate_closure(closure, pairs, members=members, samples=samples, seed=seed)
    result.update(checkpoint=str(checkpoint), data=str(data), dataset_fingerprint=meta.get("dataset_fingerprint", ""))
    table = markdown_table([result])
    out_dir = out or checkpoint.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = checkpoint.name.removesuffix(".safetensors")
    (out_dir / f"{stem}.apriori.md").write_text(table)
    (out_dir / f"{stem}.apriori.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    typer.echo(table)
    typer.echo(f"wrote {out_dir / (stem + '.apriori.md')} and .json")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``finetune``, ``distill`` and ``evaluate`` to the root app."""
    app.command("train")(train_command)
    app.command("finetune")(finetune_command)
    app.command("distill")(distill_command)
    app.command("evaluate")(evaluate_command)
