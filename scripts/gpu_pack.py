"""Pack what a device session needs and cannot reach: the shippable training data and a dev subset.

The device machine receives the working tree (64 MiB at most, the bundled weights take 34 MB of it) and
nothing beside it, so ../shared/data is copied into ``.gpu/`` (git-ignored; name it in the call's carry):
MSD hippocampus as it is, HC18 with its longer side reduced to 256 px (training crops 192 px), and the dev
sequences a training config's evaluation names (for checkpoint selection only; never trained on).

    python scripts/gpu_pack.py [--config configs/imos-lite-gpu.yaml] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
from pathlib import Path

import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHIPPABLE = ("hippocampus", "hc18")  # CC BY-SA 4.0 and CC BY 4.0: weights trained on them may ship
LONG_SIDE = 256


def _copy_sequence(src: Path, dst: Path, seq: str, shrink: bool) -> None:
    for part in ("JPEGImages", "Annotations"):
        out = dst / part / seq
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted((src / part / seq).glob("*.png")):
            if not shrink:
                shutil.copyfile(f, out / f.name)
                continue
            img = Image.open(f)
            scale = LONG_SIDE / max(img.size)
            if scale < 1:
                size = (round(img.width * scale), round(img.height * scale))
                # masks keep their palette indices: nearest; images: area averaging
                img = img.resize(size, Image.NEAREST if part == "Annotations" else Image.BOX)
            img.save(out / f.name, optimize=True)


def _pack(src: Path, dst: Path, keep: list[str], shrink: tuple[str, ...] = ()) -> int:
    meta = json.loads((src / "meta.json").read_text())
    chosen = {seq: m for seq, m in meta.items() if seq in keep}
    for seq, m in chosen.items():
        _copy_sequence(src, dst, seq, m["dataset"] in shrink)
    (dst / "meta.json").write_text(json.dumps(chosen))
    if (src / "protocols.json").is_file():
        protocols = json.loads((src / "protocols.json").read_text())
        (dst / "protocols.json").write_text(json.dumps({s: p for s, p in protocols.items() if s in chosen}))
    return len(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "imos-lite-gpu.yaml")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    train_meta = json.loads((args.shared / "data" / "train" / "meta.json").read_text())
    train = [s for s, m in train_meta.items() if m["dataset"] in SHIPPABLE]
    n_train = _pack(args.shared / "data" / "train", args.out / "train", train, shrink=("hc18",))
    patterns = yaml.safe_load(args.config.read_text())["eval"]["sequences"].split(",")
    dev_meta = json.loads((args.shared / "data" / "dev" / "meta.json").read_text())
    dev = [s for s in dev_meta if any(fnmatch.fnmatch(s, p.strip()) for p in patterns)]
    n_dev = _pack(args.shared / "data" / "dev", args.out / "dev", dev)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {n_train} training sequences ({', '.join(SHIPPABLE)}), {n_dev} dev sequences, "
          f"{size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
