"""Safe checkpoints: safetensors weights with the provenance in the file's JSON metadata.

The metadata (all strings) holds ``method``, ``model_config`` (the [model] section JSON),
``training_config``, ``normalization``, ``grid_size``, ``problem``, ``dataset_fingerprint``,
``metrics``, ``epoch``, ``phase`` and a ``digest``: the sha256 of the other metadata and every
tensor, so an edited file is refused. Nothing is unpickled, ever.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.builders import build_model
from models.config import ModelSection, TrainingSection
from models.normalization import Normalization
from solvers.config import describe_validation_error
from solvers.errors import UserError

FORMAT = "latent-closure-checkpoint"
FORMAT_VERSION = 1
# [model] fields that choose how to sample, not what was trained: they may differ on --resume.
SAMPLER_FIELDS = frozenset({"method", "sampler", "sampler_steps", "t_max", "t_min", "flow_steps"})


@dataclass
class Checkpoint:
    """A loaded (or to-be-saved) closure model with its provenance."""

    model: nn.Module
    method: str
    model_config: ModelSection
    training_config: TrainingSection
    normalization: Normalization
    grid_size: int
    problem: str = "missing_physics"
    dataset_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    phase: str = "done"


def _digest(metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _metadata(ckpt: Checkpoint) -> dict[str, str]:
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "method": ckpt.method,
        "model_config": ckpt.model_config.model_dump_json(),
        "training_config": ckpt.training_config.model_dump_json(),
        "normalization": json.dumps(ckpt.normalization.to_dict(), sort_keys=True),
        "grid_size": str(ckpt.grid_size),
        "problem": ckpt.problem,
        "dataset_fingerprint": ckpt.dataset_fingerprint,
        "metrics": json.dumps(ckpt.metrics, sort_keys=True),
        "epoch": str(ckpt.epoch),
        "phase": ckpt.phase,
    }


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in ckpt.model.state_dict().items()}
    metadata = _metadata(ckpt)
    metadata["digest"] = _digest(metadata, tensors)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def check_derived_path(source: Path, out: Path, overwrite: bool, stage: str) -> None:
    """A stage that writes a new checkpoint ``out`` from ``source`` (``stage``: "fine-tuned",
    "distilled") never writes over its source, nor over another file without ``overwrite``."""
    if out.resolve() == source.resolve():
        raise UserError(f"--out: {out} is the checkpoint being {stage}; choose another file")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")


def log_path(checkpoint: Path) -> Path:
    """``X.safetensors`` -> ``X.log.jsonl`` beside it (the log of a stage that wrote ``X``)."""
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".log.jsonl")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata strings of a checkpoint (no tensors are read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: not a safetensors checkpoint ({exc})") from None


def load_checkpoint(
    path: str | Path,
    *,
    grid_size: int | None = None,
    method: str | None = None,
    model_config: ModelSection | None = None,
    device: torch.device | str | None = None,
) -> Checkpoint:
    """Load and verify a checkpoint; refuse (``UserError``) a tampered file or one whose grid,
    method or [model] network fields differ from the expected ones (when given; the sampler
    defaults in :data:`SAMPLER_FIELDS` may differ)."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a closure checkpoint (metadata 'format' is {meta.get('format')!r})")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: unreadable checkpoint ({exc})") from None
    stored = meta.pop("digest", "")
    if stored != _digest(meta, tensors):
        raise UserError(f"{path}: checkpoint digest mismatch (file modified or corrupted); refusing to load")
    if grid_size is not None and int(meta["grid_size"]) != grid_size:
        raise UserError(f"{path}: checkpoint is for a {meta['grid_size']}^2 grid, expected {grid_size}^2")
    if method is not None and meta["method"] != method:
        raise UserError(f"{path}: checkpoint method is {meta['method']!r}, expected {method!r}")
    try:
        config = ModelSection.model_validate_json(meta["model_config"])
        training = TrainingSection.model_validate_json(meta["training_config"])
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, str(path))) from None
    if model_config is not None:
        diff = sorted(
            k for k in ModelSection.model_fields
            if k not in SAMPLER_FIELDS and getattr(config, k) != getattr(model_config, k)
        )
        if diff:
            raise UserError(f"{path}: checkpoint [model] config differs from the requested one in {diff}")
    model = build_model(meta["method"], config, training)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise UserError(f"{path}: weights do not match the stored [model] config ({first})") from None
    if device is not None:
        model.to(device)
    model.eval()
    return Checkpoint(
        model=model,
        method=meta["method"],
        model_config=config,
        training_config=training,
        normalization=Normalization.from_dict(json.loads(meta["normalization"])),
        grid_size=int(meta["grid_size"]),
        problem=meta.get("problem", "missing_physics"),
        dataset_fingerprint=meta.get("dataset_fingerprint", ""),
        metrics=json.loads(meta.get("metrics", "{}")),
        epoch=int(meta.get("epoch", 0)),
        phase=meta.get("phase", "done"),
    )
