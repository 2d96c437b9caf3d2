"""The settings of VQ tokenizer training: the tokenizer's sizes and the hyperparameters.

The sizes are a `muse.config.VQConfig` (`VQTrainConfig.vq`). Run records
(`train_info.json`'s "train") and checkpoint fingerprints list them flat beside the
training settings (`VQTrainConfig.record`), as they have since the first zoo runs, so
existing checkpoints still resume and existing records still load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from muse.config import VQConfig
from styledrop.fingerprint import settings_fingerprint
from styledrop.zoo.draws import SPLITS

# The zoo's tokenizer: 64 px -> 8 x 8 tokens through three downsamplers, 1024 codes of 16.
ZOO_VQ = VQConfig(
    block_out_channels=(16, 32, 64, 128),
    layers_per_block=1,
    latent_channels=32,
    num_vq_embeddings=1024,
    vq_embed_dim=16,
    norm_num_groups=8,
    sample_size=64,
)
# The sizes a run chooses; a record lists them always, and the other `VQConfig` fields only
# where they differ from `ZOO_VQ`'s.
CHOSEN_VQ_FIELDS = (
    "block_out_channels",
    "layers_per_block",
    "latent_channels",
    "vq_embed_dim",
    "num_vq_embeddings",
    "norm_num_groups",
)
# What a run may change on resuming: how often it checkpoints and evaluates.
REPORTING_FIELDS = ("checkpoint_every", "eval_every", "eval_images")


@dataclass(frozen=True)
class VQTrainConfig:
    """Model size and hyperparameters of VQ tokenizer training.

    Attributes:
        vq: The tokenizer's sizes. `block_out_channels` are the encoder widths per level;
            n levels give a factor 2^(n-1) (4 levels: 64 px -> 8 x 8 tokens);
            `layers_per_block` ResNet blocks per encoder level (the decoder has one more);
            `latent_channels` the width of the encoder output / decoder input;
            `vq_embed_dim` the width of a code vector (None: `latent_channels`);
            `num_vq_embeddings` the codebook size; `norm_num_groups` the GroupNorm groups
            (must divide every width).
        steps: Optimizer steps.
        batch_size: Images per step.
        learning_rate: Peak Adam learning rate (linear warm-up, cosine decay to 5%).
        warmup_steps: Warm-up length.
        recon_loss: "l1" or "l2" reconstruction loss (on unclipped decoder outputs).
        commitment: Weight of the commitment loss |z - sg(e)|^2 (mean over elements).
        ema_decay: Decay of the codebook's moving averages.
        dead_threshold: A code whose EMA count (assignments per step) is below this is dead
            (0.02 with decay 0.99: used less than about once in 50 steps).
        restart_every: Steps between dead-code restarts (0: never).
        restart_until: Fraction of `steps` after which codes are no longer restarted, so
            the decoder can settle on the final codebook.
        restart_count: EMA count a restarted code starts with (a little above the
            threshold, so a restart nothing picks up is restarted again soon).
        splits: Dataset splits trained on (never "eval"; held-out styles are never read).
        hflip: Random horizontal flips.
        seed: Seed of initialisation, batches, flips and restarts.
        checkpoint_every: Steps between checkpoints.
        eval_every: Steps between evaluations on `eval_images` of the "eval" split (0: off).
            Evaluation only reports; it never influences training.
        eval_images: How many "eval" images those periodic evaluations use.
    """

    vq: VQConfig = ZOO_VQ
    steps: int = 7000
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    recon_loss: str = "l1"
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_threshold: float = 0.02
    restart_every: int = 10
    restart_until: float = 0.9
    restart_count: float = 0.05
    splits: tuple[str, ...] = ("vq", "base", "canonical")
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 200
    eval_every: int = 200
    eval_images: int = 256

    def __post_init__(self):
        if self.recon_loss not in ("l1", "l2"):
            raise ValueError(f"recon_loss must be 'l1' or 'l2', got {self.recon_loss!r}.")
        if "eval" in self.splits or not set(self.splits) <= set(SPLITS):
            trainable = tuple(s for s in SPLITS if s != "eval")
            raise ValueError(f"splits must be taken from {trainable}; got {self.splits}.")

    def record(self) -> dict[str, Any]:
        """The settings as one flat dict: the tokenizer's sizes, then the training settings.

        The inverse of `from_dict`; what `train_info.json` records under "train".
        """
        sizes = {name: getattr(self.vq, name) for name in CHOSEN_VQ_FIELDS}
        sizes |= {
            f.name: getattr(self.vq, f.name)
            for f in dataclasses.fields(VQConfig)
            if f.name not in CHOSEN_VQ_FIELDS
            and getattr(self.vq, f.name) != getattr(ZOO_VQ, f.name)
        }
        training = dataclasses.asdict(self)
        del training["vq"]
        return {**sizes, **training}

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (everything but reporting cadence)."""
        return settings_fingerprint(self.record(), skip=REPORTING_FIELDS)

    @classmethod
    def tiny(cls) -> VQTrainConfig:
        """Test preset: 32 px -> 16 x 16 tokens through one downsampler, 32 codes, 30 steps."""
        return cls(
            vq=dataclasses.replace(
                ZOO_VQ,
                block_out_channels=(8, 16),
                layers_per_block=1,
                latent_channels=4,
                num_vq_embeddings=32,
                norm_num_groups=4,
            ),
            steps=30,
            batch_size=8,
            learning_rate=3e-3,
            warmup_steps=3,
            restart_every=5,
            dead_threshold=0.05,
            restart_count=0.1,
            splits=("vq",),
            checkpoint_every=0,
            eval_every=0,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VQTrainConfig:
        """Inverse of `record` (lists become tuples; unknown keys are ignored)."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        sizes = {f.name for f in dataclasses.fields(VQConfig)}
        names = {f.name for f in dataclasses.fields(cls)} - {"vq"}
        return cls(
            vq=dataclasses.replace(ZOO_VQ, **{k: v for k, v in values.items() if k in sizes}),
            **{k: v for k, v in values.items() if k in names},
        )
