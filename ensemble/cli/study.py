"""``closure study CONFIG`` and ``closure quickstart``: thin shells over :mod:`ensemble.study` and
:mod:`ensemble.quickstart`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ensemble.cli.options import CLOSURE_EVERY, CLOSURE_PRECISION, SAMPLER, SAMPLER_STEPS
from ensemble.methods import METHODS


def study(
    config: Path = typer.Argument(..., help="config TOML (e.g. configs/small.toml)"),
    out: Path = typer.Option(Path("runs/study"), "--out", help="study directory (must not exist or be empty)"),
    members: int = typer.Option(16, "--members", min=1, help="ensemble members per method"),
    methods: str = typer.Option(",".join(METHODS), "--methods", help="comma-separated subset of: " + ", ".join(METHODS)),
    data: Optional[str] = typer.Option(None, "--data", help="dataset whose test trajectories are the initial "
                                       "conditions and reference (default: the config's ensemble.data, else data.path)"),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.0, help="simulated time span "
                                             "(default: the config's ensemble.duration)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="run seed (same for every method)"),
    closure_every: Optional[int] = CLOSURE_EVERY,
    sampler: Optional[str] = SAMPLER,
    sampler_steps: Optional[int] = SAMPLER_STEPS,
    closure_precision: Optional[str] = CLOSURE_PRECISION,
    ray: bool = typer.Option(False, "--ray/--in-process", help="run each ensemble on Ray (default: in this process)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --ray: auto or HOST:PORT of a cluster"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="rich progress display"),
) -> None:
    """A-posteriori comparison of closures on the same initial conditions: study.md, study.json, plots."""
    from ensemble.study import run_study

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    result = run_study(config, out, members=members, methods=chosen, data=data, duration=duration, seed=seed,
                       closure_every=closure_every, sampler=sampler, sampler_steps=sampler_steps,
                       closure_precision=closure_precision, in_process=not ray,
                       address=address, progress=progress, echo=typer.echo)
    typer.echo("")
    typer.echo(result.table.read_text())
    typer.echo(f"study written to {result.out}: study.md, study.json, study_spectra.png, study_errors.png, runs/")


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", help="output directory (must not exist or be empty)"),
    members: int = typer.Option(128, "--members", min=1, help="ensemble members (closure run and baseline)"),
    actors: int = typer.Option(2, "--actors", min=1, help="Ray solver actors"),
    address: Optional[str] = typer.Option(None, "--address", help="auto or HOST:PORT of a Ray cluster (default: local)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="rich progress display"),
) -> None:
    """End to end: joint L-CDM ensemble and a no-closure baseline on Ray, then plots and a summary."""
    from ensemble.quickstart import run_quickstart, summary_text

    result = run_quickstart(out, members=members, actors=actors, address=address, progress=progress,
                            echo=typer.echo)
    typer.echo(summary_text(result))


def register(app: typer.Typer) -> None:
    """Add ``closure study`` and ``closure quickstart`` to the root app."""
    app.command(name="study")(study)
    app.command(name="quickstart")(quickstart)
