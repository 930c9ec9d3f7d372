"""Immutable Parquet files in fixed-schema dataset directories, written atomically.

A ``ParquetWriter`` left open by a crash has no footer and cannot be read, so every file here
is written whole to a temporary name in the same directory and then ``os.replace``'d to its
final, deterministic name (``members/chunk-000012.parquet``, ``stats/flush-000003.parquet``).
Readers therefore only ever see complete files, and writing the same chunk twice (a retry)
replaces a file with identical content: output is exactly-once by construction.

The schemas are documented in ``ensemble/SCHEMA.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = "1"

_F64, _I64, _I32 = pa.float64(), pa.int64(), pa.int32()

MEMBERS_SCHEMA = pa.schema(
    [
        ("member", _I64), ("seed", _I64), ("group", _I32), ("chunk", _I32), ("step", _I64), ("time", _F64),
        ("energy", _F64), ("enstrophy", _F64), ("rel_error", _F64),
    ]
)

BLOWUPS_SCHEMA = pa.schema(
    [("member", _I64), ("seed", _I64), ("group", _I32), ("chunk", _I32), ("step", _I64), ("time", _F64)]
)

_STATS_SCALARS = (
    "mean_field_rms", "spread", "std_field_max", "energy_mean", "energy_std", "enstrophy_mean",
    "enstrophy_std", "vorticity_outside", "closure_outside", "rel_error_mean", "rmse",
    "spread_skill", "crps_vorticity", "crps_vorticity_bound", "crps_energy", "crps_energy_bound",
    "crps_enstrophy", "crps_enstrophy_bound",
)
_STATS_LISTS = ("spectrum_mean", "spectrum_q05", "spectrum_q50", "spectrum_q95", "vorticity_pdf", "closure_pdf")

STATS_SCHEMA = pa.schema(
    [("flush", _I32), ("final", pa.bool_()), ("group", _I32), ("step", _I64), ("time", _F64), ("members", _I64)]
    + [(name, _F64) for name in _STATS_SCALARS]
    + [(name, pa.list_(_F64)) for name in _STATS_LISTS]
    + [("rank_histogram", pa.list_(_I64))]
)

SCHEMAS = {"members": MEMBERS_SCHEMA, "blowups": BLOWUPS_SCHEMA, "stats": STATS_SCHEMA}


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, sync it, then ``os.replace`` it onto
    ``path``: readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(data))


class ParquetSink:
    """Writes tables ``members``, ``blowups`` and ``stats`` under ``root`` (one file per key).

    Args:
        root: the run directory; tables are its sub-directories.
        metadata: key/values stored in every file's schema metadata (e.g. bin edges).
    """

    def __init__(self, root: str | Path, metadata: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.metadata = {"format_version": FORMAT_VERSION, **(metadata or {})}

    def path(self, table: str, key: str) -> Path:
        return self.root / table / f"{key}.parquet"

    def write(self, table: str, key: str, columns: dict[str, Any]) -> Path:
        """Write one immutable file ``<root>/<table>/<key>.parquet`` with the table's fixed schema."""
        schema = SCHEMAS[table].with_metadata({k.encode(): v.encode() for k, v in self.metadata.items()})
        data = pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema)
        path = self.path(table, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: pq.write_table(data, handle))
        return path


def read_table(root: str | Path, table: str) -> pa.Table:
    """Read a whole table of a run directory (empty with the fixed schema if no file yet)."""
    folder = Path(root) / table
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables([pq.read_table(f, schema=SCHEMAS[table]) for f in files])


def latest_stats(root: str | Path) -> pa.Table:
    """Rows of the most recent statistics flush (the statistics of every member merged so far)."""
    folder = Path(root) / "stats"
    files = sorted(folder.glob("flush-*.parquet")) if folder.is_dir() else []
    if not files:
        return STATS_SCHEMA.empty_table()
    return pq.read_table(files[-1], schema=STATS_SCHEMA)
