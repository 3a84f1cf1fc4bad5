"""Pieces shared by the ``imos`` subcommands."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from service.engine.repo import default_repo_root

DEFAULT_MODEL = "imos-lite"


def add_repo_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-repo", type=Path, default=None,
                   help="model repository folder (default: $IMOS_MODEL_REPO, else the bundled model_repo/)")


def repo_root(args: argparse.Namespace) -> Path:
    return Path(args.model_repo) if args.model_repo else default_repo_root()


def default_model() -> str:
    return os.environ.get("IMOS_MODEL", DEFAULT_MODEL)


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """['top_k=20', 'size=-1'] -> {'top_k': '20', 'size': '-1'}."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"--set wants NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


class Progress:
    """A one-line progress bar on stderr (silent when quiet or not a terminal and CI)."""

    def __init__(self, total: int, label: str, quiet: bool = False) -> None:
        self.total, self.label, self.quiet = max(total, 1), label, quiet
        self.done, self.start = 0, time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        # Without a terminal, print a line per 10% instead of redrawing.
        tty = sys.stderr.isatty()
        if not tty and self.done < self.total and self.done % max(1, self.total // 10):
            return
        frac = self.done / self.total
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        bar = "#" * int(frac * 30)
        end = "\n" if self.done >= self.total or not tty else ""
        prefix = "\r" if tty else ""
        sys.stderr.write(f"{prefix}{self.label} [{bar:<30}] {self.done}/{self.total} {rate:.1f} frames/s{end}")
        sys.stderr.flush()
