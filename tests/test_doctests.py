"""The examples in docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "solvers.random", "models.config", "models.samplers", "models.normalization", "models.sde",
    "ensemble.run_config", "ensemble.config", "ensemble.quickstart", "ensemble.run",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
