"""``closure simulate``: the command's shell over :func:`ensemble.simulate.simulate_to_file`
(the contract, outputs and exit codes are in :mod:`ensemble.simulate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXIT_BLOW_UP = 3  # some member became non-finite; the others ran to --t-end


def simulate(
    config: Path = typer.Argument(..., help="TOML config: physics, solver and coupling defaults."),
    init: Path = typer.Option(..., "--init", help="Initial vorticity .npy, [N, N] or [members, N, N]."),
    t_end: float = typer.Option(..., "--t-end", help="Final time T (a multiple of dt)."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (replaced only when the run ends)."),
    physics: str = typer.Option("full", "--physics", help="full (DNS at the field's resolution) or missing."),
    closure: str = typer.Option(
        "none", "--closure",
        help="none; smagorinsky or dynamic-smagorinsky (with --physics full); or a trained .safetensors checkpoint.",
    ),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Stochastic (Q-Wiener) forcing."),
    output_interval: Optional[float] = typer.Option(None, "--output-interval", help="Time between stored fields."),
    dt: Optional[float] = typer.Option(None, "--dt", help="Override [solver].dt."),
    device: Optional[str] = typer.Option(None, "--device", help="Override [solver].device."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Override [solver].precision."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed (default [data].seed)."),
) -> None:
    """Integrate the fields in --init to --t-end and write them to --out (exit 3 on a blow-up)."""
    from ensemble.config import load_config
    from ensemble.simulate import simulate_to_file
    from solvers.allocator import tune_allocator

    overrides = {"solver.dt": dt, "solver.device": device, "solver.precision": precision}
    cfg = load_config(config, overrides)
    tune_allocator()  # fewer page faults per step (solvers/allocator.py)
    result = simulate_to_file(cfg, init, t_end, out, physics=physics, closure=closure, noise=noise,
                              output_interval=output_interval, seed=seed)
    typer.echo(f"wrote {result.path}: vorticity [{result.members}, {result.times}, {result.n}, {result.n}]")
    if result.blow_ups:
        lost = "; ".join(f"member {b.member} at step {b.step} (t = {b.time:g})" for b in result.blow_ups)
        typer.echo(f"error: blow-up (non-finite vorticity): {lost}; partial result in {result.path}", err=True)
        raise typer.Exit(EXIT_BLOW_UP)


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to the root app."""
    app.command("simulate")(simulate)
