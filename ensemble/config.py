"""The whole config file: every section, loaded from TOML with CLI overrides, validated once.

>>> cfg = ProjectConfig()
>>> cfg.solver.dt
0.001
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ensemble.run_config import EnsembleSection
from models.config import ModelSection, TrainingSection
from solvers.config import (
    CouplingConfig,
    DataConfig,
    PhysicsConfig,
    Section,
    SolverConfig,
    describe_validation_error,
    read_toml,
)
from solvers.errors import UserError


class ProjectConfig(Section):
    """All sections of a config file; missing sections take their defaults."""

    physics: PhysicsConfig = PhysicsConfig()
    solver: SolverConfig = SolverConfig()
    coupling: CouplingConfig = CouplingConfig()
    data: DataConfig = DataConfig()
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    ensemble: EnsembleSection = EnsembleSection()

    def to_json(self) -> str:
        """Canonical JSON, written into every output file for provenance."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def merge_overrides(raw: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Apply ``{"section.key": value}`` overrides (None values are skipped) to a raw TOML dict."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise UserError(f"[{section}] must be a table")
        table[key] = value
    return merged


def validate_config(raw: dict[str, Any], source: str) -> ProjectConfig:
    """Validate a raw dict; errors become a one-line :class:`UserError` naming the key."""
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Load ``path`` (TOML), apply ``{"section.key": value}`` overrides, validate."""
    return validate_config(merge_overrides(read_toml(path), overrides), str(path))
