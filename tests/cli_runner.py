"""Run the ``closure`` console entry point in-process, as the tests' user would call it."""

from __future__ import annotations

import sys

from ensemble.cli import main


def run_cli(capsys, monkeypatch, *args):
    """``closure *args`` in-process through the console entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["closure", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
