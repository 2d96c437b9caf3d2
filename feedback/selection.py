"""Choosing round-2 training images from a candidate pool.

Policies (all deterministic given their inputs):
- `clip_best_per_prompt`: the paper's CLIP feedback; per prompt, the image with the highest
  text score (or the best few).
- `top_k`: the k best overall by text score, style score or their sum.
- `threshold`: every image at or above given text / style scores.
- `random_selection`: the paper's control; as many images as another policy picked, drawn
  at random with a seed.
- Human selection: a record of which images a person picked and when, written by the UI
  or read from a JSON file (`HumanSelection`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

SCORE_KEYS = ("text", "style", "sum")


@dataclass(frozen=True)
class Candidate:
    """One generated image in a pool.

    Attributes:
        id: Unique name within the pool (its file name).
        prompt: The content prompt it was drawn for (without the style descriptor).
        text_score: CLIP cosine to the prompt.
        style_score: CLIP cosine to the style reference(s).
    """

    id: str
    prompt: str
    text_score: float = float("nan")
    style_score: float = float("nan")

    def score(self, key: str) -> float:
        """The score named `key`: "text", "style" or "sum"."""
        if key == "text":
            return self.text_score
        if key == "style":
            return self.style_score
        if key == "sum":
            return self.text_score + self.style_score
        raise ValueError(f"Unknown score {key!r}; use one of {SCORE_KEYS}.")


def _check_unique(candidates: Sequence[Candidate]) -> None:
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("Candidate ids must be unique within a pool.")


def clip_best_per_prompt(candidates: Sequence[Candidate], per_prompt: int = 1) -> list[Candidate]:
    """Per prompt, the `per_prompt` candidates with the highest text scores.

    The paper keeps one (`per_prompt=1`). Ties keep pool order. The result lists the
    prompts in pool order, each prompt's picks best first.

    Raises:
        ValueError: per_prompt < 1, or ids that repeat.
    """
    _check_unique(candidates)
    if per_prompt < 1:
        raise ValueError(f"per_prompt must be >= 1, got {per_prompt}.")
    by_prompt: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_prompt.setdefault(candidate.prompt, []).append(candidate)
    return [
        picked
        for group in by_prompt.values()
        for picked in sorted(group, key=lambda c: -c.text_score)[:per_prompt]  # stable
    ]


def top_k(candidates: Sequence[Candidate], k: int, key: str = "text") -> list[Candidate]:
    """The `k` best candidates by `key` (stable for ties)."""
    _check_unique(candidates)
    if k < 0:
        raise ValueError("k must be >= 0.")
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score(key))
    return [candidates[i] for i in order[:k]]


def threshold(
    candidates: Sequence[Candidate], text_min: float | None = None, style_min: float | None = None
) -> list[Candidate]:
    """Every candidate with text score >= text_min and style score >= style_min."""
    _check_unique(candidates)
    if text_min is None and style_min is None:
        raise ValueError("Give text_min, style_min or both.")
    return [
        c
        for c in candidates
        if (text_min is None or c.text_score >= text_min)
        and (style_min is None or c.style_score >= style_min)
    ]


def random_selection(candidates: Sequence[Candidate], count: int, seed: int = 0) -> list[Candidate]:
    """`count` candidates drawn uniformly without replacement (the paper's control)."""
    _check_unique(candidates)
    if not 0 <= count <= len(candidates):
        raise ValueError(f"count must be in [0, {len(candidates)}], got {count}.")
    rows = np.random.default_rng(seed).choice(len(candidates), size=count, replace=False)
    return [candidates[i] for i in sorted(rows)]


@dataclass
class HumanSelection:
    """Which candidates a person picked, and when.

    Attributes:
        pool: Identifier of the candidate pool (a job id or folder name).
        selected: Picked candidate ids, in the order picked.
        picked_at: ISO time of each pick, by candidate id.
        reviewer: Who picked (free text; may be empty).
        created: ISO time the record was started.
    """

    pool: str
    selected: list[str] = field(default_factory=list)
    picked_at: dict[str, str] = field(default_factory=dict)
    reviewer: str = ""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def pick(self, candidate_id: str) -> None:
        """Adds a candidate (again: no change)."""
        if candidate_id not in self.picked_at:
            self.selected.append(candidate_id)
            self.picked_at[candidate_id] = datetime.now(UTC).isoformat()

    def unpick(self, candidate_id: str) -> None:
        """Removes a candidate."""
        if candidate_id in self.picked_at:
            self.selected.remove(candidate_id)
            del self.picked_at[candidate_id]

    def resolve(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The picked candidates, in pick order.

        Raises:
            ValueError: a picked id is not in the pool.
        """
        by_id = {c.id: c for c in candidates}
        missing = [i for i in self.selected if i not in by_id]
        if missing:
            raise ValueError(f"Selected ids not in the pool: {missing[:5]}.")
        return [by_id[i] for i in self.selected]

    def save(self, path: str | Path) -> Path:
        """Writes the record as JSON, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            json.dump(asdict(self), stream, indent=2)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> HumanSelection:
        """Reads a record written by `save` (or by hand: {"pool": ..., "selected": [...]}).

        Raises:
            ValueError: the file is not a selection record.
        """
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON: {error}") from error
        if not isinstance(data, dict) or not isinstance(data.get("selected"), list):
            raise ValueError(f"{path} has no 'selected' list of candidate ids.")
        record = cls(pool=str(data.get("pool", "")), reviewer=str(data.get("reviewer", "")))
        record.created = str(data.get("created", record.created))
        picked_at = data.get("picked_at") or {}
        for candidate_id in map(str, data["selected"]):
            if candidate_id not in record.picked_at:
                record.selected.append(candidate_id)
                record.picked_at[candidate_id] = str(picked_at.get(candidate_id, record.created))
        return record


def candidates_from_entries(entries: Sequence[dict]) -> list[Candidate]:
    """Candidates from score entries ({"id"|"file", "prompt", "text_score", "style_score"}).

    This is the layout of a pool's `candidates.json` and of a generation job's
    `scores.json`; a missing or null score is NaN.
    """

    def score(entry: dict, key: str) -> float:
        value = entry.get(key)
        return float("nan") if value is None else float(value)

    return [
        Candidate(
            id=str(entry.get("id", entry.get("file"))),
            prompt=str(entry["prompt"]),
            text_score=score(entry, "text_score"),
            style_score=score(entry, "style_score"),
        )
        for entry in entries
    ]


def candidates_from_json(path: str | Path) -> list[Candidate]:
    """Reads a pool's `candidates.json` (see `candidates_from_entries`)."""
    return candidates_from_entries(json.loads(Path(path).read_text()))
