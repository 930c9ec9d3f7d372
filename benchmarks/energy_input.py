"""Energy a learned closure puts into the resolved flow, a priori, against the exact closure's.

The closure term ``C`` enters the vorticity equation ``dw/dt = ... + C``; with the stream
function ``psi_hat = w_hat / |k|^2`` its contribution to the kinetic energy ``E = <psi w> / 2``
is ``dE/dt = <psi C>`` (mean over cells). For test states of ``data/small.h5`` (every
``--stride``-th snapshot of each test trajectory) this compares ``<psi C>`` of the exact closure
with that of ``--samples`` closure samples per state, for each checkpoint and sampler below:

* mean input: the input of the samples, averaged over samples and states, in units of the
  exact input's standard deviation over states (the exact mean is ~0: the closure mostly moves
  energy between scales);
* spread: the standard deviation of the input over one state's samples, same units;
* correlation: per state, of the sample-mean input with the exact input.

Writes ``benchmarks/energy_input.md``. Run: ``.venv/bin/python benchmarks/energy_input.py``
(about 1 minute on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.closures import load_closure  # noqa: E402
from solvers.dataset import read_dataset  # noqa: E402
from solvers.grid import SpectralGrid  # noqa: E402
from solvers.random import MemberRandom  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints" / "small"
CASES = [  # (checkpoint, sampler overrides)
    ("joint-lcdm.safetensors", {"sampler": "euler_maruyama", "steps": 10}),
    ("joint-lcdm.safetensors", {"sampler": "euler_maruyama", "steps": 50}),
    ("joint-lcdm.safetensors", {"sampler": "ancestral", "steps": 5}),
    ("joint-lcdm.safetensors", {"sampler": "ancestral", "steps": 3}),
    ("flow.safetensors", {}),
    ("subpixel/flow.safetensors", {}),
    ("subpixel/flow-aposteriori.safetensors", {}),
]


def energy_input(psi: torch.Tensor, closure: torch.Tensor) -> torch.Tensor:
    """``<psi C>``, mean over the last two axes: ``[..., n, n] -> [...]``."""
    return (psi * closure).mean(dim=(-2, -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "small.h5", help="closure dataset (test split)")
    parser.add_argument("--stride", type=int, default=10, help="every stride-th snapshot of each test trajectory")
    parser.add_argument("--samples", type=int, default=8, help="closure samples per state")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"error: --data: {args.data} not found (make data-small writes it)")
    data = read_dataset(args.data, split="test")
    n = data.vorticity.shape[-1]
    w = torch.from_numpy(data.vorticity[:, :: args.stride].reshape(-1, n, n).astype(np.float64))
    exact_c = torch.from_numpy(data.closure[:, :: args.stride].reshape(-1, n, n).astype(np.float64))
    grid = SpectralGrid(n, dtype=torch.float64)
    psi = grid.to_physical(grid.to_spectral(w) * grid.inv_k2)
    exact = energy_input(psi, exact_c)  # [states]
    unit = float(exact.std())
    lines = [
        "# Energy input of the closures, a priori",
        "",
        f"{w.shape[0]} test states of `{args.data.name}` (every {args.stride}th snapshot), {args.samples} samples "
        f"each; inputs <psi C> in units of the exact input's std over states ({unit:.2e}); exact mean "
        f"{float(exact.mean()) / unit:+.3f}.",
        "",
        "| checkpoint | sampler | mean input | spread over samples | correlation with exact |",
        "|---|---|---|---|---|",
    ]
    members = w.repeat_interleave(args.samples, 0)
    for name, options in CASES:
        path = CHECKPOINTS / name
        if not path.is_file():
            continue
        closure = load_closure(path, **options)
        samples = closure(members, 0.0, MemberRandom(list(range(members.shape[0])), key=(1, 0)))
        per_sample = energy_input(psi.unsqueeze(1), samples.view(w.shape[0], args.samples, n, n))  # [states, S]
        correlation = np.corrcoef(per_sample.mean(1).numpy(), exact.numpy())[0, 1]
        sampler = ("flow Euler x" + str(closure.options.flow_steps) if closure.method == "flow"
                   else f"{closure.options.sampler} x{closure.options.steps}")
        lines.append(f"| {name} | {sampler} | {float(per_sample.mean()) / unit:+.3f} | "
                     f"{float(per_sample.std(1).mean()) / unit:.3f} | {correlation:.2f} |")
        print(lines[-1], flush=True)
    (ROOT / "benchmarks" / "energy_input.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
