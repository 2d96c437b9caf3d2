"""What a generation job record holds as its inputs (client and worker agree on it).

Plain JSON: the adapters are store keys (usually the `adapter` artifacts of fine-tune
jobs), the base a folder on the worker machines. Imports neither JAX nor Celery.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from styledrop.terms import DEFAULT_GAMMA, content_first_problem

MAX_IMAGES = 256
SCORES_FILE = "scores.json"  # in the job folder: one entry per image (see `worker.generate_job`)


@dataclass(frozen=True)
class GenerateSpec:
    """The inputs of a generation job.

    Attributes:
        adapter: Store key of the style adapter file.
        prompts: Content prompts (the adapter's descriptor is appended).
        num_images: Images per prompt.
        seed: Random seed (same seed, same images).
        base: Base model folder on the workers (None: the embedded default).
        lambda_a: StyleDrop guidance weight of (adapted - base) (None: the paper's 1).
        lambda_b: Classifier-free guidance weight (None: the base's, else the paper's 5).
        content_first: The fraction of decoding steps drawn from the content prompt alone
            before StyleDrop guidance (`styledrop.guidance.GuidanceScales`; None: the
            base's, else 0, the paper's rule).
        negative_prompt: The negative branch's prompt.
        source_job: The fine-tune job that made the adapter, if any (its style images are
            the references of the style scores).
        subject_adapter: Store key of a second (subject) adapter for style + subject
            composition (Eqs. 5-6), or None for style only.
        subject_job: The fine-tune job that made the subject adapter, if any.
        gamma: Subject weight of the composition, in [0, 1].
        score: Whether the job scores its images with CLIP (`scores.json`).
        temperature: MaskGIT choice temperature of the draws (None: the base's; the zoo
            samples at 1, the paper at 4.5).
        token_temperature: Softmax temperature of the token draws (None: the base's; the
            zoo 0.5, the paper 1). Hotter draws vary more between the images of one
            prompt, which gives a reviewer (or CLIP) more to choose from.
    """

    adapter: str
    prompts: tuple[str, ...]
    num_images: int = 4
    seed: int = 0
    base: str | None = None
    lambda_a: float | None = None
    lambda_b: float | None = None
    content_first: float | None = None
    negative_prompt: str = ""
    source_job: str | None = None
    subject_adapter: str | None = None
    subject_job: str | None = None
    gamma: float = DEFAULT_GAMMA
    score: bool = True
    temperature: float | None = None
    token_temperature: float | None = None

    def __post_init__(self):
        problems = []
        if not self.prompts or not all(p.strip() for p in self.prompts):
            problems.append("give at least one non-empty prompt")
        if self.num_images < 1 or len(self.prompts) * self.num_images > MAX_IMAGES:
            problems.append(f"1 to {MAX_IMAGES} images in all")
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"gamma must be in [0, 1], got {self.gamma}")
        if self.content_first is not None and content_first_problem(self.content_first):
            problems.append(content_first_problem(self.content_first))
        if self.subject_adapter is not None and self.subject_adapter == self.adapter:
            problems.append("the subject adapter is the style adapter")
        for name in ("temperature", "token_temperature"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                problems.append(f"{name} must be positive (or unset for the base's), got {value}")
        if problems:
            raise ValueError("Invalid generation job: " + "; ".join(problems) + ".")

    @property
    def total(self) -> int:
        """Images the job makes."""
        return len(self.prompts) * self.num_images

    def image_prompts(self) -> list[str]:
        """The prompt of each image, in image order (prompt by prompt, N images each)."""
        return [prompt for prompt in self.prompts for _ in range(self.num_images)]

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
