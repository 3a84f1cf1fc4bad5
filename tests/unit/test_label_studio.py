"""Label Studio adapter pieces: its brush RLE, its labelling configs, regions in and results out."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInput, InvalidMask
from service.integrations.label_studio import config, regions, rle

VIDEO = """<View><Labels name="lb" toName="v"><Label value="Polyp"/></Labels>
<Video name="v" value="$video"/><VideoRectangle name="box" toName="v"/></View>"""
PAGES = """<View><Image name="img" valueList="$images"/>
<BrushLabels name="tag" toName="img"><Label value="LV"/><Label value="RV"/></BrushLabels></View>"""


def _bits(*fields: tuple[int, int]) -> list[int]:
    """Pack (value, width) fields MSB first into bytes, zero-padded."""
    s = "".join(f"{v:0{w}b}" for v, w in fields)
    s += "0" * (-len(s) % 8)
    return [int(s[i:i + 8], 2) for i in range(0, len(s), 8)]


def test_rle_round_trip_of_shapes_and_sizes() -> None:
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (7, 5), (64, 96), (300, 300)):
        mask = rng.random((h, w)) > 0.7
        mask[: h // 2] = True  # long runs need the widest length field and splitting
        assert np.array_equal(rle.decode(rle.encode(mask), h, w), mask)


def test_rle_decodes_literal_tokens_as_the_format_defines() -> None:
    """A hand-made stream: 8 values (a 1x2 RGBA image), word size 8, widths 3/4/8/16; one literal token
    of 4 words (pixel 0 outside), then one run of 4 x 255 (pixel 1 inside)."""
    stream = _bits((8, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4),
                   (0, 1), (0, 2), (3, 3), (1, 8), (2, 8), (3, 8), (0, 8),
                   (1, 1), (0, 2), (3, 3), (255, 8))
    assert rle.decode(stream, 1, 2).tolist() == [[False, True]]


def test_rle_refuses_what_is_not_an_rle_of_that_image() -> None:
    good = rle.encode(np.ones((4, 4), bool))
    with pytest.raises(InvalidMask, match="holds 64 values; a 5x4 image needs 80"):
        rle.decode(good, 4, 5)
    with pytest.raises(InvalidMask, match="not Label Studio RLE"):
        rle.decode(good[:7], 4, 4)
    with pytest.raises(InvalidMask, match="not Label Studio RLE"):
        rle.decode([300, 1, 2, 3, 4, 5, 6], 4, 4)


def test_configs_name_the_control_and_media() -> None:
    v = config.parse(VIDEO)
    assert (v.kind, v.from_name, v.to_name, v.data_key, v.paged, v.labels) == ("video", "box", "v", "video", False,
                                                                                ("Polyp",))
    p = config.parse(PAGES)
    assert (p.kind, p.from_name, p.to_name, p.data_key, p.paged, p.labels) == ("images", "tag", "img", "images",
                                                                                True, ("LV", "RV"))
    single = config.parse('<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"/></View>')
    assert single.data_key == "image" and not single.paged


@pytest.mark.parametrize("xml, message", [
    ("<View><Image name='i' value='$image'/><RectangleLabels name='r' toName='i'/></View>", "no control"),
    ("<View><Video name='v' value='$video'/><BrushLabels name='b' toName='v'/></View>", "no control"),
    ("<View><Image name='i' value='https://x/a.png'/><BrushLabels name='b' toName='i'/></View>", "task data"),
    ("<View><Image", "not XML"),
])
def test_configs_we_cannot_answer_are_refused_by_name(xml: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        config.parse(xml)


def test_brush_regions_become_one_object_per_label() -> None:
    target = config.parse(PAGES)
    lv, rv = np.zeros((6, 8), bool), np.zeros((6, 8), bool)
    lv[1:3, 1:4], rv[3:5, 4:7] = True, True
    extra = np.zeros((6, 8), bool)
    extra[0, 7] = True
    items = [{"to_name": "img", "type": "brushlabels", "item_index": 2,
              "value": {"format": "rle", "rle": rle.encode(m), "brushlabels": [name]}}
             for m, name in ((lv, "LV"), (rv, "RV"), (extra, "LV"))]
    got = regions.prompt(target, items, 6, 8, 5)
    assert list(got.masks) == [2] and dict(got.names) == {1: "LV", 2: "RV"}
    assert np.array_equal(got.masks[2] == 1, lv | extra) and np.array_equal(got.masks[2] == 2, rv)
    with pytest.raises(InvalidMask, match="frame 7, outside the task's 5 frames"):
        regions.prompt(target, [{**items[0], "item_index": 6}], 6, 8, 5)
    with pytest.raises(InvalidMask, match="nothing is drawn"):
        regions.prompt(target, [{"to_name": "other", "type": "brushlabels", "value": {}}], 6, 8, 5)


def test_video_boxes_in_percent_become_filled_masks_on_their_frames() -> None:
    target = config.parse(VIDEO)
    item = {"to_name": "v", "type": "videorectangle", "value": {"labels": ["Polyp"], "sequence": [
        {"frame": 3, "x": 25, "y": 50, "width": 50, "height": 25, "enabled": True},
        {"frame": 5, "x": 0, "y": 0, "width": 10, "height": 10, "enabled": False}]}}
    got = regions.prompt(target, [item], 8, 20, 6)
    assert sorted(got.masks) == [2, 4] and dict(got.names) == {1: "Polyp"}
    ys, xs = np.nonzero(got.masks[2])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 5, 5, 14)
    with pytest.raises(InvalidMask, match="empty or outside"):
        bad = {**item, "value": {"sequence": [{"frame": 1, "x": 120, "y": 0, "width": 5, "height": 5}]}}
        regions.prompt(target, [bad], 8, 20, 6)


def test_video_results_track_each_object_and_end_where_it_ends() -> None:
    target = config.parse(VIDEO)
    frames = {t: np.zeros((10, 20), np.uint8) for t in range(5)}
    for t in (1, 2, 4):
        frames[t][2:5, 3 + t:8 + t] = 1
    (track,) = regions.video_results(target, frames, {1: "Polyp"}, 5, 25.0)
    seq = track["value"]["sequence"]
    assert [k["frame"] for k in seq] == [2, 3, 5] and [k["enabled"] for k in seq] == [True, False, False]
    assert seq[0]["x"] == pytest.approx(100 * 4 / 20) and seq[0]["width"] == pytest.approx(100 * 5 / 20)
    assert seq[0]["y"] == pytest.approx(20.0) and seq[0]["height"] == pytest.approx(30.0)
    assert seq[1]["time"] == pytest.approx(2 / 25) and track["value"]["labels"] == ["Polyp"]
    assert (track["from_name"], track["to_name"], track["type"]) == ("box", "v", "videorectangle")


def test_image_results_carry_pages_labels_and_masks() -> None:
    target = config.parse(PAGES)
    frames = {0: np.zeros((4, 6), np.uint8), 1: np.zeros((4, 6), np.uint8)}
    frames[1][1:3, 2:5] = 2
    out = regions.image_results(target, frames, {1: "LV", 2: "RV"})
    assert len(out) == 1 and out[0]["item_index"] == 1 and out[0]["value"]["brushlabels"] == ["RV"]
    assert (out[0]["original_height"], out[0]["original_width"]) == (4, 6)
    assert np.array_equal(rle.decode(out[0]["value"]["rle"], 4, 6), frames[1] == 2)
