"""Running the demo as a job: `styledrop demo` through the queue.

`run_demo_job(store, job_id, worker)` is the body of the `styledrop.demo` task. The job's
inputs are `{"style_image": store key or None (the shipped image), "base": folder or None,
"config": DemoConfig fields to override}`. It runs `styledrop.demo.run_demo` in the job's
folder (a redelivered job resumes the fine-tuning checkpoint there), writes progress
(stage, step, loss, ETA) into the record, stops when cancelled, and records the report,
the two grids and the summary as artifacts.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from styledrop.demo import DemoConfig, run_demo
from worker import jobs
from worker.job_runner import CancelFlag, Outcome, run_job
from worker.models import device_label
from worker.store import Store, job_key

DEMO_DIR = "demo"
OUTPUTS = ("report.html", "baseline.png", "styled.png", "summary.json")
PROGRESS_INTERVAL = 1.0  # seconds between progress writes


class _DemoProgress:
    """The demo's `on_stage` and `on_step` callbacks: progress into the job record."""

    def __init__(self, store: Store, job_id: str, total: int):
        self.store, self.job_id = store, job_id
        self.data: dict[str, Any] = {"stage": "starting", "step": 0, "total": total}
        self.last = 0.0

    def stage(self, line: str) -> None:
        self.data["stage"] = line
        self.write()

    def step(self, event: Any) -> None:
        self.data.update(
            step=event.step, total=event.total, loss=round(float(event.loss), 6),
            eta_seconds=round(float(event.eta_seconds), 1),
        )  # fmt: skip
        if time.monotonic() - self.last >= PROGRESS_INTERVAL or event.step == event.total:
            self.write()

    def write(self) -> None:
        self.last = time.monotonic()
        jobs.update(self.store, self.job_id, progress={**self.data, "updated": jobs.utc_now()})


def run_demo_job(store: Store, job_id: str, worker: str) -> dict[str, Any]:
    """Runs (or resumes) a demo job and records how it ended (`worker.job_runner`).

    Args:
        store: The store holding the job.
        job_id: The job.
        worker: Name of this worker (recorded in the job).

    Returns:
        {"job_id", "status"}; `"skipped": True` when the job was not run.

    Raises:
        Exception: whatever made the job fail, after the record says "failed".
    """
    return run_job(store, job_id, worker, _demo)


def _demo(store: Store, job: jobs.Job) -> Outcome:
    """The demo job's body: `run_demo` in the job's folder."""
    overrides = dict(job.inputs.get("config") or {})
    if "prompts" in overrides:
        overrides["prompts"] = tuple(overrides["prompts"])
    config = dataclasses.replace(DemoConfig(), **overrides)
    folder = store.pull(job.id)
    style = job.inputs.get("style_image")
    progress = _DemoProgress(store, job.id, config.steps)
    jobs.update(store, job.id, device=device_label("float32"))  # the demo runs in float32
    summary = run_demo(
        folder / DEMO_DIR, config, base=job.inputs.get("base"),
        style_image=store.fetch(style) if style else None,
        on_step=progress.step, on_stage=progress.stage,
        should_stop=CancelFlag(store, job.id),
    )  # fmt: skip
    store.push(job.id)
    succeeded = summary["status"] == "succeeded"
    artifacts = {
        name.split(".")[0]: job_key(job.id, DEMO_DIR, name)
        for name in OUTPUTS
        if succeeded and (folder / DEMO_DIR / name).is_file()
    }
    final = {
        **progress.data, "stage": "done" if succeeded else "cancelled",
        "scores": summary.get("scores", {}),
    }  # fmt: skip
    if succeeded:
        return Outcome("succeeded", artifacts, final)
    error = f"Cancelled by request at step {summary['steps']}."
    return Outcome("cancelled", artifacts, final, error)
