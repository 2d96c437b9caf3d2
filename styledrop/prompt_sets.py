"""Prompt sets for feedback rounds and evaluation.

- `ROUND_PROMPTS`: the 30 fixed content prompts of the candidate pool (the paper uses 30
  prompts of animals, objects and scenes; these are the emoji world's, so the embedded
  base can draw them). None of them is a house, the shipped demo style's content.
- `parti190`: the paper's evaluation prompts (PartiPrompts, Challenge "Basic" minus
  Abstract, World Knowledge, People, Arts). A base that is the embedded zoo only knows the
  world's vocabulary: each covered Parti prompt is drawn as its mapped subject's phrase
  ("a penguin"), and the set says how many of the 190 it covers.
- `world`: subjects spread evenly over the vocabulary (no letters, none of the round
  prompts), "a <subject>".
- A text file: one prompt per line (blank lines and lines starting with # skipped). On the
  embedded zoo a line that is just a subject's noun phrase ("a penguin") is that subject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROUND_SUBJECTS = (
    # animals
    "cat", "dog", "penguin", "fox", "rabbit", "horse", "elephant", "lion", "panda", "monkey",
    # objects
    "teapot", "chair", "key", "candle", "alarm_clock", "camera", "light_bulb", "balloon",
    "guitar", "umbrella",
    # food, vehicles, scenes
    "pizza", "banana", "birthday_cake", "car", "bicycle", "rocket", "sailboat", "castle",
    "mountain", "tree",
)  # fmt: skip
WORLD_SET_SIZE = 48
BUILTIN_SETS = ("parti190", "world", "rounds")


@dataclass(frozen=True)
class PromptSet:
    """Content prompts (no style descriptor) with their world subjects where known.

    Attributes:
        name: "parti190", "world", "rounds" or the file name.
        prompts: The prompts to draw.
        subjects: The world subject id of each prompt (None where unknown).
        sources: The original prompt of each (the Parti text on the embedded base).
        note: How the set was derived (coverage of Parti-190 on the embedded base).
    """

    name: str
    prompts: tuple[str, ...]
    subjects: tuple[str | None, ...]
    sources: tuple[str, ...] = field(default=())
    note: str = ""


def _subject_prompts(name: str, ids: tuple[str, ...], note: str) -> PromptSet:
    from styledrop.zoo.vocabulary import subjects_by_id

    table = subjects_by_id()
    missing = [i for i in ids if i not in table]
    if missing:
        raise ValueError(f"Prompt set {name!r} names subjects not in the vocabulary: {missing}.")
    prompts = tuple(table[i].phrase() for i in ids)
    return PromptSet(name, prompts, tuple(ids), prompts, note)


def round_prompts() -> PromptSet:
    """The 30 candidate-pool prompts."""
    return _subject_prompts("rounds", ROUND_SUBJECTS, "30 fixed world prompts (pool)")


def world_prompts(count: int = WORLD_SET_SIZE) -> PromptSet:
    """`count` subjects spread over the vocabulary, without letters or round prompts."""
    import numpy as np

    from styledrop.zoo.vocabulary import SUBJECTS

    pool = [s.id for s in SUBJECTS if s.kind != "letter" and s.id not in ROUND_SUBJECTS]
    picks = np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(int)
    note = f"{len(picks)} world subjects spread over the vocabulary"
    return _subject_prompts("world", tuple(pool[i] for i in picks), note)


def parti190_prompts(world_only: bool) -> PromptSet:
    """The paper's 190 prompts; on the embedded base, the covered ones as world subjects."""
    from styledrop.zoo.parti_mapping import parti190, parti_to_subject
    from styledrop.zoo.vocabulary import subjects_by_id

    rows = parti190()
    if not world_only:
        texts = tuple(row.prompt for row in rows)
        return PromptSet("parti190", texts, (None,) * len(texts), texts, "all 190 prompts")
    mapping, table = parti_to_subject(), subjects_by_id()
    covered = [row.prompt for row in rows if row.prompt in mapping]
    ids = tuple(mapping[p] for p in covered)
    note = (
        f"{len(covered)} of 190 Parti prompts covered by the emoji world, each drawn as its"
        " subject's phrase"
    )
    prompts = tuple(table[i].phrase() for i in ids)
    return PromptSet("parti190", prompts, ids, tuple(covered), note)


def prompts_from_file(path: str | Path, world_only: bool = False) -> PromptSet:
    """One prompt per line; blank lines and # comments skipped.

    Args:
        path: The text file.
        world_only: The base is the embedded zoo: a line that is a subject's noun phrase
            ("a penguin") records that subject (`subject_of_phrase`), so it can be named.

    Raises:
        ValueError: the file holds no prompts.
    """
    path = Path(path)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = tuple(line for line in lines if line and not line.startswith("#"))
    if not prompts:
        raise ValueError(f"{path} holds no prompts (one per line).")
    subjects: tuple[str | None, ...] = (None,) * len(prompts)
    if world_only:
        from styledrop.zoo.vocabulary import subject_of_phrase

        subjects = tuple(subject_of_phrase(prompt) for prompt in prompts)
    return PromptSet(path.name, prompts, subjects, prompts, f"from {path.name}")


def load_prompt_set(spec: str, world_only: bool) -> PromptSet:
    """A built-in set by name ("parti190", "world", "rounds") or a prompt file.

    Args:
        spec: The name or a file path.
        world_only: The base is the embedded zoo (map Parti prompts to world subjects).
    """
    if spec == "parti190":
        return parti190_prompts(world_only)
    if spec == "world":
        return world_prompts()
    if spec == "rounds":
        return round_prompts()
    if not Path(spec).is_file():
        raise ValueError(f"--prompts {spec!r}: use one of {BUILTIN_SETS} or a text file path.")
    return prompts_from_file(spec, world_only)
