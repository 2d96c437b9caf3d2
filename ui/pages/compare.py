"""Compare: two sets of images side by side with their scores, and a blind A/B study.

Pick two generation jobs (usually the same prompts and seed, drawn with a round-1 and a
round-2 adapter). "Side by side" shows both grids and the CLIP score table. "Blind A/B"
shows a reviewer one pair at a time (the same prompt from both jobs) in an order drawn at
random per pair and reviewer, records the vote in the store (`studies/A-vs-B.json`),
and reports each side's preference rate with a 95% Wilson interval, as the paper's
human study did.
"""

from __future__ import annotations

import math

import streamlit as st

from feedback.metrics import mean_stderr, preference_rates
from ui import services
from ui.ab_study import TIE, a_on_left, load_study, pairs, record_vote
from worker import client


def _score_row(job_id: str, scores: list[dict]) -> dict:
    row: dict = {"job": job_id, "images": len(scores)}
    for name in ("text", "style"):
        values = [s[f"{name}_score"] for s in scores if s[f"{name}_score"] is not None]
        mean, err = mean_stderr(values) if values else (math.nan, math.nan)
        row[f"CLIP {name}"] = f"{mean:.4f} ± {err:.4f}" if values else "-"
    return row


def _vote(a: str, b: str, pair: int, prompt: str, winner: str, reviewer: str) -> None:
    record_vote(services.store(), a, b, pair, prompt, winner, reviewer)


def _side_by_side(a: str, b: str, scores_a: list[dict], scores_b: list[dict]) -> None:
    st.dataframe([_score_row(a, scores_a), _score_row(b, scores_b)], hide_index=True)
    left, right = st.columns(2)
    for column, job_id in ((left, a), (right, b)):
        job = client.show(job_id, store=services.store())
        if "grid" in job.artifacts:
            column.image(services.image_bytes(job.artifacts["grid"]), caption=job_id)


def _blind(a: str, b: str, matched: list[tuple[dict, dict]]) -> None:
    reviewer = st.text_input("Reviewer", placeholder="your name", key="ab_reviewer").strip()
    if not reviewer:
        st.info("Give your name to start: each reviewer sees every pair once.")
        return
    study = load_study(services.store(), a, b)
    done = {v["pair"] for v in study["votes"] if v["reviewer"] == reviewer}
    remaining = [i for i in range(len(matched)) if i not in done]
    st.progress(len(done) / max(len(matched), 1), text=f"{len(done)} of {len(matched)} judged")
    if remaining:
        index = remaining[0]
        entry_a, entry_b = matched[index]
        shown_left = a_on_left(a, b, index, reviewer)
        left_entry, right_entry = (entry_a, entry_b) if shown_left else (entry_b, entry_a)
        left_job, right_job = (a, b) if shown_left else (b, a)
        st.markdown(f"Which matches the prompt and the style better? **{entry_a['prompt']}**")
        left, right = st.columns(2)
        left.image(services.image_bytes(left_entry["key"]), caption="Left")
        right.image(services.image_bytes(right_entry["key"]), caption="Right")
        one, two, three = st.columns(3)
        prompt = entry_a["prompt"]
        one.button("Left is better", on_click=_vote, args=(a, b, index, prompt, left_job,
                   reviewer), key="vote_left")  # fmt: skip
        two.button("Right is better", on_click=_vote, args=(a, b, index, prompt, right_job,
                   reviewer), key="vote_right")  # fmt: skip
        three.button("Cannot decide", on_click=_vote, args=(a, b, index, prompt, TIE,
                     reviewer), key="vote_tie")  # fmt: skip
    else:
        st.success("You have judged every pair.")
    votes = [v["winner"] for v in study["votes"]]
    if votes:
        rates = preference_rates(votes, a, b)
        st.dataframe(
            [
                {"choice": name, "votes": int(r["votes"]), "rate": round(r["rate"], 3),
                 "95% interval": f"{r['low']:.3f} - {r['high']:.3f}"}
                for name, r in rates.items()
            ],
            hide_index=True,
        )  # fmt: skip
        st.caption(f"All reviewers: {len(votes)} votes.")


st.title("Compare")
found = services.generate_jobs(succeeded_only=True)
found = [j for j in found if "scores" in j.artifacts]
if len(found) < 2:
    st.info("Compare needs two finished generation jobs (draw on the Review or Generate page).")
    st.stop()
names = services.labels(found)
ids = list(names)
left, right = st.columns(2)
a = left.selectbox("A", ids, index=min(1, len(ids) - 1), format_func=names.get, key="cmp_a")
b = right.selectbox("B", ids, index=0, format_func=names.get, key="cmp_b")
if a == b:
    st.warning("Choose two different jobs.")
    st.stop()
scores_a = client.read_scores(a, store=services.store())
scores_b = client.read_scores(b, store=services.store())
matched = pairs(scores_a, scores_b)
mode = st.segmented_control("View", ["Side by side", "Blind A/B"], default="Side by side",
                            key="cmp_mode")  # fmt: skip
if mode == "Blind A/B":
    if not matched:
        st.warning("The two jobs share no prompt, so there are no pairs to judge.")
    else:
        _blind(a, b, matched)
else:
    _side_by_side(a, b, scores_a, scores_b)
