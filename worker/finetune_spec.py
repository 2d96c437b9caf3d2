"""What a fine-tune job record holds as its inputs: the contract between client and worker.

`FinetuneOptions` is how to fine-tune (descriptor, base, adapter, optimizer, checkpoints,
previews, round): what a caller of `worker.client.submit` chooses. `FinetuneSpec` is
those options plus the uploaded images, as the client writes them into the job record
and the worker reads them (`worker.finetune_job`). It is plain JSON in the record:
images are store keys, never pixels. This module imports neither JAX nor Celery.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from styledrop.terms import ADAPTER_KINDS, DEFAULT_STEPS

DEFAULT_CHECKPOINT_EVERY = 100
MAX_STEPS = 100_000


def default_checkpoint_every(steps: int) -> int:
    """Steps between checkpoints when none is given: 100, or a tenth of a short run."""
    return max(1, min(DEFAULT_CHECKPOINT_EVERY, steps // 10))


@dataclass(frozen=True)
class ImageInput:
    """One uploaded style image.

    Attributes:
        key: Store key of the copy in the job's `inputs/` folder.
        name: The file name it was uploaded under (provenance, captions).
        sha256: Hex digest of the file bytes.
        caption: Content caption ("A house"); the descriptor is appended in training.
    """

    key: str
    name: str
    sha256: str
    caption: str


@dataclass(frozen=True)
class FinetuneOptions:
    """How to fine-tune: every input of a fine-tune job but its images.

    Attributes:
        descriptor: Style descriptor ("in watercolor painting style").
        base: Base model folder on the worker machines (None: the embedded default).
        adapter: Adapter kind: "r1", "r2" or "lora".
        bottleneck: Adapter bottleneck (None: the kind's default).
        rank: LoRA rank.
        steps: Optimizer steps.
        learning_rate: Adam learning rate (None: the kind's default).
        batch_size: Examples per step.
        seed: Random seed.
        variants_per_image: Augmented crops per image.
        checkpoint_every: Steps between resumable checkpoints (None: 100, or a tenth of
            a short run; see `default_checkpoint_every`).
        preview_every: Steps between preview grids (0: none).
        preview_prompts: Content prompts of the previews.
        round: 1 for training on the style image(s), 2 (parent's round + 1) for training on
            feedback-selected images of a generation job.
        selected_from: The generation job the images were selected from (round 2 and on).

    Raises:
        ValueError: "Invalid fine-tune job: ..." naming every problem.
    """

    descriptor: str
    base: str | None = None
    adapter: str = "r1"
    bottleneck: int | None = None
    rank: int = 16
    steps: int = DEFAULT_STEPS
    learning_rate: float | None = None
    batch_size: int = 8
    seed: int = 0
    variants_per_image: int = 8
    checkpoint_every: int | None = None
    preview_every: int = 0
    preview_prompts: tuple[str, ...] = field(default_factory=tuple)
    round: int = 1
    selected_from: str | None = None

    def __post_init__(self):
        if isinstance(self.base, Path):
            object.__setattr__(self, "base", str(self.base))
        object.__setattr__(self, "preview_prompts", tuple(self.preview_prompts))
        problems = self._problems()
        if problems:
            raise ValueError("Invalid fine-tune job: " + "; ".join(problems) + ".")

    def _problems(self) -> list[str]:
        problems = []
        if not self.descriptor.strip():
            problems.append("the style descriptor is empty")
        if self.adapter not in ADAPTER_KINDS:
            problems.append(f"adapter must be one of {', '.join(ADAPTER_KINDS)}")
        if not 1 <= self.steps <= MAX_STEPS:
            problems.append(f"steps must be between 1 and {MAX_STEPS}")
        if self.batch_size < 1 or self.variants_per_image < 1:
            problems.append("batch size and variants per image must be at least 1")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            problems.append("checkpoint_every must be at least 1 (jobs must be resumable)")
        if self.preview_every < 0:
            problems.append("preview_every must be >= 0")
        lr = self.learning_rate
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            problems.append("the learning rate must be a finite number > 0")
        if self.round < 1:
            problems.append("round must be at least 1")
        return problems


@dataclass(frozen=True, kw_only=True)
class FinetuneSpec(FinetuneOptions):
    """The inputs of a fine-tune job: the uploaded images and the `FinetuneOptions`.

    `checkpoint_every` is always a number here (None becomes its default).

    Attributes:
        images: The uploaded style images.
    """

    images: tuple[ImageInput, ...]

    def __post_init__(self):
        object.__setattr__(self, "images", tuple(self.images))
        if self.checkpoint_every is None:
            object.__setattr__(self, "checkpoint_every", default_checkpoint_every(self.steps))
        super().__post_init__()

    def _problems(self) -> list[str]:
        missing = [] if self.images else ["give at least one style image"]
        return missing + super()._problems()

    @classmethod
    def of(cls, images: tuple[ImageInput, ...], options: FinetuneOptions) -> FinetuneSpec:
        """The spec of `options` with `images`."""
        values = {f.name: getattr(options, f.name) for f in fields(FinetuneOptions)}
        return cls(images=images, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data for the job record (lists, not tuples: as read back)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneSpec:
        """Reads the inputs of a job record (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["images"] = tuple(ImageInput(**image) for image in data.get("images", ()))
        values["preview_prompts"] = tuple(values.get("preview_prompts", ()))
        return cls(**values)
