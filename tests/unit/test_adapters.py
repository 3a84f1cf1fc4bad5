"""Conv-Parallel adapters: layout, parameter count, and alpha = 0 equals the base model."""

from __future__ import annotations

import dataclasses

import torch

from service.engine.checkpoint import infer_spec
from service.engine.nn.network import ImosNet
from service.engine.nn.resnet import ConvParallelAdapter, adapter_parameters
from service.engine.spec import AdapterSpec, ModelSpec
from tests.conftest import randomised, tiny_spec


def _pair() -> tuple[ImosNet, ImosNet]:
    torch.manual_seed(1)
    base = randomised(ImosNet(tiny_spec()))
    adapted = ImosNet(dataclasses.replace(tiny_spec(), adapters=AdapterSpec(enabled=True, gamma=4))).eval()
    missing, unexpected = adapted.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".adapter." in k for k in missing)
    for m in adapted.modules():
        if isinstance(m, ConvParallelAdapter):
            torch.nn.init.normal_(m.conv_pw.weight)
    return base, adapted


def _stages(net: ImosNet) -> list[torch.Tensor]:
    torch.manual_seed(2)
    image = torch.randn(1, 3, 64, 96)
    masks = torch.rand(1, 2, 64, 96)
    with torch.no_grad():
        feats = net.encode_key(image)
        hidden = torch.randn(1, 2, net.spec.hidden_dim, 4, 6)
        value, h2 = net.encode_value(image, feats[3], hidden, masks)
        readout = torch.randn(1, 2, net.spec.value_dim, 4, 6)
        logits, h3 = net.segment(feats[3], feats[4], feats[5], readout, hidden)
    return [*feats, value, h2, logits, h3]


def test_alpha_zero_equals_base() -> None:
    base, adapted = _pair()
    for m in adapted.modules():
        if isinstance(m, ConvParallelAdapter):
            m.alpha.data.zero_()
    for a, b in zip(_stages(base), _stages(adapted)):
        assert torch.equal(a, b)


def test_nonzero_alpha_changes_outputs() -> None:
    base, adapted = _pair()
    diffs = [float((a - b).abs().max()) for a, b in zip(_stages(base), _stages(adapted))]
    assert max(diffs) > 1e-3


def test_adapter_beside_every_block_and_xmem_budget() -> None:
    net = ImosNet(ModelSpec(adapters=AdapterSpec(enabled=True, gamma=4)))
    names = [k for k, m in net.named_modules() if isinstance(m, ConvParallelAdapter)]
    assert len([n for n in names if n.startswith("key_encoder.")]) == 3 + 4 + 6
    assert len([n for n in names if n.startswith("value_encoder.")]) == 2 + 2 + 2
    count = sum(p.numel() for p in adapter_parameters(net))
    assert 150_000 < count < 250_000  # the Conv-Adapter paper's ~0.2 M at gamma = 4
    base_keys = set(ImosNet(ModelSpec()).state_dict())
    assert set(net.state_dict()) - base_keys == {k for k in net.state_dict() if ".adapter." in k}


def test_adapter_spec_inferred_from_weights() -> None:
    spec = dataclasses.replace(tiny_spec(), adapters=AdapterSpec(enabled=True, gamma=2))
    assert infer_spec(ImosNet(spec).state_dict()) == spec
