"""``closure data generate``: run the DNS of a config and write (or resume) its closure dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ensemble.config import load_config

data_app = typer.Typer(help="DNS closure datasets (HDF5).", no_args_is_help=True)


@data_app.command("generate")
def generate(
    config: Path = typer.Argument(..., help="TOML config; [data], [physics] and [solver] set the DNS."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output HDF5 file (default: [data].path)."),
    trajectories: Optional[int] = typer.Option(None, "--trajectories", min=1, help="Override [data].trajectories."),
    device: Optional[str] = typer.Option(None, "--device", help="Override [solver].device (auto, cpu, cuda[:i])."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Override [solver].precision (float32|float64)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with ETA."),
) -> None:
    """Generate the closure dataset of CONFIG; an interrupted file at the same path is resumed."""
    from solvers.allocator import tune_allocator
    from solvers.dataset import generate_dataset, read_dataset

    overrides = {
        "data.path": None if out is None else str(out),
        "data.trajectories": trajectories,
        "solver.device": device,
        "solver.precision": precision,
    }
    cfg = load_config(config, overrides)
    tune_allocator()  # the DNS allocates spectra of a few hundred KiB every step
    start = time.perf_counter()
    path = generate_dataset(cfg, progress=progress)
    elapsed = time.perf_counter() - start
    data = read_dataset(path, split="all")
    d = cfg.data
    typer.echo(f"wrote {path}")
    typer.echo(
        f"{data.vorticity.shape[0]} trajectories ({d.n_train} train / {d.trajectories - d.n_train} test) x "
        f"{data.time.size} times (t = {data.time[0]:g}..{data.time[-1]:g}) of {d.n_coarse}^2 {d.problem} "
        f"closure data from {d.n_fine}^2 DNS, {elapsed:.1f} s"
    )


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    app.add_typer(data_app, name="data")
