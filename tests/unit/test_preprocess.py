"""Frame geometry: the shorter side goes to ``size``, padded to multiples of 16; enlargement capped."""

from __future__ import annotations

import pytest

from service.engine.preprocess import plan_geometry
from service.engine.spec import MemoryConfig
from service.errors import InvalidInput


def test_size_sets_the_shorter_side_and_pads_to_16() -> None:
    geo = plan_geometry(512, 384, 288)
    assert (geo.rh, geo.rw) == (384, 288)
    assert (geo.rw + geo.pad[0] + geo.pad[1]) % 16 == 0


def test_max_upscale_caps_enlargement_of_small_frames_only() -> None:
    tiny = plan_geometry(48, 36, 288, max_upscale=4)
    assert (tiny.rh, tiny.rw) == (192, 144)  # 4x, not 8x
    big = plan_geometry(512, 512, 288, max_upscale=4)
    assert big.rh == 288  # shrinking is never capped
    assert plan_geometry(48, 36, 288).rw == 288  # 0 = no cap


def test_max_upscale_is_a_setting_and_is_checked() -> None:
    assert MemoryConfig().with_overrides({"max_upscale": "4"}).max_upscale == 4
    with pytest.raises(InvalidInput, match="max_upscale"):
        MemoryConfig(max_upscale=-1)
