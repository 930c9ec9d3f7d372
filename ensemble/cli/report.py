"""``closure report RUN_DIR``: plots and a Markdown summary of a run (a thin shell over :mod:`ensemble.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report(
    run_dir: Path = typer.Argument(..., help="an ensemble run directory (closure ensemble launch --out)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="a run to compare with (e.g. no closure)"),
    out: Optional[Path] = typer.Option(None, "--out", help="where the PNGs and summary go (default RUN_DIR/report)"),
) -> None:
    """Write spectrum, PDF, field and metric plots plus summary.md for RUN_DIR."""
    from ensemble.report import make_report

    result = make_report(run_dir, baseline, out)
    if result.partial:
        numbers = result.numbers
        typer.echo(f"partial run: {numbers['members_done']} of {numbers['members_total']} members finished; "
                   "the report covers those")
    typer.echo(result.summary.read_text())
    typer.echo(f"report written to {result.out}: summary.md, summary.json"
               + "".join(f", {p.name}" for p in result.plots))


def register(app: typer.Typer) -> None:
    """Add ``closure report`` to the root app."""
    app.command(name="report")(report)
