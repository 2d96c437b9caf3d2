"""Jobs: every job with its status; the chosen one live (progress, loss, previews, cancel).

The live view is a fragment that re-reads the job record every `POLL_SECONDS`; when the
job ends the whole page reruns once, to offer the adapter download and the next steps.
"""

from __future__ import annotations

import json

import streamlit as st

from ui import services
from worker import client, jobs
from worker.store import StoreKeyError, job_key


def _table(found: list[jobs.Job]) -> None:
    rows = []
    for job in found:
        progress = job.progress
        done = progress.get("step", progress.get("done"))
        rows.append(
            {
                "job": job.id,
                "kind": job.kind,
                "status": job.status,
                "progress": f"{done}/{progress.get('total')}" if done is not None else "",
                "created": job.created,
                "about": job.inputs.get("descriptor") or "; ".join(job.inputs.get("prompts", [])),
            }
        )
    st.dataframe(rows, hide_index=True, width="stretch")


def _losses(job: jobs.Job) -> list[dict]:
    """The training log so far: [{"step", "loss", ...}] (empty before the first step)."""
    try:
        text = services.image_bytes(job_key(job.id, "train_log.jsonl")).decode()
    except (FileNotFoundError, OSError, StoreKeyError):
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return rows


def _show_finetune(job: jobs.Job) -> None:
    progress = job.progress
    step, total = int(progress.get("step", 0)), int(progress.get("total") or job.inputs["steps"])
    st.progress(min(step / max(total, 1), 1.0), text=f"step {step} of {total}")
    a, b, c = st.columns(3)
    loss = progress.get("loss")
    a.metric("Loss", f"{loss:.4f}" if loss is not None else "-")
    eta = progress.get("eta_seconds")
    b.metric("Time left", f"{eta / 60:.1f} min" if eta is not None else "-")
    c.metric("Attempts", job.attempts)
    rows = _losses(job)
    if rows:
        st.line_chart(rows, x="step", y="loss", height=220)
    previews = progress.get("previews") or []
    if previews:
        st.image(services.image_bytes(previews[-1]), caption=f"Latest preview ({previews[-1]})")


def _show_generate(job: jobs.Job) -> None:
    progress = job.progress
    done, total = int(progress.get("done", 0)), int(progress.get("total") or 1)
    st.progress(min(done / max(total, 1), 1.0), text=f"{done} of {total} images")
    sampling = job.sampling_summary()
    if sampling:
        st.caption(f"Sampled with {sampling} on {job.device or '-'}.")
    if "grid" in job.artifacts:
        st.image(services.image_bytes(job.artifacts["grid"]), caption="All images")


@st.fragment(run_every=services.POLL_SECONDS)
def live(job_id: str, seen_status: str) -> None:
    """The job's live view; reruns the page when its status changes."""
    job = client.show(job_id, store=services.store())
    if job.status != seen_status:
        st.rerun(scope="app")
    st.subheader(f"{job.id}: {job.status}")
    st.caption(
        f"worker {job.worker or '-'} · created {job.created} · started {job.started or '-'}"
        f" · finished {job.finished or '-'}"
    )
    if job.error:
        (st.info if job.status == "cancelled" else st.error)(job.error)
    if job.kind == "finetune":
        _show_finetune(job)
    elif job.kind == "generate":
        _show_generate(job)
    if not job.is_terminal and st.button("Cancel job", key=f"cancel_{job.id}"):
        client.cancel(job.id, store=services.store(), app=services.celery_app())
        st.toast(f"Cancel requested for {job.id}.")


st.title("Jobs")
found = client.list_jobs(store=services.store(), limit=200)
if not found:
    st.info("No jobs yet: start one on the New style page.")
    st.stop()
_table(found)
job_id = services.pick_job("Job", found, key="jobs_pick")
st.session_state["job_id"] = job_id
job = client.show(job_id, store=services.store())
live(job.id, job.status)
if job.kind == "finetune" and "adapter" in job.artifacts:
    key = job.artifacts["adapter"]
    st.download_button(
        "Download adapter", data=services.image_bytes(key),
        file_name=f"{job.id}-{key.rsplit('/', 1)[-1]}", mime="application/octet-stream",
        key="download_adapter",
    )  # fmt: skip
    st.caption("Next: draw candidates and pick the good ones on the Review page.")
