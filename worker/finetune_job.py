"""Running one fine-tune job in a worker process: claim, train (resuming), record the outcome.

`run_finetune_job(store, job_id, worker)` is the body of the `styledrop.finetune` task
(`worker.tasks`), callable without Celery. It is idempotent, as late acknowledgement
needs: a job delivered again after its worker died resumes from the newest checkpoint
in the job's folder; a job that has already ended is left alone.

It runs in the frame of `worker.job_runner`:
1. Claim: under the job's lock, a queued or running job becomes running, `attempts`
   goes up by one and `worker` names this worker. A job that already ended, or that
   was asked to cancel before it ran, is not trained. A job whose workers were lost
   `MAX_ATTEMPTS` times fails instead of taking down worker after worker
   (`worker.claim`).
2. Train (this module): `styledrop.finetune.finetune` in the job's working folder
   (`Store.pull`); progress goes into the record at most about once a second (every
   step for short runs); the cancel marker is polled as `should_stop`; on a remote
   store each checkpoint is pushed as soon as it is written.
3. Record: "succeeded" with the adapter as an artifact, "cancelled" (the checkpoint is
   kept), or "failed" with the error message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from adapters import AdapterSpec
from styledrop.dataset import StyleExample
from styledrop.finetune import FinetuneConfig, finetune
from styledrop.images import make_grid, save_image
from styledrop.inputs import load_image_bytes
from worker import jobs
from worker.finetune_spec import FinetuneSpec
from worker.job_runner import CancelFlag, Outcome, run_job
from worker.models import base_pipeline, device_label, release
from worker.store import CHECKPOINT_DIR, CHECKPOINT_POINTER, Store, job_key

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # seconds between progress writes of a long run
EVERY_STEP_BELOW = 100  # runs with fewer steps write progress after every step
PREVIEWS = "previews"


class ProgressRecorder:
    """The `progress` callback of `finetune`: writes step, loss and ETA into the record.

    Args:
        store: The store.
        job_id: The job.
        spec: The job's inputs (checkpoint and preview cadence).
        resumed_from: Step of the checkpoint the run started from (0: a fresh run).
        on_checkpoint: Called after a step that wrote a checkpoint (pushes it).
        on_write: Called with the progress data each time it is written (Celery state).
    """

    def __init__(
        self,
        store: Store,
        job_id: str,
        spec: FinetuneSpec,
        resumed_from: int,
        on_checkpoint: Callable[[int], None] | None = None,
        on_write: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.store, self.job_id, self.spec = store, job_id, spec
        self.on_checkpoint, self.on_write = on_checkpoint, on_write
        self.resumed_from = resumed_from
        self.checkpoint = resumed_from
        self.previews: list[str] = []
        self.last_write = 0.0
        self.data: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        if event.previews is not None and len(event.previews):
            self._save_previews(event.step, event.previews)
        saved = event.step % self.spec.checkpoint_every == 0
        if saved:
            self.checkpoint = event.step
            if self.on_checkpoint is not None:
                self.on_checkpoint(event.step)
        self.data = {
            "step": event.step,
            "total": event.total,
            "loss": round(float(event.loss), 6),
            "eta_seconds": round(float(event.eta_seconds), 1),
            "checkpoint_step": self.checkpoint,
            "resumed_from": self.resumed_from,
            "previews": list(self.previews),
        }
        now = time.monotonic()
        if (
            event.total < EVERY_STEP_BELOW
            or saved
            or event.step in (1, event.total)
            or now - self.last_write >= PROGRESS_INTERVAL
        ):
            self.write()
            self.last_write = now

    def write(self, **extra: Any) -> None:
        """Writes the latest progress (plus `extra` keys) into the record now.

        Best effort: a write that fails (a store or broker hiccup) is logged and the next
        one tries again; training goes on.
        """
        data = {**self.data, **extra, "updated": jobs.utc_now()}
        try:
            jobs.update(self.store, self.job_id, progress=data)
            if self.on_write is not None:
                self.on_write(data)
        except Exception as error:
            log.warning("Job %s: progress write failed (%s); training goes on.", self.job_id, error)

    def _save_previews(self, step: int, previews: Any) -> None:
        name = f"preview-{step:06d}.png"
        save_image(make_grid(previews), self.store.job_dir(self.job_id) / PREVIEWS / name)
        self.previews.append(job_key(self.job_id, PREVIEWS, name))


def _examples(store: Store, spec: FinetuneSpec) -> list[StyleExample]:
    examples = []
    for image in spec.images:
        loaded = load_image_bytes(store.fetch(image.key).read_bytes(), image.name)
        examples.append(StyleExample(loaded.pixels, image.caption, image.name, loaded.sha256))
    return examples


def _config(spec: FinetuneSpec) -> FinetuneConfig:
    return FinetuneConfig(
        adapter=AdapterSpec.from_options(spec.adapter, spec.bottleneck, spec.rank),
        steps=spec.steps,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        seed=spec.seed,
        variants_per_image=spec.variants_per_image,
        checkpoint_every=spec.checkpoint_every,
        preview_every=spec.preview_every,
        preview_prompts=spec.preview_prompts,
        round=spec.round,
    )


def run_finetune_job(
    store: Store,
    job_id: str,
    worker: str,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) a fine-tune job and records how it ended (`worker.job_runner`).

    Args:
        store: The store holding the job.
        job_id: The job.
        worker: Name of this worker (recorded in the job).
        on_progress: Also called with each progress write (e.g. Celery `update_state`).

    Returns:
        {"job_id", "status", "step"}; `"skipped": True` when the job was not trained.

    Raises:
        Exception: whatever made the job fail, after the record says "failed".
    """
    return run_job(store, job_id, worker, partial(_train, on_progress=on_progress))


def _train(
    store: Store,
    job: jobs.Job,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """The fine-tune job's body: trains (resuming) in the job's folder."""
    spec = FinetuneSpec.from_dict(job.inputs)
    config = _config(spec)
    folder = store.pull(job.id)
    resumed_from = max(0, store.checkpoint_step(job.id))
    examples = _examples(store, spec)
    pipe = base_pipeline(spec.base)
    jobs.update(store, job.id, device=device_label())
    try:
        recorder = ProgressRecorder(
            store, job.id, spec, resumed_from,
            on_checkpoint=lambda step: store.push(job.id), on_write=on_progress,
        )  # fmt: skip
        result = finetune(
            pipe, examples, spec.descriptor, config, folder,
            progress=recorder, should_stop=CancelFlag(store, job.id),
        )  # fmt: skip
        store.push(job.id)
    finally:
        release(pipe)
    artifacts = {  # a remote store keeps the checkpoint as snapshots behind a pointer
        "checkpoint": job_key(job.id, CHECKPOINT_DIR if store.is_local else CHECKPOINT_POINTER),
        "train_log": job_key(job.id, "train_log.jsonl"),
    }
    if result.status == "succeeded":
        artifacts["adapter"] = job_key(job.id, result.adapter_path.name)
        error = None
    else:
        error = f"Cancelled by request at step {result.step} of {spec.steps}."
    final = {
        **recorder.data,  # empty when a redelivered job had nothing left to train
        "step": result.step,
        "total": spec.steps,
        "checkpoint_step": result.step,
        "resumed_from": resumed_from,
        "previews": list(recorder.previews),
    }
    if result.final_loss is not None:
        final["loss"] = round(float(result.final_loss), 6)
    if result.status == "succeeded":
        final["eta_seconds"] = 0.0
    return Outcome(result.status, artifacts, final, error, {"step": result.step})
