"""Options shared by several ``closure`` commands (one definition, one help text)."""

from __future__ import annotations

import typer

SAMPLER = typer.Option(
    None, "--sampler", help="score sampler of a learned closure: euler_maruyama | ancestral | heun "
    "(default: [ensemble].sampler, else the checkpoint's)")
SAMPLER_STEPS = typer.Option(None, "--sampler-steps", min=1, help="its steps (default: [ensemble].sampler_steps, "
                             "else the checkpoint's)")
CLOSURE_PRECISION = typer.Option(
    None, "--closure-precision", help="a latent closure's autoencoders: float32 | bfloat16 (~16 % cheaper samples "
    "on hardware with native bfloat16; default: [ensemble].closure_precision)")
CLOSURE_EVERY = typer.Option(
    None, "--closure-every", min=1,
    help="solver steps per closure sample, held in between (default: [coupling].closure_every)")
