"""The blind A/B study of the Compare page: pairs, the hidden order, and the vote record.

A study compares two generation jobs `a` and `b`. Pair k is the k-th image of a prompt in
`a` with the k-th image of the same prompt in `b`. Which side shows `a` is drawn at random
per pair and reviewer (fixed, so a reload shows the same order), and every vote is kept in
the store at `studies/<a>-vs-<b>.json`: {"a", "b", "votes": [{"pair", "prompt", "winner",
"reviewer", "at"}]}, where the winner is a job id or "tie". Plain Python: no Streamlit.
"""

from __future__ import annotations

import random
from collections import defaultdict

from worker import jobs
from worker.store import Store, StoreKeyError, validate_job_id

TIE = "tie"


def pairs(first: list[dict], second: list[dict]) -> list[tuple[dict, dict]]:
    """Score entries of the two jobs matched by prompt, in `first`'s order."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for entry in second:
        by_prompt[entry["prompt"]].append(entry)
    matched = []
    for entry in first:
        others = by_prompt.get(entry["prompt"])
        if others:
            matched.append((entry, others.pop(0)))
    return matched


def a_on_left(a: str, b: str, pair: int, reviewer: str) -> bool:
    """Whether job `a`'s image is shown on the left (random, fixed per pair and reviewer)."""
    return random.Random(f"{a}|{b}|{pair}|{reviewer}").random() < 0.5


def study_key(a: str, b: str) -> str:
    """The store key of the study of jobs `a` and `b` (ids are validated)."""
    return f"studies/{validate_job_id(a)}-vs-{validate_job_id(b)}.json"


def load_study(store: Store, a: str, b: str) -> dict:
    """The study record (a new, empty one when none is stored yet)."""
    try:
        return store.read_json(study_key(a, b))
    except (FileNotFoundError, StoreKeyError):
        return {"a": a, "b": b, "votes": []}


def record_vote(
    store: Store, a: str, b: str, pair: int, prompt: str, winner: str, reviewer: str
) -> dict:
    """Appends one vote (winner: `a`, `b` or "tie") and returns the study.

    Raises:
        ValueError: the winner is none of those.
    """
    if winner not in (a, b, TIE):
        raise ValueError(f"A vote names {a!r}, {b!r} or {TIE!r}, not {winner!r}.")
    study = load_study(store, a, b)
    study["votes"].append(
        {"pair": pair, "prompt": prompt, "winner": winner, "reviewer": reviewer,
         "at": jobs.utc_now()}
    )  # fmt: skip
    store.write_json(study_key(a, b), study)
    return study
