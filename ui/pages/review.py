"""Review: draw candidates with a round-1 adapter, pick the good ones, train round 2.

The candidates are a generation job's images with their CLIP text and style scores
(scored by the worker), drawn by default at MaskGIT's varied temperatures rather than
the base's near-mode ones, so that the images of one prompt differ enough to choose from.
"Select by CLIP" ticks the paper's CLIP feedback choice (the best text score per prompt);
a person can change any tick. The picks are saved with the pool (`selection.json` in the
generation job's folder) before round 2 is queued on them.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import streamlit as st

from feedback.selection import (
    Candidate,
    HumanSelection,
    candidates_from_entries,
    clip_best_per_prompt,
)
from styledrop.prompt_sets import round_prompts
from styledrop.terms import ADAPTER_KINDS
from ui import services
from ui.decoding import VARIED, temperature_choice
from worker import client
from worker.store import job_key

COLUMNS = 4


def _pick_key(pool: str, candidate_id: str) -> str:
    return f"pick:{pool}:{candidate_id}"


def _select(pool: str, candidates: list[Candidate], chosen: set[str]) -> None:
    """Sets every tick of the pool (a button callback: runs before the widgets)."""
    for candidate in candidates:
        st.session_state[_pick_key(pool, candidate.id)] = candidate.id in chosen


def _draw_form(source: str) -> None:
    with st.form("draw"):
        st.markdown("**1. Draw candidates** with this adapter")
        prompts = st.text_area(
            "Prompts (one per line)", value="\n".join(round_prompts().prompts), height=160
        )
        a, b = st.columns(2)
        per_prompt = a.number_input("Images per prompt", min_value=1, max_value=16, value=2)
        seed = b.number_input("Seed", min_value=0, value=0)
        temperature, token_temperature = temperature_choice("review_variety", VARIED)
        if st.form_submit_button("Draw candidates"):
            lines = [p.strip() for p in prompts.splitlines() if p.strip()]
            try:
                job = client.submit_generate(
                    source, lines, num_images=int(per_prompt), seed=int(seed),
                    temperature=temperature, token_temperature=token_temperature,
                    store=services.store(), app=services.celery_app(),
                )  # fmt: skip
            except (ValueError, ConnectionError, LookupError) as error:
                st.error(f"Not submitted: {error}")
            else:
                st.success(f"Queued {job.id}; it appears below when it has finished.")


def _grid(pool: str, scores: list[dict], candidates: list[Candidate]) -> list[str]:
    """The candidates with their scores and ticks; returns the ticked ids in pool order."""
    columns = st.columns(COLUMNS)
    for index, (entry, candidate) in enumerate(zip(scores, candidates, strict=True)):
        with columns[index % COLUMNS]:
            st.image(services.image_bytes(entry["key"]))
            style = "-" if math.isnan(candidate.style_score) else f"{candidate.style_score:.3f}"
            st.checkbox(
                f"{candidate.prompt} · text {candidate.text_score:.3f} · style {style}",
                key=_pick_key(pool, candidate.id),
            )
    return [c.id for c in candidates if st.session_state.get(_pick_key(pool, c.id))]


def _round2_form(pool: str, selected: list[str], reviewer: str) -> None:
    a, b = st.columns(2)
    adapter = a.selectbox("Round-2 adapter", ADAPTER_KINDS, index=1, key="round2_adapter")
    steps = b.number_input("Round-2 steps", min_value=1, value=1000, key="round2_steps")
    label = f"Train round 2 on {len(selected)} selected image(s)"
    if st.button(label, type="primary", disabled=not selected, key="round2"):
        record = HumanSelection(pool=pool, reviewer=reviewer)
        for candidate_id in selected:
            record.pick(candidate_id)
        services.store().write_json(job_key(pool, "selection.json"), asdict(record))
        try:
            job = client.submit_round2(
                pool, selected, adapter=adapter, steps=int(steps),
                store=services.store(), app=services.celery_app(),
            )  # fmt: skip
        except (ValueError, ConnectionError, LookupError, OSError) as error:
            st.error(f"Not submitted: {error}")
        else:
            st.session_state["job_id"] = job.id
            st.success(f"Queued round 2 as {job.id}. Follow it on the Jobs page.")


st.title("Review")
sources = services.finetune_jobs(succeeded_only=True)
if not sources:
    st.info("No trained style yet: a fine-tune job must succeed first (New style page).")
    st.stop()
source = services.pick_job("Style (a finished fine-tune job)", sources, key="review_source")
_draw_form(source)

st.markdown("**2. Pick the good ones**")
pools = [j for j in services.generate_jobs(source, succeeded_only=True) if "scores" in j.artifacts]
if not pools:
    st.info("No scored candidates of this style yet: draw some above, then reload.")
    st.stop()
names = services.labels(pools)
pool = st.selectbox("Candidates", list(names), format_func=names.get, key="review_pool")
scores = client.read_scores(pool, store=services.store())
candidates = candidates_from_entries(scores)
best = {c.id for c in clip_best_per_prompt(candidates)}
a, b, c = st.columns([1, 1, 2])
a.button("Select by CLIP", on_click=_select, args=(pool, candidates, best), key="by_clip")
b.button("Clear", on_click=_select, args=(pool, candidates, set()), key="clear")
reviewer = c.text_input("Reviewer", placeholder="your name (saved with the picks)")
selected = _grid(pool, scores, candidates)
st.markdown("**3. Train round 2** on the picks")
_round2_form(pool, selected, reviewer)
