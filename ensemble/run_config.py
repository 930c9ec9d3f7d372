"""Typed [ensemble] section of a config file: launch defaults of ``closure ensemble launch``.

Every field can be overridden on the command line (``--members``, ``--actors``, ...). The
statistics' fixed bins (PDF ranges, spectrum histogram, CRPS sketch) are set here so that
every chunk of every run with the same config reduces into identical, mergeable arrays.

>>> EnsembleSection().members
64
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from models.config import SamplerName
from solvers.config import Section
from solvers.errors import UserError

CLASSICAL = ("none", "smagorinsky", "dynamic-smagorinsky")  # closures named on the command line, not files


def sampler_label(sampler: str | None, steps: int | None) -> str | None:
    """``"ancestral x3"``-style label of a run's sampler override; None when it overrides nothing."""
    if sampler is None and steps is None:
        return None
    return f"{sampler or 'default sampler'}{f' x{steps}' if steps else ''}"


def check_closure_name(spec: str) -> None:
    """UserError unless ``spec`` is a classical closure's name or an existing (checkpoint) file."""
    if spec not in CLASSICAL and not Path(spec).is_file():
        raise UserError(f"--closure: {spec!r} is neither {', '.join(CLASSICAL)} nor an existing checkpoint file")


def check_named_files(section: EnsembleSection, data_path: str) -> None:
    """UserError unless every file the section names exists: the closure checkpoint, the dataset
    (``init = "dataset"``; ``data`` or else ``data_path``) or the ``.npy`` field. A quick check, done
    before a launch joins Ray; reading the files checks the rest."""
    check_closure_name(section.closure)
    if section.init == "dataset" and not Path(section.data or data_path).is_file():
        raise UserError(f"{section.data or data_path}: no such dataset file")
    if section.init not in ("dataset", "random") and not Path(section.init).is_file():
        raise UserError(f"--init: {section.init}: no such file")


class EnsembleSection(Section):
    """Ensemble launch defaults and the statistics' fixed binning."""

    members: int = Field(64, ge=1, description="ensemble size")
    actors: int = Field(2, ge=1, description="solver actors")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved by each solver actor")
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs per solver actor (fractional allowed)")
    chunk_size: int = Field(16, ge=1, description="members integrated together as one batch")
    in_flight_per_actor: int = Field(
        2, ge=1, description="chunks queued per actor (2: the next one waits there while the driver stores the last)")
    max_attempts: int = Field(3, ge=1, description="tries per chunk before it is recorded as failed")
    closure: str = Field("none", description="none | smagorinsky | dynamic-smagorinsky | checkpoint path")
    closure_mode: Literal["per-actor", "shared"] = Field(
        "per-actor",
        description="learned closure: a copy per solver actor (measured faster since the closures got cheap, "
        "benchmarks/ensemble.md) or one closure actor batching all solver actors' requests; classical "
        "closures always run in the solver actors; shared gives the per-actor members to float rounding, not bit for "
        "bit (a batch's size can change a convolution's last bits)",
    )
    sampler: SamplerName | None = Field(
        None, description="score sampler of a learned closure: euler_maruyama | ancestral | heun (default: the "
        "checkpoint's, the paper's euler_maruyama x10 for the shipped ones); flow models ignore it")
    sampler_steps: int | None = Field(None, ge=1, description="its steps (default: the checkpoint's)")
    closure_precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="a latent closure's autoencoders in float32 or bfloat16 (models/precision.py: "
        "~16 % cheaper samples where the hardware has native bfloat16, the same statistics to 3 digits on the bench); "
        "other closures ignore it")
    init: str = Field("dataset", description="dataset | random | path to a .npy field")
    data: str | None = Field(None, description="dataset for init/reference (default: [data].path)")
    duration: float = Field(1.0, gt=0, description="simulated time span when t_end is not given")
    t_end: float | None = Field(None, description="absolute end time (overrides duration)")
    output_interval: float = Field(0.1, gt=0, description="time between statistics outputs")
    seed: int = Field(0, description="run seed; member k uses mix_seed(seed, k)")
    flush_every: int = Field(4, ge=1, description="chunks merged between statistics flushes")
    snapshots: bool = Field(False, description="also write member fields to HDF5 (per chunk)")
    # fixed bins of the statistics
    pdf_bins: int = Field(128, ge=2, description="bins of the vorticity and closure PDFs")
    vorticity_range: float = Field(4.0, gt=0, description="vorticity PDF on [-range, range]")
    closure_range: float = Field(0.5, gt=0, description="closure-term PDF on [-range, range]")
    spectrum_bins_per_decade: int = Field(20, ge=1, description="log bins of E(k) for quantiles")
    spectrum_min: float = Field(1e-20, gt=0, description="lowest E(k) bin edge")
    spectrum_max: float = Field(1e4, gt=0, description="highest E(k) bin edge")
    probes_per_side: int = Field(4, ge=1, description="probe points per side (CRPS, rank histograms)")
    rank_bins: int = Field(10, ge=2, description="bins of the rank histograms")
    crps_bins_per_decade: int = Field(8, ge=1, description="log bins of |x - y| in the CRPS sketch")
    crps_min: float = Field(1e-8, gt=0, description="smallest resolved |x - y| in the CRPS sketch")
    crps_max: float = Field(1e3, gt=0, description="largest resolved |x - y| in the CRPS sketch")

    @model_validator(mode="after")
    def _check(self) -> EnsembleSection:
        if self.spectrum_max <= self.spectrum_min:
            raise ValueError("spectrum_max must exceed spectrum_min")
        if self.crps_max <= self.crps_min:
            raise ValueError("crps_max must exceed crps_min")
        return self
