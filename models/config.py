"""Typed [model] and [training] sections of a config file (placeholder, owned by models/)."""

from __future__ import annotations

from pydantic import ConfigDict

from solvers.config import Section


class ModelSection(Section):
    """Network sizes and sampler defaults (fields to be defined by the models package)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class TrainingSection(Section):
    """Optimiser, epochs, checkpoints (fields to be defined by the models package)."""

    model_config = ConfigDict(extra="allow", frozen=True)
