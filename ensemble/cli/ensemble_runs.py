"""``closure ensemble launch | resume | status``: a thin shell over :mod:`ensemble.run` and :mod:`ensemble.cluster`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ensemble.cli.options import CLOSURE_EVERY, CLOSURE_PRECISION, SAMPLER, SAMPLER_STEPS

ensemble_app = typer.Typer(help="Ray ensembles of closure-corrected coarse runs, streaming statistics to Parquet.",
                           no_args_is_help=True)


@ensemble_app.command()
def launch(
    config: Path = typer.Argument(..., help="config TOML (e.g. configs/small.toml)"),
    out: Path = typer.Option(..., "--out", help="run directory (must not exist or be empty)"),
    members: Optional[int] = typer.Option(None, "--members", min=1, help="ensemble size"),
    address: Optional[str] = typer.Option(None, "--address", help="auto or HOST:PORT of a Ray cluster (default: local)"),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, help="solver actors"),
    gpus_per_actor: Optional[float] = typer.Option(None, "--gpus-per-actor", min=0.0, help="GPUs per actor (fractional ok)"),
    closure: Optional[str] = typer.Option(None, "--closure", help="none | smagorinsky | dynamic-smagorinsky | CHECKPOINT"),
    closure_mode: Optional[str] = typer.Option(None, "--closure-mode", help="per-actor | shared"),
    closure_every: Optional[int] = CLOSURE_EVERY,
    sampler: Optional[str] = SAMPLER,
    sampler_steps: Optional[int] = SAMPLER_STEPS,
    closure_precision: Optional[str] = CLOSURE_PRECISION,
    init: Optional[str] = typer.Option(None, "--init", help="dataset | random | FIELD.npy"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset for initial conditions and reference"),
    t_end: Optional[float] = typer.Option(None, "--t-end", help="end time (default: start + [ensemble].duration)"),
    output_interval: Optional[float] = typer.Option(None, "--output-interval", min=0.0, help="time between outputs"),
    seed: Optional[int] = typer.Option(None, "--seed", help="run seed"),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", min=1, help="members per batch"),
    snapshots: Optional[bool] = typer.Option(None, "--snapshots/--no-snapshots", help="write member fields to HDF5"),
    in_process: bool = typer.Option(False, "--in-process", help="run without Ray, in this process"),
    dashboard: bool = typer.Option(False, "--dashboard", help="start the Ray dashboard with the local instance"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="rich progress display"),
) -> None:
    """Launch an ensemble run into OUT."""
    from ensemble.cluster import launch_with_early_actors
    from ensemble.config import load_config
    from ensemble.manifest import check_output_dir
    from ensemble.run_config import check_named_files

    overrides = {
        "ensemble.members": members, "ensemble.actors": actors, "ensemble.gpus_per_actor": gpus_per_actor,
        "ensemble.closure": closure, "ensemble.closure_mode": closure_mode, "ensemble.init": init,
        "ensemble.data": data, "ensemble.t_end": t_end, "ensemble.output_interval": output_interval,
        "ensemble.seed": seed, "ensemble.chunk_size": chunk_size, "ensemble.snapshots": snapshots,
        "ensemble.sampler": sampler, "ensemble.sampler_steps": sampler_steps, "coupling.closure_every": closure_every,
        "ensemble.closure_precision": closure_precision,
    }
    cfg = load_config(config, overrides)
    check_output_dir(out)
    check_named_files(cfg.ensemble, cfg.data.path)  # a typo fails here, before Ray starts
    if in_process:
        from ensemble.run import launch as launch_run

        summary = launch_run(cfg, out, in_process=True, progress=progress)
    else:
        summary = launch_with_early_actors(cfg, out, address=address, dashboard=dashboard, progress=progress)
    from ensemble.status import status_text

    typer.echo(status_text(out))
    typer.echo(summary.timing_text())


@ensemble_app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="an interrupted run directory"),
    address: Optional[str] = typer.Option(None, "--address", help="auto or HOST:PORT of a Ray cluster"),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, help="solver actors (default: as launched)"),
    in_process: bool = typer.Option(False, "--in-process", help="run without Ray"),
    dashboard: bool = typer.Option(False, "--dashboard", help="start the Ray dashboard with the local instance"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="rich progress display"),
) -> None:
    """Finish an interrupted run without redoing finished members."""
    from ensemble.run import resume as resume_run
    from ensemble.status import status_text

    summary = resume_run(run_dir, address=address, in_process=in_process, dashboard=dashboard, progress=progress,
                         actors=actors)
    typer.echo(status_text(run_dir))
    typer.echo(summary.timing_text())


@ensemble_app.command()
def status(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Print a run's progress, blow-ups and failures."""
    from ensemble.status import status_text

    typer.echo(status_text(run_dir))


def register(app: typer.Typer) -> None:
    """Add the ``ensemble`` sub-app to the root app."""
    app.add_typer(ensemble_app, name="ensemble")
