"""What an adapter is made of: its parameter type and the frozen spec of its sizes.

Every adapter weight is an `AdapterParam`, a subclass of `nnx.Param`, so filters split a
model cleanly into what is trained and what stays frozen:

    nnx.state(model, AdapterParam)                           # the adapter weights only
    nnx.Optimizer(model, optax.adam(3e-5), wrt=AdapterParam)  # trains only them
    nnx.state(model, nnx.Not(AdapterParam))                   # the frozen base

`AdapterSpec` names the adapter kind and its sizes; it is what an adapter file records
so the same adapter can be rebuilt before its weights are loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flax import nnx

KINDS = ("r1", "r2", "lora")
DEFAULT_BOTTLENECK = {"r1": 4, "r2": 32}
# The slots of a transformer layer that receive a StyleDrop adapter (Houlsby placement).
POSITIONS = ("adapter_attn", "adapter_ff")


class AdapterParam(nnx.Param):
    """A trainable adapter weight; everything else in the model stays frozen."""


@dataclass(frozen=True)
class AdapterSpec:
    """The kind and sizes of one adapter.

    Attributes:
        kind: "r1" (StyleDrop round 1: bottleneck MLPs whose matrices are shared across
            layers in factorised form), "r2" (StyleDrop round 2: independent bottleneck
            MLPs) or "lora" (low-rank updates of linear layers, PEFT layout).
        bottleneck: Hidden width H of the StyleDrop MLPs (default 4 for r1, 32 for r2;
            None for LoRA).
        rank: LoRA rank r.
        alpha: LoRA alpha; the update is scaled by alpha / rank.
        lora_targets: Linear layers that get a LoRA update, as PyTorch module names or
            name suffixes (PEFT's `target_modules` rule: a module matches when its name
            equals the target or ends with "." + target), e.g. "to_q", "to_out.0",
            "ff.net.0.proj".
    """

    kind: str = "r2"
    bottleneck: int | None = None
    rank: int = 16
    alpha: float = 32.0
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Adapter kind must be one of {KINDS}, got {self.kind!r}.")
        if isinstance(self.lora_targets, str):
            raise ValueError("lora_targets must be a sequence of module names, not a string.")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.kind == "lora":
            object.__setattr__(self, "bottleneck", None)
            if self.rank < 1:
                raise ValueError(f"LoRA rank must be at least 1, got {self.rank}.")
            if not self.lora_targets:
                raise ValueError("A LoRA adapter needs at least one target module name.")
        else:
            if self.bottleneck is None:
                object.__setattr__(self, "bottleneck", DEFAULT_BOTTLENECK[self.kind])
            if self.bottleneck < 1:
                raise ValueError(f"The bottleneck must be at least 1, got {self.bottleneck}.")

    @classmethod
    def from_options(
        cls, kind: str, bottleneck: int | None = None, rank: int | None = None
    ) -> AdapterSpec:
        """The spec a user's options ask for, keeping only the sizes that apply to `kind`.

        Args:
            kind: "r1", "r2" or "lora".
            bottleneck: StyleDrop MLP width (None or 0: the kind's default); ignored for LoRA.
            rank: LoRA rank (None: the default); ignored for r1 / r2.
        """
        sizes: dict[str, int] = {}
        if kind == "lora":
            if rank is not None:
                sizes["rank"] = rank
        elif bottleneck:
            sizes["bottleneck"] = bottleneck
        return cls(kind=kind, **sizes)

    @property
    def lora_scale(self) -> float:
        """The factor alpha / rank applied to the LoRA update."""
        return self.alpha / self.rank

    def parameter_count(
        self,
        num_layers: int = 0,
        dim: int = 0,
        lora_shapes: Sequence[tuple[int, int]] = (),
    ) -> int:
        """Number of adapter weights, from sizes alone (nothing is allocated).

        Args:
            num_layers: Transformer layers holding adapter slots (r1 / r2).
            dim: Width D of the residual stream (r1 / r2).
            lora_shapes: (in_features, out_features) of every LoRA target (LoRA); see
                `adapters.count_parameters` to find them on a model.

        Returns:
            The count; shared r1 matrices are counted once.
        """
        positions = len(POSITIONS)
        if self.kind == "lora":
            if not lora_shapes:
                raise ValueError("LoRA counts need lora_shapes (or adapters.count_parameters).")
            return sum(self.rank * (fan_in + fan_out) for fan_in, fan_out in lora_shapes)
        hidden = self.bottleneck
        if num_layers < 1 or dim < 1:
            raise ValueError("StyleDrop adapter counts need num_layers and dim.")
        if self.kind == "r2":
            # Per layer and position: Wd [D, H] and Wu [H, D].
            return num_layers * positions * 2 * dim * hidden
        # r1, per position: one shared Wd [D, H] and Wu [H, D], plus per layer the
        # offsets od [H] and ou [D].
        return positions * 2 * dim * hidden + num_layers * positions * (hidden + dim)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        values = dataclasses.asdict(self)
        values["lora_targets"] = list(self.lora_targets)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AdapterSpec:
        """Rebuilds a spec from `to_dict` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown adapter spec fields: {unknown}.")
        return cls(**values)
