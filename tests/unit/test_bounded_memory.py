"""A 1,000-frame sequence keeps its memory within the configured bounds."""

from __future__ import annotations

import numpy as np

from service.engine.backends.torch_backend import TorchStages
from service.engine.nn.network import ImosNet
from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from tests.conftest import moving_sequence


def test_thousand_frames_stay_bounded(tiny_net: ImosNet) -> None:
    cfg = MemoryConfig(top_k=10, mem_every=2, min_mid_term_frames=2, max_mid_term_frames=4,
                       num_prototypes=8, max_long_term_elements=64, size=-1)
    prop = Propagator(TorchStages(tiny_net), cfg, "tiny:1", max_objects=4)
    base, mask = moving_sequence(50, 32, 2)
    frames = [base[i % 50] for i in range(1000)]
    st, _ = prop.start(frames[0], mask, 0, "forward", len(frames))
    hw = (32 // 16) ** 2
    peak_work = peak_long = tokens_peak = 0
    while not st.finished:
        st, res = prop.advance(st, frames[st.cursor])
        mem = st.core.memory
        peak_work, peak_long = max(peak_work, mem.work.size), max(peak_long, mem.long.size)
        tokens_peak = max(tokens_peak, mem.work.size + mem.long.size)
        assert np.isfinite(res.probs).all()
    assert st.cursor == 1000
    # working memory is consolidated as soon as it reaches max_mid_term_frames frames
    assert peak_work < cfg.max_mid_term_frames * hw
    assert peak_long <= cfg.max_long_term_elements
    assert peak_long == cfg.max_long_term_elements  # long-term memory filled and was pruned
    assert tokens_peak <= cfg.max_long_term_elements + cfg.max_mid_term_frames * hw
