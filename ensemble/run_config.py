"""Typed [ensemble] section of a config file (placeholder, owned by the ensemble runner)."""

from __future__ import annotations

from pydantic import ConfigDict

from solvers.config import Section


class EnsembleSection(Section):
    """Ensemble launch defaults (fields to be defined by the ensemble runner)."""

    model_config = ConfigDict(extra="allow", frozen=True)
