"""Rich progress display of an ensemble run: members done, simulated time, steps/s, ETA.

Member-steps are the unit of work (members x time steps). Finished chunks count fully;
running chunks count by the step their actor last reported. The rate is member-steps per
wall-clock second since the display opened; ETA = remaining member-steps / rate.
"""

from __future__ import annotations

import time as clock
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from ensemble.manifest import Manifest


class RunProgress:
    """Context manager; ``chunk_done`` and ``refresh`` update it (no-op when disabled)."""

    def __init__(self, manifest: Manifest, enabled: bool = True) -> None:
        self.enabled = enabled
        plan = manifest.plan
        self.steps, self.t0, self.dt = plan["n_steps"], plan["t0"], (plan["t_end"] - plan["t0"]) / plan["n_steps"]
        self.members_total = manifest.members_total
        self.members_done = manifest.members_with("done")
        self.work_total = manifest.members_with("pending") * self.steps + manifest.members_with("failed") * self.steps
        self.work_done = 0
        self.running: list[dict[str, Any]] = []
        self.start = clock.perf_counter()
        self.progress: Progress | None = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self.progress = Progress(
                TextColumn("[bold]ensemble"), BarColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True), refresh_per_second=2,
            )
            self.progress.start()
            self.task = self.progress.add_task("run", total=max(self.work_total, 1), info="starting")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self._update()
            self.progress.stop()

    def chunk_done(self, members: int, member_steps: int) -> None:
        self.members_done += members
        self.work_done += member_steps
        self._update()

    def refresh(self, running: list[dict[str, Any]]) -> None:
        self.running = running
        self._update()

    def _update(self) -> None:
        if self.progress is None:
            return
        partial = sum(p.get("members", 0) * p.get("step", 0) for p in self.running)
        work = min(self.work_done + partial, self.work_total)
        elapsed = max(clock.perf_counter() - self.start, 1e-9)
        rate = work / elapsed
        eta = (self.work_total - work) / rate if rate > 0 else float("nan")
        times = [p["time"] for p in self.running if "time" in p]
        sim = f"t = {min(times):.2f}" if times else f"t0 = {self.t0:g}"
        info = (f"members {self.members_done}/{self.members_total} | {sim} | "
                f"{rate:,.0f} member-steps/s | ETA {eta:,.0f} s")
        self.progress.update(self.task, completed=work, info=info)
