"""Contact sheet of ground truth vs prediction for the model card's failure cases.

    python scripts/failure_sheet.py --dev ../shared/data/dev --pred out/eval/best \
        --sequences isbi2012__stack,brats__BraTS2021_01646 --out docs/images/failure-cases.png

One row per sequence: FRAMES frames spread over the sequence, each shown as ground truth (top
half of the cell) and the saved prediction (bottom half); the given frame is marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from service.engine.preprocess import to_rgb
from service.io.images import decode_image, read_mask
from service.io.medical.preview import overlay

TILE = 160


def _tile(image: np.ndarray) -> Image.Image:
    im = Image.fromarray(image)
    scale = TILE / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.NEAREST)


def _row(dev: Path, pred: Path, seq: str, frames: int, given: str | None) -> Image.Image:
    names = sorted(p.stem for p in (dev / "Annotations" / seq).glob("*.png"))
    picks = [names[i] for i in np.linspace(0, len(names) - 1, frames).round().astype(int)]
    cells = []
    for name in picks:
        image = to_rgb(decode_image((dev / "JPEGImages" / seq / f"{name}.png").read_bytes(), name))
        gt = read_mask(dev / "Annotations" / seq / f"{name}.png")
        guess_path = pred / seq / f"{name}.png"
        guess = read_mask(guess_path) if guess_path.is_file() else np.zeros_like(gt)
        cells.append((name, _tile(overlay(image, gt)), _tile(overlay(image, guess))))
    w, h = max(c[1].width for c in cells), max(c[1].height for c in cells)
    row = Image.new("RGB", (w * len(cells), 2 * h + 16), (0, 0, 0))
    draw = ImageDraw.Draw(row)
    for i, (name, top, bottom) in enumerate(cells):
        row.paste(top, (i * w, 16))
        row.paste(bottom, (i * w, 16 + h))
        draw.text((i * w + 3, 2), f"{seq.split('__')[0]} {name}{' (given)' if name == given else ''}",
                  fill=(255, 255, 255))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dev", type=Path, required=True)
    p.add_argument("--pred", type=Path, required=True, help="folder of <seq>/<frame>.png predictions")
    p.add_argument("--sequences", required=True)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    table = json.loads((args.dev / "protocols.json").read_text())
    rows = []
    for seq in args.sequences.split(","):
        prompts = table[seq]["best"]["prompts"]
        rows.append(_row(args.dev, args.pred, seq, args.frames, str(prompts[0]["frame"]) if prompts else None))
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), (0, 0, 0))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
