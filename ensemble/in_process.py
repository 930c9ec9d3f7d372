"""The scheduler's contract without Ray: chunks one after the other in this process.

Kept apart from :mod:`ensemble.scheduler` so that an in-process run never imports Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ensemble.worker import Chunk, ChunkResult

logger = logging.getLogger(__name__)

ResultFn = Callable[[ChunkResult], None]
ErrorFn = Callable[[Chunk, str], None]


def run_in_process(
    run_chunk: Callable[[Chunk], ChunkResult],
    chunks: Sequence[Chunk],
    on_result: ResultFn,
    on_error: ErrorFn | None = None,
    on_failure: ErrorFn | None = None,
    max_attempts: int = 3,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Run ``chunks`` one after the other with ``run_chunk``, each tried up to ``max_attempts``
    times, calling ``on_result``, ``on_error`` and ``on_failure`` as
    :class:`~ensemble.scheduler.ChunkScheduler` does, and ``on_tick`` after every chunk."""
    for chunk in chunks:
        for attempt in range(1, max_attempts + 1):
            try:
                result = run_chunk(chunk)
            except Exception as exc:  # noqa: BLE001 - recorded and retried like a remote failure
                message = f"attempt {attempt} in-process: {type(exc).__name__}: {exc}"
                logger.warning("chunk %d failed (%s)", chunk.id, message)
                if on_error is not None:
                    on_error(chunk, message)
                if attempt == max_attempts and on_failure is not None:
                    on_failure(chunk, message)
                continue
            on_result(result)
            break
        if on_tick is not None:
            on_tick()
