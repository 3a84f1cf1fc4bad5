"""Frozen descriptions of a model's architecture and of the memory settings.

``ModelSpec`` is what ``model.yaml`` declares under ``architecture``; one
code path builds every member of the family from it. ``MemoryConfig`` uses
XMem's own setting names so that users can pass them unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidInput, ModelError


@dataclass(frozen=True)
class BackboneSpec:
    """A ResNet trunk cut after layer3 (stride 16).

    ``block`` is ``bottleneck`` (ResNet-50 style, expansion 4) or ``basic``
    (ResNet-18 style, expansion 1); ``layers`` the block counts of layer1..3;
    ``width`` the stem width (64 in torchvision's ResNets).
    """

    block: str = "bottleneck"
    layers: tuple[int, int, int] = (3, 4, 6)
    width: int = 64

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def out_dims(self) -> tuple[int, int, int]:
        """Channels of (f16, f8, f4)."""
        e, w = self.expansion, self.width
        return (4 * w * e, 2 * w * e, w * e)


@dataclass(frozen=True)
class AdapterSpec:
    """Conv-Parallel adapters beside each residual block's 3x3 conv."""

    enabled: bool = False
    gamma: int = 4


@dataclass(frozen=True)
class ModelSpec:
    """Every size of the network; XMem's published model is the default."""

    key_backbone: BackboneSpec = BackboneSpec()
    value_backbone: BackboneSpec = BackboneSpec(block="basic", layers=(2, 2, 2), width=64)
    key_dim: int = 64
    value_dim: int = 512
    hidden_dim: int = 64
    decoder_dims: tuple[int, int, int] = (512, 256, 256)
    hidden_mid_dim: int = 256
    value_input_channels: int = 5
    adapters: AdapterSpec = AdapterSpec()
    max_objects: int = 16

    def __post_init__(self) -> None:
        for bb in (self.key_backbone, self.value_backbone):
            if bb.block not in ("bottleneck", "basic"):
                raise ModelError(f"unknown backbone block {bb.block!r}")
        if self.hidden_dim <= 0:
            raise ModelError("hidden_dim must be positive (the sensory memory is required)")
        if self.value_input_channels not in (4, 5):
            raise ModelError("value_input_channels must be 4 or 5")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> ModelSpec:
        data = dict(raw)
        try:
            for name in ("key_backbone", "value_backbone"):
                if name in data:
                    bb = dict(data[name])
                    if "layers" in bb:
                        bb["layers"] = tuple(bb["layers"])
                    data[name] = BackboneSpec(**bb)
            if "adapters" in data:
                data["adapters"] = AdapterSpec(**data["adapters"])
            if "decoder_dims" in data:
                data["decoder_dims"] = tuple(data["decoder_dims"])
            return ModelSpec(**data)
        except TypeError as exc:
            raise ModelError(f"bad architecture in model.yaml: {exc}") from exc


@dataclass(frozen=True)
class MemoryConfig:
    """XMem's inference settings, under XMem's names.

    ``size`` is the shorter side frames are resized to (-1 keeps native). ``max_upscale`` (not an
    XMem setting; 0 = no limit) caps how many times a small frame is enlarged to reach ``size``:
    tiny MRI crops blown up past the scale the model saw in training lose more than they gain.
    ``flow_weight`` (not an XMem setting; 0 = off) fuses each frame's readout with the previous result
    carried by optical flow (engine.flow_fusion) with this weight, by ``flow_mix`` (geometric or
    linear); flow is computed with the frames' shorter side at most ``flow_size`` (0 = the working
    size).
    ``end_fraction`` (0 = off) ends an object whose mass falls below that share of its peak in the pass
    (engine.presence). ``size_rule`` picks the working size from the frames themselves: comma-separated
    ``BOUND:SIZE`` pairs, "frames whose shorter side is at most BOUND are resized to SIZE", the first match
    winning, ``size`` otherwise ("" = always ``size``). ``adapt_steps`` (0 = off) tunes the model's
    adapters and decoder on views of each pass's annotated frame for that many steps before the pass
    runs, stopping early after ``adapt_budget_s`` seconds (0 = no limit; engine.adaptation); the
    decoder is tuned too with ``adapt_decoder``. ``local_sigma`` (0 = off) adds a Gaussian prior on
    where a query reads working memory from, of that width in units of the frame's diagonal
    (memory.manager.locality_prior): look-alike structures far away stop competing (serial-section EM).
    """

    top_k: int = 30
    mem_every: int = 5
    deep_update_every: int = -1
    enable_long_term: bool = True
    enable_long_term_count_usage: bool = True
    min_mid_term_frames: int = 5
    max_mid_term_frames: int = 10
    num_prototypes: int = 128
    max_long_term_elements: int = 10000
    size: int = 480
    max_upscale: int = 0
    flow_weight: float = 0.0
    flow_mix: str = "geometric"
    flow_size: int = 0
    end_fraction: float = 0.0
    size_rule: str = ""
    adapt_steps: int = 0
    adapt_budget_s: float = 0.0
    adapt_decoder: bool = False
    local_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InvalidInput("top_k must be >= 1")
        if self.mem_every < 1:
            raise InvalidInput("mem_every must be >= 1")
        if self.deep_update_every == 0:
            raise InvalidInput("deep_update_every must be negative (sync with memory) or >= 1")
        if self.min_mid_term_frames < 1 or self.max_mid_term_frames <= self.min_mid_term_frames:
            raise InvalidInput("need 1 <= min_mid_term_frames < max_mid_term_frames")
        if self.num_prototypes < 1:
            raise InvalidInput("num_prototypes must be >= 1")
        if self.max_long_term_elements <= self.num_prototypes:
            raise InvalidInput("max_long_term_elements must exceed num_prototypes")
        if self.size != -1 and self.size < 16:
            raise InvalidInput("size must be -1 (native) or >= 16")
        if self.max_upscale < 0:
            raise InvalidInput("max_upscale must be 0 (no limit) or >= 1")
        if not 0.0 <= self.flow_weight <= 1.0:
            raise InvalidInput("flow_weight must be between 0 (off) and 1")
        if self.flow_mix not in ("geometric", "linear"):
            raise InvalidInput(f"flow_mix must be geometric or linear, got {self.flow_mix!r}")
        if self.flow_size != 0 and self.flow_size < 16:
            raise InvalidInput("flow_size must be 0 (the working size) or >= 16")
        if not 0.0 <= self.end_fraction < 1.0:
            raise InvalidInput("end_fraction must be 0 (off) or a fraction below 1")
        parse_size_rule(self.size_rule)
        if self.local_sigma < 0:
            raise InvalidInput("local_sigma must be 0 (off) or a positive fraction of the frame diagonal")
        if not 0 <= self.adapt_steps <= 1000 or self.adapt_budget_s < 0:
            raise InvalidInput("adapt_steps must be 0..1000 and adapt_budget_s >= 0")

    def working_size(self, height: int, width: int) -> int:
        """The shorter side frames of this sequence are resized to: the first ``size_rule`` entry whose
        bound the frames' shorter side does not exceed, else ``size``."""
        short = min(height, width)
        for bound, size in parse_size_rule(self.size_rule):
            if short <= bound:
                return size
        return self.size

    def with_overrides(self, overrides: Mapping[str, str | int | bool]) -> MemoryConfig:
        """Return a copy with ``NAME=VALUE`` overrides parsed to each field's type."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise InvalidInput(f"unknown setting {name!r}; known: {known}")
            changes[name] = _parse_setting(name, value, type(getattr(self, name)))
        return dataclasses.replace(self, **changes)


def parse_size_rule(rule: str) -> tuple[tuple[int, int], ...]:
    """"128:416,64:288" -> ((128, 416), (64, 288)); raises InvalidInput naming the bad entry."""
    pairs = []
    for entry in (e.strip() for e in rule.split(",")):
        if not entry or entry.lower() == "none":
            continue
        bound, sep, size = entry.partition(":")
        try:
            pair = (int(bound), int(size))
        except ValueError:
            pair = (0, 0)
        if not sep or pair[0] < 1 or pair[1] < 16:
            raise InvalidInput(f"size_rule entry {entry!r} is not BOUND:SIZE with BOUND >= 1 and SIZE >= 16")
        pairs.append(pair)
    return tuple(pairs)


def _parse_setting(name: str, value: str | int | bool, kind: type) -> Any:
    if not isinstance(value, str):
        return kind(value)
    if kind is str:
        return value.strip()
    text = value.strip().lower()
    if kind is bool:
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise InvalidInput(f"setting {name} wants a boolean, got {value!r}")
    try:
        return float(text) if kind is float else int(text)
    except ValueError:
        wanted = "a number" if kind is float else "an integer"
        raise InvalidInput(f"setting {name} wants {wanted}, got {value!r}") from None


XMEM_SPEC = ModelSpec()
