"""Typed configuration of the physics, the solver and the closure datasets.

Configs are TOML files (``configs/*.toml``) with one table per section; each section is a
frozen pydantic model that forbids unknown keys, so a typo is an error that names the key.
The full file is validated by :class:`ensemble.config.ProjectConfig`; this module holds the
sections the solver needs and the shared TOML/validation helpers.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from solvers.errors import UserError

if TYPE_CHECKING:  # torch is imported where a dtype or device is built: the CLI starts without it
    import torch


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PhysicsConfig(Section):
    """Coefficients of ``dw/dt + u.grad w = nu lap w - r w + f + sigma xi`` and the initial field."""

    viscosity: float = Field(1e-3, gt=0, description="kinematic viscosity nu")
    drag: float = Field(0.0, ge=0, description="linear drag r")
    forcing_amplitude: float = Field(0.1, description="A in f = A (sin 2pi(x+y) + cos 2pi(x+y))")
    noise_sigma: float = Field(5e-5, ge=0, description="Q-Wiener amplitude sigma (0 = deterministic)")
    noise_alpha: float = Field(0.005, ge=0, description="Q-Wiener spectral decay alpha")
    noise_kappa: int = Field(10, ge=1, description="number of summed complex noise fields")
    init_alpha: float = Field(2.5, gt=0, description="initial Gaussian random field exponent")
    init_tau: float = Field(7.0, gt=0, description="initial Gaussian random field length scale")


class SolverConfig(Section):
    """Time stepping, numerical precision and device."""

    dt: float = Field(1e-3, gt=0, description="time step")
    scheme: Literal["cn_euler", "cn_rk3"] = Field("cn_euler", description="IMEX scheme")
    precision: Literal["float32", "float64"] = "float32"
    device: str = Field("auto", description="'auto' (CUDA if available), 'cpu' or 'cuda[:i]'")

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return torch.float64 if self.precision == "float64" else torch.float32

    def torch_device(self) -> torch.device:
        """Resolve ``auto`` to CUDA when available, else CPU."""
        return resolve_device(self.device)


class CouplingConfig(Section):
    """How a closure is coupled to the coarse solver (paper: refresh every 5 steps, hold between)."""

    closure_every: int = Field(5, ge=1, description="steps between fresh closure samples")
    hold_noise_std: float = Field(0.0, ge=0, description="white noise std added to the held term")


class DataConfig(Section):
    """DNS closure dataset: grids, time window, trajectories, output file."""

    problem: Literal["missing_physics", "les"] = Field("missing_physics", description="closure problem")
    n_fine: int = Field(256, ge=8, description="DNS grid size")
    n_coarse: int = Field(64, ge=4, description="coarse grid size")
    filter_width: float | None = Field(None, gt=0, description="LES Gaussian filter width (default 2/n_coarse)")
    trajectories: int = Field(100, ge=1)
    n_train: int = Field(90, ge=1, description="the first n_train trajectories are the training split")
    t_start: float = Field(20.0, ge=0, description="first stored time (spin-up before it)")
    t_end: float = Field(40.0, gt=0, description="last stored time")
    snapshot_interval: float = Field(0.1, gt=0, description="time between stored snapshots")
    batch_size: int = Field(16, ge=1, description="trajectories integrated together")
    seed: int = Field(0, description="run seed; trajectory k uses mix_seed(seed, k)")
    path: str = Field("data/dataset.h5", description="output HDF5 file")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        for key in ("n_fine", "n_coarse"):
            if getattr(self, key) % 2:
                raise ValueError(f"{key} must be even, got {getattr(self, key)}")
        if self.n_fine % self.n_coarse:
            raise ValueError(f"n_coarse ({self.n_coarse}) must divide n_fine ({self.n_fine})")
        if self.n_train > self.trajectories:
            raise ValueError(f"n_train ({self.n_train}) exceeds trajectories ({self.trajectories})")
        if self.t_end <= self.t_start:
            raise ValueError(f"t_end ({self.t_end}) must exceed t_start ({self.t_start})")
        return self


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; otherwise the named device (checked)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {name!r} requested but CUDA is not available on this machine")
    return device


def steps_in(interval: float, dt: float, what: str) -> int:
    """Number of ``dt`` steps in ``interval``; an error unless it is (close to) an integer."""
    steps = round(interval / dt)
    if steps < 1 or abs(steps * dt - interval) > 1e-6 * max(1.0, abs(interval)):
        raise UserError(f"{what} ({interval}) must be a positive multiple of dt ({dt})")
    return steps


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a :class:`UserError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc})") from None


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming the first offending key, e.g. ``small.toml: [solver].dt: must be > 0``."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = f"[{loc[0]}]" + ("." + ".".join(loc[1:]) if len(loc) > 1 else "") if loc else "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict):
        message += f" (got {err['input']!r})"
    return f"{source}: {where}: {message}"
