"""The default DICOM SEG loads in OHIF's segmentation mode: its own loader (@cornerstonejs/adapters 5.14.0,
createFromDICOMSegBuffer, run under node with a metadata provider of the referenced instances) turns
the SEG of a three-object CT series (shuffled upload, an object absent on two slices) into one labelmap
per referenced image whose pixels equal the propagated labels, with the segments' names and colours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.io.medical.dicom_series import read_dicom_series
from service.io.medical.seg import write_seg
from tests.medical_builders import three_object_ct

OHIF_DIR = Path(os.environ.get("IMOS_OHIF_DIR", "/var/cache/imos/ohif-5.14.0"))
LOADER = Path(__file__).with_name("ohif") / "load_seg.mjs"
NAMES = {1: "Liver", 2: "Tumour", 3: "Vessel"}


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (OHIF_DIR / "node_modules" / "@cornerstonejs" / "adapters").is_dir():
        reason = f"node and OHIF's SEG loader are needed (scripts/install_ohif_adapters.sh into {OHIF_DIR})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install them")
        pytest.skip(reason)
    return node


def test_ohif_loads_the_default_seg_slice_by_slice(tmp_path: Path) -> None:
    node = _node()
    instances, labels = three_object_ct()
    volume = read_dicom_series(instances)
    paths = []
    for i, data in enumerate(instances):
        (tmp_path / f"src{i}.dcm").write_bytes(data)
        paths.append(str(tmp_path / f"src{i}.dcm"))
    (tmp_path / "sources.json").write_text(json.dumps(paths))
    (tmp_path / "seg.dcm").write_bytes(write_seg(volume, labels, "imos-lite", "2", NAMES).data)
    shutil.copy(LOADER, tmp_path / "load_seg.mjs")
    (tmp_path / "node_modules").symlink_to(OHIF_DIR / "node_modules")  # ESM resolves from the script's folder
    done = subprocess.run([node, str(tmp_path / "load_seg.mjs"), str(tmp_path / "seg.dcm"),
                           str(tmp_path / "sources.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: v["label"] for k, v in out["segments"].items()} == {str(k): v for k, v in NAMES.items()}
    assert all(len(v["lab"]) == 3 for v in out["segments"].values())
    # display order t <- the source file the geometry puts there (files were written shuffled)
    sop = [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    order = [sop.index(str(volume.dicom.datasets[d].SOPInstanceUID)) for d, _ in volume.dicom.frame_refs]
    got = {int(img["referencedImageId"].split(":")[1]): np.asarray(img["pixels"]).reshape(48, 56)
           for img in out["images"]}
    assert sorted(got) == list(range(8))
    for t, index in enumerate(order):
        np.testing.assert_array_equal(got[index], labels[t], err_msg=f"slice {t}")
