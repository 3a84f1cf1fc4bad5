"""The MONAI Label protocol pieces: the /info/ document the Slicer module accepts, infer params, which painted
slices become annotations (and of which objects), and the multipart answer as the client's own parser reads it."""

from __future__ import annotations

import io
import json
from email.message import Message

import numpy as np
import pytest
from monailabel.client.client import MONAILabelUtils

from service.errors import InvalidInput, InvalidMask
from service.integrations.monai_label import painting, protocol


def test_info_is_a_segmentation_model_without_a_top_level_config() -> None:
    doc = protocol.info_document(["liver", "tumour"], "imos-lite:2")
    assert "config" not in doc
    model = doc["models"][protocol.MODEL]
    assert model["type"] == "segmentation" and model["labels"] == ["liver", "tumour"] and model["dimension"] == 3
    assert all(isinstance(doc[k], dict) for k in ("trainers", "strategies", "scoring", "train_stats"))
    assert protocol.label_names(" liver, ,tumour ") == ["liver", "tumour"]


def test_value_names_from_label_info_or_the_info_labels() -> None:
    assert protocol.value_names(None, ["a", "b"]) == {1: "a", 2: "b"}
    info = [{"name": "background", "id": 0}, {"name": "liver", "id": 1}, {"name": "tumour", "idx": 3},
            {"name": "foreground_scribbles", "id": 4}]
    assert protocol.value_names(info, ["a"]) == {1: "liver", 3: "tumour", 4: ""}
    for bad in ("liver", [{"name": "liver"}], [{"name": "", "id": 1}], [{"name": "x", "id": True}]):
        with pytest.raises(InvalidInput, match="label_info"):
            protocol.value_names(bad, [])


def test_infer_params_check_the_result_extension() -> None:
    assert protocol.infer_params({}, ["a"]).extension == ".nii.gz"
    assert protocol.infer_params({"result_extension": ".NRRD"}, ["a"]).extension == ".nrrd"
    with pytest.raises(InvalidInput, match="result_extension"):
        protocol.infer_params({"result_extension": ".mha"}, ["a"])
    with pytest.raises(InvalidInput, match="not JSON"):
        protocol.parse_params("{oops")
    assert protocol.parse_params(None) == {} and protocol.parse_params('{"a": 1}') == {"a": 1}


def _slices(n: int, marks: dict[int, dict[int, tuple[slice, slice]]]) -> list[np.ndarray]:
    out = [np.zeros((8, 8), np.int64) for _ in range(n)]
    for t, regions in marks.items():
        for value, where in regions.items():
            out[t][where] = value
    return out


def test_a_fresh_image_takes_every_labelled_slice_and_numbers_objects_by_name() -> None:
    frames = _slices(5, {2: {3: (slice(0, 2), slice(0, 2)), 5: (slice(4, 6), slice(4, 6)),
                             7: (slice(6, 8), slice(0, 2))}})
    got = painting.painted_slices(frames, {3: "liver", 5: "tumour", 7: ""}, {}, None)
    assert list(got.masks) == [2] and got.names == {1: "liver", 2: "tumour"}
    assert set(np.unique(got.masks[2])) == {0, 1, 2}
    assert got.masks[2][7, 0] == 0  # the scribble segment is not an object


def test_after_a_result_only_changed_slices_are_annotations() -> None:
    current = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    current[1][0:2, 0:2] = 1
    current[2][0:2, 0:2] = 1
    frames = [c.astype(np.int64) * 4 for c in current]  # the client numbers the liver 4
    frames[2][5:7, 5:7] = 9  # and paints a new segment on slice 2
    got = painting.painted_slices(frames, {4: "liver", 9: "cyst"}, {1: "liver"}, current)
    assert list(got.masks) == [2] and got.names == {1: "liver", 2: "cyst"}
    assert got.masks[2][0, 0] == 1 and got.masks[2][5, 5] == 2
    unchanged = painting.painted_slices([c.astype(np.int64) for c in current], {1: "liver"}, {1: "liver"}, current)
    assert unchanged.masks == {}
    painting.require_painting(unchanged, had_result=True)
    with pytest.raises(InvalidMask, match="no painted slice"):
        painting.require_painting(unchanged, had_result=False)


def test_an_unnamed_value_gets_a_name_of_its_own() -> None:
    got = painting.painted_slices(_slices(2, {0: {6: (slice(0, 3), slice(0, 3))}}), {}, {}, None)
    assert got.names == {1: "label 6"}


def test_the_answer_parses_with_the_clients_own_multipart_reader() -> None:
    body, content_type = protocol.multipart_answer({"label_names": {"liver": 1}}, "imos_x.nrrd", b"NRRD0004\n\0\1")
    headers = Message()
    headers["content-type"] = content_type
    headers["content-length"] = str(len(body))
    form, files = MONAILabelUtils.parse_multipart(io.BytesIO(body), headers)
    assert json.loads(form["params"]) == {"label_names": {"liver": 1}}
    assert files == {"imos_x.nrrd": b"NRRD0004\n\0\1"}
