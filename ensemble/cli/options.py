"""Options shared by several ``closure`` commands (one definition, one help text)."""

from __future__ import annotations

import typer

CLOSURE_EVERY = typer.Option(
    None, "--closure-every", min=1,
    help="solver steps per closure sample, held in between (default: [coupling].closure_every)")
