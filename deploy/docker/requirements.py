#!/usr/bin/env python3
"""Print pyproject.toml's runtime dependencies, one per line, leaving out the named ones.

    python requirements.py pyproject.toml [--without torch onnx onnxruntime] > requirements.txt

Standard library only (it runs in the bare Python image before anything is installed).
"""

from __future__ import annotations

import argparse
import re
import tomllib


def dependencies(pyproject: str, without: set[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return [d for d in deps if re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() not in without]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pyproject")
    ap.add_argument("--without", nargs="*", default=[])
    args = ap.parse_args()
    print(*dependencies(args.pyproject, {w.lower() for w in args.without}), sep="\n")


if __name__ == "__main__":
    main()
