"""Transplanting a base's transformer into a base for another tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from muse import weights
from muse.transformer import UVit2D
from zoo_build.train_base import BaseTrainConfig, train_base, zoo_transformer_config
from zoo_build.transplant import load_transplanted

# Tensors a base on a halved 8x8 grid of 24 codes has that one on a 4x4 grid of 16 codes
# lacks or shapes otherwise: one row / column per code, and the 2x2 halving.
NEW_TENSORS = [
    "down_block.downsample.conv.kernel",
    "down_block.downsample.norm.scale",
    "embed.embeddings.embedding",
    "mlm_layer.conv2.kernel",
    "up_block.upsample.conv.kernel",
    "up_block.upsample.norm.scale",
]


def _model(codes: int, grid: int, downsample: bool, seed: int, width: int = 32) -> UVit2D:
    cfg = zoo_transformer_config(
        codes, 24, 20, grid=grid, width=width, layers=2, downsample=downsample,
        position_embedding=True,
    )  # fmt: skip
    return UVit2D(cfg, rngs=nnx.Rngs(seed))


def _transplant(source: UVit2D, target: UVit2D, tmp_path) -> tuple[dict, dict, dict]:
    """Saves `source`, transplants it into `target`; checks the six kept `target`'s init.

    Returns:
        (the record of `load_transplanted`, the source's tensors, the target's after it).
    """
    path = tmp_path / "transformer.safetensors"
    weights.save_params(source, path)
    before = weights.flat_params(target)
    record = load_transplanted(target, path)
    after, saved = weights.flat_params(target), weights.flat_params(source)
    assert record["kept_init"] == NEW_TENSORS
    assert record["transplanted_params"] == len(after) - len(NEW_TENSORS)
    for name in after:
        expected = before[name] if name in NEW_TENSORS else saved[name]
        np.testing.assert_array_equal(after[name], expected, err_msg=name)
    return record, saved, after


def test_the_transformer_carries_over_and_the_tokenizer_parts_keep_their_init(tmp_path):
    source = _model(codes=16, grid=4, downsample=False, seed=0)
    trained = weights.flat_params(source)  # a trained position embedding is not zero
    trained["position_embedding"] = np.random.default_rng(0).normal(size=(16, 32))
    weights.assign(source, trained)

    record, _, after = _transplant(source, _model(codes=24, grid=8, downsample=True, seed=1),
                                   tmp_path)  # fmt: skip

    assert record["unused_from_file"] == ["embed.embeddings.embedding", "mlm_layer.conv2.kernel"]
    # The position embedding is the source's: on the halved grid it has 16 cells too.
    assert after["position_embedding"].shape == (16, 32) and after["position_embedding"].any()


def test_a_base_of_another_tokenizer_of_the_same_shapes_gives_only_its_transformer(tmp_path):
    source = _model(codes=24, grid=8, downsample=True, seed=0)

    record, saved, after = _transplant(
        source, _model(codes=24, grid=8, downsample=True, seed=1), tmp_path
    )

    # Every tensor fits by shape, yet the six of the old tokenizer were not copied.
    assert record["unused_from_file"] == NEW_TENSORS
    for name in NEW_TENSORS:
        if saved[name].std() > 0:  # norms start at one in both
            assert not np.array_equal(after[name], saved[name]), name


def test_another_transformer_is_refused(tmp_path):
    path = tmp_path / "transformer.safetensors"
    weights.save_params(_model(codes=16, grid=4, downsample=False, seed=0), path)
    with pytest.raises(weights.WeightsError, match="another transformer"):
        load_transplanted(_model(codes=24, grid=8, downsample=True, seed=1, width=48), path)
    # Without the halving the 8x8 grid's position embedding has 64 cells, not 16.
    with pytest.raises(weights.WeightsError, match="position_embedding"):
        load_transplanted(_model(codes=16, grid=8, downsample=False, seed=1), path)


def test_a_transplant_needs_the_base_it_starts_from(tmp_path):
    config = BaseTrainConfig(width=32, steps=1, batch_size=2, transplant=True)
    with pytest.raises(ValueError, match="init_weights"):
        train_base(tmp_path / "data", None, None, tmp_path / "out", config)
