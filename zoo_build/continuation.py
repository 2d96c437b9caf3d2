"""Continuing an earlier `zoo build` from the zoo it returned (`zoo build --init ZOO`).

A lent GPU comes for 15 minutes at a time, and its machine keeps nothing between loans:
what a build leaves is the zoo it returned (`zoo unshard` puts it back together). A later
loan continues that zoo instead of starting again: its tokenizer is kept as it is (every
image keeps its tokens, so the base stays valid for it), its text encoder is the one its
base learned on, and its base starts the new base run, with a fresh warm-up and schedule,
as `zoo train base --init` continues a base on CPU. The whole budget then goes to the base.

This module reads such a zoo and checks that the build's settings can continue it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from muse.config import ModelConfig, TransformerConfig, VQConfig
from muse.folder_layout import MODEL_JSON, TEXT_ENCODER_DIR, TRANSFORMER_FILE, VQ_FILE
from styledrop.zoo.embedded import JUDGE_DIR, MANIFEST


class ContinuationError(ValueError):
    """A zoo that cannot be continued, or settings that do not fit it; says which and why."""


@dataclass(frozen=True)
class EarlierZoo:
    """What a continued build takes from the zoo it continues.

    Attributes:
        folder: The zoo folder.
        vq: Its tokenizer's sizes.
        transformer: Its base's sizes.
        base_runs: Base training runs in its manifest's lineage (1: one fresh build).
        has_judge: Whether it holds judge/.
    """

    folder: Path
    vq: VQConfig
    transformer: TransformerConfig
    base_runs: int
    has_judge: bool

    @property
    def base_weights(self) -> Path:
        """The base's weights, which the new base run starts from."""
        return self.folder / TRANSFORMER_FILE


def _lineage_depth(record: dict) -> int:
    """1 + the base records nested under "init" in a manifest's `training.base`."""
    depth = 1
    while isinstance(record.get("init"), dict):
        record, depth = record["init"], depth + 1
    return depth


def read_earlier_zoo(folder: str | Path) -> EarlierZoo:
    """Reads the zoo an earlier build returned.

    Raises:
        ContinuationError: the folder lacks a file a continuation needs.
    """
    folder = Path(folder)
    needed = (MODEL_JSON, VQ_FILE, TRANSFORMER_FILE, f"{TEXT_ENCODER_DIR}/config.json")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ContinuationError(
            f"{folder} is not a zoo folder ({', '.join(missing)} missing): give the folder"
            " `styledrop zoo unshard --shards RESULTS --out ZOO` wrote from the earlier"
            " build's results."
        )
    config = ModelConfig.from_dict(json.loads((folder / MODEL_JSON).read_text())["config"])
    manifest = folder / MANIFEST
    base_record = (
        json.loads(manifest.read_text()).get("training", {}).get("base", {})
        if manifest.is_file()
        else {}
    )
    return EarlierZoo(
        folder=folder,
        vq=config.vq,
        transformer=config.transformer,
        base_runs=_lineage_depth(base_record),
        has_judge=(folder / JUDGE_DIR).is_dir(),
    )


def check_continuable(
    earlier: EarlierZoo, size: int, width: int, layers: int, downsample: bool
) -> None:
    """Refuses build settings that cannot continue `earlier`.

    The images must be the size its tokenizer was trained at; the base keeps its width
    and its grid (a base may gain layers: `zoo_build.grow` inserts them as identities).

    Raises:
        ContinuationError: naming the options that would fit.
    """
    base = earlier.transformer
    if size != earlier.vq.sample_size:
        raise ContinuationError(
            f"{earlier.folder}'s tokenizer reads {earlier.vq.sample_size} px images: pass"
            f" --size {earlier.vq.sample_size} to continue it."
        )
    same_grid = downsample == base.downsample
    if width != base.hidden_size or not same_grid or layers < base.num_hidden_layers:
        switch = "--base-downsample" if base.downsample else "--no-base-downsample"
        raise ContinuationError(
            f"{earlier.folder}'s base has width {base.hidden_size} and"
            f" {base.num_hidden_layers} layers{' on the halved grid' if base.downsample else ''};"
            f" a continuation keeps them (more layers are allowed): pass --base-width"
            f" {base.hidden_size} --base-layers {base.num_hidden_layers} {switch}."
        )
