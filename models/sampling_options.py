"""Sampler settings of a closure: which sampler, how many steps, the truncated time window."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from models.config import ModelSection
from models.precision import PRECISIONS
from models.samplers import SAMPLERS
from solvers.errors import UserError


@dataclass(frozen=True)
class SamplerOptions:
    """``sampler`` (euler_maruyama | ancestral | heun), ``steps``, ``t_max``, ``t_min`` (score models),
    ``flow_steps`` (flow matching) and ``precision`` of a latent model's autoencoder halves (float32 |
    bfloat16, :mod:`models.precision`). Defaults are the paper's: Euler-Maruyama, 10 steps, 0.4 -> 1e-3,
    float32."""

    sampler: str = "euler_maruyama"
    steps: int = 10
    t_max: float = 0.4
    t_min: float = 1e-3
    flow_steps: int = 1
    precision: str = "float32"

    @classmethod
    def from_section(cls, model: ModelSection) -> SamplerOptions:
        return cls(model.sampler, model.sampler_steps, model.t_max, model.t_min, model.flow_steps)

    def with_overrides(self, **overrides: Any) -> SamplerOptions:
        """Replace fields (None values ignored); unknown names or bad values are a :class:`UserError`."""
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise UserError(f"unknown sampler option(s) {sorted(unknown)}; expected {sorted(asdict(self))}")
        new = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        new.check()
        return new

    def check(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"sampler: unknown sampler {self.sampler!r}; expected one of {sorted(SAMPLERS)}")
        if self.steps < 1 or self.flow_steps < 1:
            raise UserError(f"sampler steps must be >= 1 (steps={self.steps}, flow_steps={self.flow_steps})")
        if not 0 < self.t_min < self.t_max <= 1:
            raise UserError(f"sampler times must satisfy 0 < t_min < t_max <= 1 (got {self.t_min}, {self.t_max})")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision: unknown precision {self.precision!r}; expected one of {list(PRECISIONS)}")

    def describe(self, method: str, teacher_steps: int | None = None) -> str:
        """How ``method`` samples: ``"euler_maruyama x10, t_max 0.4"``, ``"flow Euler x2"``, or for a
        one-step student (:mod:`models.distillation`) ``"flow Euler x1, distilled from x2"``; a
        precision other than float32 is appended (``", bfloat16 autoencoders"``)."""
        if method != "flow":
            text = f"{self.sampler} x{self.steps}, t_max {self.t_max:g}"
        else:
            text = f"flow Euler x{self.flow_steps}" + (f", distilled from x{teacher_steps}" if teacher_steps else "")
        return text + (f", {self.precision} autoencoders" if self.precision != "float32" else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
