"""What a generation job record holds as its inputs (client and worker agree on it).

Plain JSON: the adapter is a store key (usually the `adapter` artifact of a fine-tune
job), the base a folder on the worker machines. Imports neither JAX nor Celery.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_IMAGES = 256


@dataclass(frozen=True)
class GenerateSpec:
    """The inputs of a generation job.

    Attributes:
        adapter: Store key of the style adapter file.
        prompts: Content prompts (the adapter's descriptor is appended).
        num_images: Images per prompt.
        seed: Random seed (same seed, same images).
        base: Base model folder on the workers (None: the embedded default).
        lambda_a: StyleDrop guidance weight of (adapted - base).
        lambda_b: Classifier-free guidance weight.
        negative_prompt: The negative branch's prompt.
        source_job: The fine-tune job that made the adapter, if any.
    """

    adapter: str
    prompts: tuple[str, ...]
    num_images: int = 4
    seed: int = 0
    base: str | None = None
    lambda_a: float | None = None
    lambda_b: float | None = None
    negative_prompt: str = ""
    source_job: str | None = None

    def __post_init__(self):
        problems = []
        if not self.prompts or not all(p.strip() for p in self.prompts):
            problems.append("give at least one non-empty prompt")
        if self.num_images < 1 or len(self.prompts) * self.num_images > MAX_IMAGES:
            problems.append(f"1 to {MAX_IMAGES} images in all")
        if problems:
            raise ValueError("Invalid generation job: " + "; ".join(problems) + ".")

    @property
    def total(self) -> int:
        """Images the job makes."""
        return len(self.prompts) * self.num_images

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data for the job record."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateSpec:
        """Reads the inputs of a job record (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["prompts"] = tuple(values.get("prompts", ()))
        return cls(**values)
