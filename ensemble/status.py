"""Human-readable status of a run directory (``closure ensemble status``), from its manifest alone.

Imports neither torch nor the solver, so polling a running ensemble answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ensemble.manifest import Manifest
from ensemble.run_config import sampler_label


def closure_text(config: dict[str, Any], plan: dict[str, Any]) -> str:
    """``"PATH (ancestral x3, t_max 0.4, sampled every 5 steps)"``: the run's closure and how it sampled."""
    ens = config["ensemble"]
    if ens["closure"] == "none":
        return "none"
    label = (plan["sampler"] if "sampler" in plan  # runs launched before the plan recorded it: the override
             else sampler_label(ens.get("sampler"), ens.get("sampler_steps")))
    how = f"{label}, " if label else ""
    return f"{ens['closure']} ({how}sampled every {config['coupling']['closure_every']} steps)"


def status_text(out: str | Path) -> str:
    """Human-readable progress and failures of a run directory."""
    m = Manifest.load(out)
    total = m.members_total
    lines = [
        f"run {m.run_id} in {out}: {'complete' if m.complete else 'incomplete'}",
        f"members: {m.members_with('done')}/{total} done, {m.members_with('failed')} failed, "
        f"{m.members_with('pending')} pending ({len(m.chunks)} chunks)",
        f"time span: {m.plan['t0']:g} -> {m.plan['t_end']:g}, {len(m.plan['times'])} outputs, "
        f"grid {m.plan['n']}, model {m.plan['model']}, closure {closure_text(m.config, m.plan)}",
        f"statistics flushes: {m.flushes}, last update {m.updated}",
        f"blow-ups: {len(m.blowups)}",
    ]
    for b in m.blowups[:20]:
        lines.append(f"  member {b['member']} (chunk {b['chunk']}) non-finite at step {b['step']}, t = {b['time']:g}")
    failed = [c for c in m.chunks if c.errors]
    for c in failed[:20]:
        lines.append(f"  chunk {c.id} ({c.status}, {c.attempts} failed attempts): {c.errors[-1]}")
    return "\n".join(lines)
