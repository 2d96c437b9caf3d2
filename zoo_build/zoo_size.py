"""The size of a zoo before it is trained: what `zoo build` checks against the repository's limit.

The zoo is committed with the repository, which holds at most 32 MB of it. A build on a
lent GPU has minutes and cannot be repeated at will, so its sizes are checked before any
training: the assembled folder is the U-ViT and the VQ in float16 (`zoo_build.assemble`),
plus the text encoder, its tokenizer and the judge as copied, plus `model.json` and the
manifest. The two float16 files are predicted from their parameter counts (abstract
modules, nothing allocated); the copied folders are measured where they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from muse.config import TransformerConfig, VQConfig
from muse.folder_layout import TEXT_ENCODER_DIR, TOKENIZER_DIR
from styledrop.zoo.embedded import JUDGE_DIR

# The most of the zoo the repository commits (the budget: code about 2 MB, zoo 32 MB,
# data pack 20 MB, wheels 8 MB, within the 64 MiB a GPU call carries).
COMMITTED_ZOO_LIMIT_BYTES = 32_000_000
# model.json, manifest.json and the safetensors headers (names and shapes of every tensor):
# about 40 kB on the committed zoo; counted generously.
METADATA_BYTES = 100_000
FLOAT16_BYTES = 2


@dataclass(frozen=True)
class ZooSize:
    """Predicted bytes of an assembled zoo, by part."""

    transformer: int
    vq: int
    text: int
    judge: int
    metadata: int = METADATA_BYTES

    @property
    def total(self) -> int:
        """All parts together."""
        return self.transformer + self.vq + self.text + self.judge + self.metadata

    def describe(self) -> str:
        """One line with each part in MB, e.g. for an error message."""
        parts = ("transformer", "vq", "text", "judge")
        shown = ", ".join(f"{name} {getattr(self, name) / 1e6:.1f}" for name in parts)
        return f"{self.total / 1e6:.1f} MB ({shown})"


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def parameter_count(config: TransformerConfig | VQConfig) -> int:
    """Parameters of the U-ViT or VQ tokenizer of `config` (abstract: nothing allocated)."""
    import jax
    from flax import nnx

    from muse.transformer import UVit2D
    from muse.vq import VQModel

    kind = UVit2D if isinstance(config, TransformerConfig) else VQModel
    model = nnx.eval_shape(lambda: kind(config, rngs=nnx.Rngs(0)))
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def text_widths(text_dir: Path) -> tuple[int, int]:
    """(hidden width, projection width) of the text encoder in `text_dir`/text_encoder."""
    values = json.loads((text_dir / TEXT_ENCODER_DIR / "config.json").read_text())
    return int(values["hidden_size"]), int(values["projection_dim"])


def predicted_zoo_size(
    transformer: TransformerConfig, vq: VQConfig, text_dir: Path, judge_dir: Path
) -> ZooSize:
    """The assembled zoo's bytes, from the two configs and the folders copied as they are.

    Args:
        transformer: The base U-ViT's sizes.
        vq: The tokenizer's sizes.
        text_dir: Folder with text_encoder/ and tokenizer/ (fine-tuning keeps their size).
        judge_dir: Folder with judge/.
    """
    return ZooSize(
        transformer=FLOAT16_BYTES * parameter_count(transformer),
        vq=FLOAT16_BYTES * parameter_count(vq),
        text=folder_bytes(text_dir / TEXT_ENCODER_DIR) + folder_bytes(text_dir / TOKENIZER_DIR),
        judge=folder_bytes(judge_dir / JUDGE_DIR),
    )
