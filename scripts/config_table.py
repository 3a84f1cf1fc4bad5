"""Regenerate the configuration table in README.md from the Settings model (between the markers)."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, f in Settings.model_fields.items():
        default = "unset" if f.default is None else f.default
        rows.append(f"| `IMOS_{name.upper()}` | `{default}` | {f.description} |")
    return "\n".join(rows)


def main() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table()}\n{END}", text, flags=re.S)
    readme.write_text(new)


if __name__ == "__main__":
    main()
