"""AdapterSpec.from_options: user options become a spec with only the sizes that apply."""

from __future__ import annotations

import pytest

from adapters import AdapterSpec


def test_from_options_keeps_only_the_sizes_of_the_kind():
    assert AdapterSpec.from_options("r1", None, 8) == AdapterSpec(kind="r1")
    assert AdapterSpec.from_options("r1", None, 8).bottleneck == 4
    assert AdapterSpec.from_options("r2", 0, 8).bottleneck == 32  # 0 means the default
    assert AdapterSpec.from_options("r2", 8, 8) == AdapterSpec(kind="r2", bottleneck=8)
    lora = AdapterSpec.from_options("lora", 4, 8)
    assert lora == AdapterSpec(kind="lora", rank=8) and lora.bottleneck is None
    assert AdapterSpec.from_options("lora").rank == AdapterSpec(kind="lora").rank


def test_from_options_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        AdapterSpec.from_options("r3")
