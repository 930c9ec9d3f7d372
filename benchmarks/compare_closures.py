"""A-posteriori comparison of closure checkpoints on the bench's ensemble, launched in turn.

Run: ``.venv/bin/python benchmarks/compare_closures.py LABEL=CHECKPOINT[@EVERY] ...`` (``none``
for the bare coarse model). Each contender is the bench's common ensemble (``benchmarks/targets.py``:
the small preset, ``--members`` members from the reference's trajectories, ``--duration`` time
units, in-process, one torch thread), with the closure sampled every ``EVERY`` steps (default 5,
the paper's coupling). The contenders are launched one after another, one launch of each per round,
``--repeats`` rounds, so a slow phase of the machine falls on all of them.

For each it reports the integration time (median and range over the rounds), the final-time
relative error of the ensemble mean and the energy spectrum of the ensemble mean against the
reference's trajectories, ``E(k) / E_ref(k) - 1`` for k = 1..n/4, and its largest magnitude
(target 4's spectrum criterion). ``--reference`` judges them on another file in the shipped
reference's format (its ``test`` split): the figures in ``benchmarks/PERFORMANCE.md`` on other
trajectories came from one. Writes ``compare.json`` and ``compare.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def load_targets():
    """``benchmarks/targets.py`` as a module (its launch plan, reference and spectrum helpers)."""
    spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "benchmarks" / "targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_contender(text: str) -> tuple[str, str, int]:
    """``LABEL=CHECKPOINT[@EVERY]`` -> ``(label, closure, every)``; a clear error for anything else."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=CHECKPOINT[@EVERY]")
    closure, _, every = rest.rpartition("@") if "@" in rest else (rest, "", "5")
    if not every.isdigit() or int(every) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: EVERY must be a positive number of steps, got {every!r}")
    if closure != "none" and not Path(closure).is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: no such checkpoint {closure}")
    return label, closure, int(every)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contenders", nargs="+", type=parse_contender, metavar="LABEL=CHECKPOINT[@EVERY]")
    parser.add_argument("--members", type=int, default=100, help="ensemble members (the bench's 100)")
    parser.add_argument("--duration", type=float, default=0.5, help="simulated time units (the bench's 0.5)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of launches (medians of the times)")
    parser.add_argument("--reference", type=Path, help="reference file (default: checkpoints/small/reference.h5)")
    parser.add_argument("--out", type=Path, help="folder for compare.json and compare.md (default: print only)")
    args = parser.parse_args(argv)
    for name, value in (("--members", args.members), ("--repeats", args.repeats), ("--duration", args.duration)):
        if not value > 0:
            parser.error(f"{name} must be positive, got {value}")
    labels = [label for label, _, _ in args.contenders]
    if len(set(labels)) != len(labels):
        parser.error(f"labels must differ, got {labels}")
    if args.reference is not None and not args.reference.is_file():
        parser.error(f"--reference: no such file {args.reference}")
    taken = [args.out / name for name in ("compare.json", "compare.md")] if args.out else []
    if any(path.exists() for path in taken):
        parser.error(f"--out {args.out}: holds an earlier comparison (compare.json/.md); choose a new folder")
    args.short_repeats = args.repeats  # every contender gets the same rounds
    return args


def compare(args: argparse.Namespace, targets) -> list[dict[str, Any]]:
    """Launch the contenders in turn; one row of figures per contender, in the order given."""
    contenders = {label: (closure, every, {}) for label, closure, every in args.contenders}
    workdir = Path(tempfile.mkdtemp(prefix="compare-closures-"))
    try:
        runs = targets.run_side_by_side(workdir, contenders, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for label, closure, every in args.contenders:
        run = runs[label]
        ref = targets.reference_spectrum(run["final_time"], run["reference"])
        k_max = (len(ref) - 1) // 2  # n/4: half the coarse Nyquist wavenumber
        shells = np.asarray(run["spectrum"])[1 : k_max + 1] / ref[1 : k_max + 1] - 1
        rows.append({"label": label, "closure": closure, "closure_every": every,
                     "integration_s": run["compute_s"], "integration_span_s": list(run["compute_span_s"]),
                     "rel_error_mean": run["rel_error"], "spectrum_max_rel_error": targets.spectrum_error(run, k_max),
                     "spectrum_rel_error_per_shell": [round(float(x), 4) for x in shells],
                     "spectrum_mean": [float(x) for x in run["spectrum"]],  # E(k) of the ensemble mean, k = 0..
                     "final_time": run["final_time"], "reference": run["reference"]})
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, machine: str) -> str:
    reference = rows[0]["reference"]
    lines = [f"Machine: {machine}.", "", f"{args.members} members, {args.duration:g} time units, in-process, one thread, reference "
             f"`{reference}`; medians of {args.repeats} rounds launched in turn.", "",
             "| contender | every | integration s (range) | error of the mean | spectrum, max | E / E_ref - 1, k = 1.. |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r["integration_span_s"]
        shells = ", ".join(f"{x:+.3f}" for x in r["spectrum_rel_error_per_shell"])
        every = "-" if r["closure"] == "none" else r["closure_every"]
        lines.append(f"| {r['label']} | {every} | {r['integration_s']:.3f} ({low:.3f}–{high:.3f}) | "
                     f"{r['rel_error_mean']:.4f} | {r['spectrum_max_rel_error']:.3f} | {shells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    targets = load_targets()
    targets.tune_allocator()  # as the bench and the CLI run
    torch.set_num_threads(targets.THREADS)
    rows = compare(args, targets)
    text = markdown(rows, args, f"{targets.cpu_model()}, {torch.backends.cpu.get_cpu_capability()}")
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "compare.md").write_text(text)
        print(f"wrote {args.out / 'compare.json'} and compare.md")


if __name__ == "__main__":
    main()
