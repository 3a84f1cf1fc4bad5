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


def test_the_size_rule_picks_the_working_size_from_the_frames() -> None:
    cfg = MemoryConfig(size=288, size_rule="64:160, 128:416")
    assert cfg.working_size(112, 112) == 416      # an echo loop
    assert cfg.working_size(40, 35) == 160        # the first bound that fits wins
    assert cfg.working_size(512, 512) == 288      # no bound: the model's size
    assert MemoryConfig(size=288).working_size(112, 112) == 288
    assert cfg.with_overrides({"size_rule": ""}).working_size(112, 112) == 288


@pytest.mark.parametrize("rule", ["416", "a:b", "128:8", "0:416", "128:"])
def test_a_bad_size_rule_names_the_entry(rule: str) -> None:
    with pytest.raises(InvalidInput, match="size_rule entry"):
        MemoryConfig().with_overrides({"size_rule": rule})


def test_the_propagator_resizes_by_the_rule(tiny_propagator) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from service.engine.propagate import Propagator
    from tests.conftest import moving_sequence

    cfg = dataclasses.replace(tiny_propagator.config, size=32, size_rule="40:64")
    prop = Propagator(tiny_propagator.stages, cfg, "tiny:1", 4)
    small, mask = moving_sequence(2, 36, 1)
    st, res = prop.start(small[0], mask, 0, "forward", 2)
    assert (st.geometry.rh, st.geometry.rw) == (64, 64) and res.probs.shape[1:] == (36, 36)
    big, mask = moving_sequence(2, 48, 1)
    st, _ = prop.start(big[0], mask, 0, "forward", 2)
    assert (st.geometry.rh, st.geometry.rw) == (32, 32)
