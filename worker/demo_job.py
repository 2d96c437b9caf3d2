"""Running the demo as a job: `styledrop demo` through the queue.

`run_demo_job(store, job_id, worker)` is the body of the `styledrop.demo` task. The job's
inputs are `{"style_image": store key or None (the shipped image), "base": folder or None,
"config": DemoConfig fields to override}`. It runs `styledrop.demo.run_demo` in the job's
folder (a redelivered job resumes the fine-tuning checkpoint there), writes progress
(stage, step, loss, ETA) into the record, stops when cancelled, and records the report,
the two grids and the summary as artifacts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker import jobs
from worker.claim import claim, skipped
from worker.finetune_job import CancelFlag
from worker.store import Store, job_key

log = logging.getLogger(__name__)

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
    """Runs (or resumes) a demo job and records how it ended.

    Args:
        store: The store holding the job.
        job_id: The job.
        worker: Name of this worker (recorded in the job).

    Returns:
        {"job_id", "status"}; `"skipped": True` when the job was not run.

    Raises:
        Exception: whatever made the job fail, after the record says "failed".
    """
    job = claim(store, job_id, worker)
    if job is None:
        return skipped(store, job_id)
    try:
        import dataclasses

        from styledrop.demo import DemoConfig, run_demo

        overrides = dict(job.inputs.get("config") or {})
        if "prompts" in overrides:
            overrides["prompts"] = tuple(overrides["prompts"])
        config = dataclasses.replace(DemoConfig(), **overrides)
        folder = store.pull(job_id)
        style = job.inputs.get("style_image")
        progress = _DemoProgress(store, job_id, config.steps)
        summary = run_demo(
            folder / DEMO_DIR, config, base=job.inputs.get("base"),
            style_image=store.fetch(style) if style else None,
            on_step=progress.step, on_stage=progress.stage,
            should_stop=CancelFlag(store, job_id),
        )  # fmt: skip
        store.push(job_id)
    except Exception as error:
        log.exception("Job %s failed.", job_id)
        jobs.mark_failed(store, job_id, error)
        raise
    succeeded = summary["status"] == "succeeded"
    artifacts = {
        name.split(".")[0]: job_key(job_id, DEMO_DIR, name)
        for name in OUTPUTS
        if succeeded and (folder / DEMO_DIR / name).is_file()
    }

    def finish(record: jobs.Job) -> None:
        record.finished = jobs.utc_now()
        record.status = "succeeded" if succeeded else "cancelled"
        record.error = None if succeeded else f"Cancelled by request at step {summary['steps']}."
        record.artifacts = {**record.artifacts, **artifacts}
        record.progress = {
            **record.progress, "stage": "done" if succeeded else "cancelled",
            "scores": summary.get("scores", {}), "updated": record.finished,
        }  # fmt: skip

    jobs.update(store, job_id, finish)
    return {"job_id": job_id, "status": "succeeded" if succeeded else "cancelled"}
