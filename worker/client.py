"""Submitting and watching jobs: what the CLI and the UI call. Imports no JAX.

`submit` validates the style images (`styledrop.inputs`), copies them into the store
under the job's `inputs/` folder, writes the job record (the images and the
`FinetuneOptions` the caller chose, as a `FinetuneSpec`) and queues the task by name
(`app.send_task`: the task code is never imported here); `submit_generate` queues
images in the style of a finished fine-tune job (optionally composed with the subject
adapter of another one), scored with CLIP unless asked not to (`read_scores`).
`submit_round2` fine-tunes again on images picked from a generation job, each captioned
with its content prompt (the paper's iterative training with feedback). `cancel` asks a
running job to stop (it checkpoints and ends "cancelled") and ends a queued one at once.
`wait` polls the record until the job ends. The store is `$STYLEDROP_STORE` and the
broker `$STYLEDROP_BROKER_URL` unless others are passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from celery import Celery

from styledrop.terms import DEFAULT_CAPTION, DEFAULT_GAMMA, DEFAULT_STEPS, without_descriptor
from worker import jobs
from worker.app import FINETUNE_TASK, GENERATE_TASK, TASK_ROUTES
from worker.finetune_spec import FinetuneOptions, FinetuneSpec, ImageInput
from worker.generate_spec import GenerateSpec
from worker.store import Store, default_store, job_key

INPUTS = "inputs"
SCORES = "scores"  # a generation job's scores.json artifact
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}


class BrokerUnreachableError(ConnectionError):
    """The message broker (Redis) does not answer."""


class WaitTimeoutError(TimeoutError):
    """A job did not end within the time waited for it."""


def _app(app: Celery | None) -> Celery:
    if app is not None:
        return app
    from worker.app import app as default_app

    return default_app


def check_broker(app: Celery | None = None, timeout: float = 3.0) -> None:
    """Connects to the broker once.

    Raises:
        BrokerUnreachableError: with the URL and what to do, when it does not answer.
    """
    app = _app(app)
    url = app.conf.broker_url
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0.2, timeout=timeout)
    except Exception as error:
        raise BrokerUnreachableError(
            f"Cannot reach the message broker at {url} ({error.__class__.__name__}: {error})."
            " Start Redis (`redis-server`) or set STYLEDROP_BROKER_URL to a reachable one."
        ) from error


def _image_format(data: bytes) -> str:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return str(image.format)


def submit(
    images: Sequence[str | Path],
    options: FinetuneOptions,
    *,
    captions: Mapping[str | Path, str] | None = None,
    parent: str | None = None,
    store: Store | None = None,
    app: Celery | None = None,
) -> jobs.Job:
    """Queues a fine-tune job.

    Args:
        images: Style image files (PNG, JPEG or WebP; 1-20).
        options: How to fine-tune (descriptor, base, adapter, steps, ...). Its `base` is
            the folder as the workers see it (None: their embedded default); when it
            exists here too, it must be a converted model folder.
        captions: Content caption per image, keyed by path or file name ("an image" if
            missing).
        parent: Id of the job this one derives from (recorded in the record's `parent`;
            round 2: the round-1 fine-tune job). It must exist.
        store: The store (default `$STYLEDROP_STORE`).
        app: The Celery app (default: `worker.app.app`).

    Returns:
        The queued job's record (with its Celery task id).

    Raises:
        ImageInputError: a bad image (nothing is stored).
        ValueError: a base folder that is not a model.
        JobNotFoundError: no `parent` job (nothing is stored).
        BrokerUnreachableError: the broker does not answer (nothing is stored).
    """
    from styledrop.inputs import load_images

    paths = [Path(p) for p in images]
    loaded = load_images(paths)  # every image is checked before anything is stored
    captions = {str(k): v.strip() for k, v in (captions or {}).items()}
    base = options.base
    if base is not None:
        folder = Path(base).expanduser().resolve()
        if folder.exists() and not (folder / "model.json").is_file():
            raise ValueError(f"{folder} is not a converted model folder (no model.json).")
        base = str(folder)
    store = store or default_store()
    app = _app(app)
    if parent is not None:
        jobs.get(store, parent)  # a malformed or unknown id is refused here
    job_id = jobs.new_job_id("finetune")
    files, inputs = [], []
    for index, (path, image) in enumerate(zip(paths, loaded, strict=True)):
        data = path.read_bytes()
        key = job_key(job_id, INPUTS, f"{index:02d}{_EXTENSIONS[_image_format(data)]}")
        caption = captions.get(str(path)) or captions.get(path.name) or DEFAULT_CAPTION
        files.append((key, data))
        inputs.append(ImageInput(key=key, name=image.name, sha256=image.sha256, caption=caption))
    spec = FinetuneSpec.of(tuple(inputs), dataclasses.replace(options, base=base))
    check_broker(app)
    for key, data in files:
        store.write_bytes(key, data)
    job = jobs.create(store, "finetune", spec.to_dict(), job_id=job_id, parent=parent)
    return _send(store, app, FINETUNE_TASK, job)


def _send(store: Store, app: Celery, task: str, job: jobs.Job) -> jobs.Job:
    """Queues the task of a created job and records its Celery task id."""
    try:
        result = app.send_task(task, args=[job.id], queue=TASK_ROUTES[task]["queue"])
    except Exception as error:
        jobs.mark_failed(store, job.id, error, context="Could not be queued")
        raise BrokerUnreachableError(
            f"Job {job.id} could not be queued on {app.conf.broker_url}: {error}"
        ) from error
    return jobs.update(store, job.id, task_id=result.id)


def _adapter_job(store: Store, job_id: str, role: str) -> jobs.Job:
    """The fine-tune job `job_id`, which must have an adapter artifact.

    Raises:
        JobNotFoundError: no such job.
        ValueError: it is not a fine-tune job that succeeded with an adapter.
    """
    job = jobs.get(store, job_id)
    if job.kind != "finetune" or "adapter" not in job.artifacts:
        raise ValueError(
            f"Job {job_id} ({role}) is a {job.kind} job that is {job.status} with no adapter;"
            " use a fine-tune job that succeeded."
        )
    return job


def submit_generate(
    source: str,
    prompts: Sequence[str],
    *,
    num_images: int = 4,
    seed: int = 0,
    lambda_a: float | None = None,
    lambda_b: float | None = None,
    content_first: float | None = None,
    negative_prompt: str = "",
    subject: str | None = None,
    gamma: float = DEFAULT_GAMMA,
    score: bool = True,
    temperature: float | None = None,
    token_temperature: float | None = None,
    store: Store | None = None,
    app: Celery | None = None,
) -> jobs.Job:
    """Queues a generation job with the adapter of a succeeded fine-tune job.

    Args:
        source: The fine-tune job id (its base and adapter are used; its style images are
            the references of the style scores).
        prompts: Content prompts (the adapter's descriptor is appended).
        num_images: Images per prompt.
        seed: Random seed.
        lambda_a: StyleDrop guidance weight (None: the paper's 1).
        lambda_b: Classifier-free guidance weight (None: the base's stored value, else
            the paper's 5). The job record's `guidance` says which values were used.
        content_first: The fraction of decoding steps drawn from the content prompt alone
            before StyleDrop guidance (None: the base's, else 0, the paper's rule).
        negative_prompt: The negative branch's prompt.
        subject: Id of another succeeded fine-tune job whose adapter is the subject
            adapter of a style + subject composition (None: style only). It must be
            trained on the same base.
        gamma: Subject weight of the composition, in [0, 1].
        score: Score every image with CLIP (`scores.json`, see `read_scores`).
        temperature: MaskGIT choice temperature (None: the base's; the paper's 4.5 gives
            more varied candidates for a review). The record's `decoding` says what was used.
        token_temperature: Softmax temperature of the token draws (None: the base's;
            the paper's 1).
        store: The store (default `$STYLEDROP_STORE`).
        app: The Celery app (default: `worker.app.app`).

    Raises:
        JobNotFoundError: no such fine-tune job (source or subject).
        ValueError: a job has no adapter (yet), the bases differ, or bad settings.
        BrokerUnreachableError: the broker does not answer (nothing is stored).
    """
    store = store or default_store()
    app = _app(app)
    parent = _adapter_job(store, source, "the style source")
    subject_adapter = None
    if subject is not None:
        other = _adapter_job(store, subject, "the subject")
        if other.inputs.get("base") != parent.inputs.get("base"):
            raise ValueError(
                f"The subject job {subject} was trained on another base"
                f" ({other.inputs.get('base') or 'the default'}) than {source}"
                f" ({parent.inputs.get('base') or 'the default'})."
            )
        subject_adapter = other.artifacts["adapter"]
    spec = GenerateSpec(
        adapter=parent.artifacts["adapter"],
        prompts=tuple(prompts),
        num_images=num_images,
        seed=seed,
        base=parent.inputs.get("base"),
        lambda_a=lambda_a,
        lambda_b=lambda_b,
        content_first=content_first,
        negative_prompt=negative_prompt,
        source_job=source,
        subject_adapter=subject_adapter,
        subject_job=subject,
        gamma=gamma,
        score=score,
        temperature=temperature,
        token_temperature=token_temperature,
    )
    check_broker(app)
    job = jobs.create(store, "generate", spec.to_dict(), parent=source)
    return _send(store, app, GENERATE_TASK, job)


def read_scores(job_id: str, *, store: Store | None = None) -> list[dict[str, Any]]:
    """The CLIP scores of a generation job's images (its `scores.json`).

    Returns:
        One entry per image, in image order: {"id": "000.png", "key": store key,
        "prompt": content prompt, "text_score": float, "style_score": float or None};
        an empty list when the job has no scores (yet, or it ran with `score=False`).

    Raises:
        InvalidJobIdError: a malformed id.
        JobNotFoundError: no such job.
    """
    store = store or default_store()
    key = jobs.get(store, job_id).artifacts.get(SCORES)
    return list(store.read_json(key)) if key else []


def _candidates(store: Store, job: jobs.Job, descriptor: str) -> dict[str, tuple[str, str]]:
    """{candidate id: (image key, content prompt)} of a succeeded generation job."""
    scores = read_scores(job.id, store=store)
    if scores:
        return {entry["id"]: (entry["key"], entry["prompt"]) for entry in scores}
    spec = GenerateSpec.from_dict(job.inputs)  # scored or not, the ids are the file names
    found = {}
    for index, prompt in enumerate(spec.image_prompts()):
        key = job.artifacts.get(f"image-{index:03d}")
        if key is not None:
            found[key.rsplit("/", 1)[-1]] = (key, without_descriptor(prompt, descriptor))
    return found


def submit_round2(
    generate_job_id: str,
    selected_ids: Sequence[str],
    *,
    adapter: str = "r2",
    steps: int = DEFAULT_STEPS,
    learning_rate: float | None = None,
    seed: int = 0,
    batch_size: int = 8,
    variants_per_image: int = 8,
    checkpoint_every: int | None = None,
    store: Store | None = None,
    app: Celery | None = None,
) -> jobs.Job:
    """Queues the next round's fine-tune job on images picked from a generation job.

    Each selected image is captioned with its content prompt (the prompt without the
    descriptor, as `styledrop.rounds.selection_examples` does); the descriptor and base
    are those of the generation job's source fine-tune job, which becomes the new job's
    `parent`, and the round is the parent's round + 1.

    Args:
        generate_job_id: A succeeded generation job.
        selected_ids: Candidate ids ("000.png", as in its scores.json), in any order, each
            once.
        adapter: Adapter kind (the paper's round 2: "r2").
        steps: Optimizer steps.
        learning_rate: Adam learning rate (None: the kind's default).
        seed: Random seed.
        batch_size: Examples per step.
        variants_per_image: Augmented crops per image.
        checkpoint_every: Steps between checkpoints (default: 100, or fewer for short runs).
        store: The store (default `$STYLEDROP_STORE`).
        app: The Celery app (default: `worker.app.app`).

    Returns:
        The queued job's record.

    Raises:
        JobNotFoundError: no such generation job, or its source job is gone.
        ValueError: not a succeeded generation job of a fine-tune job, no or unknown or
            repeated ids, or bad settings.
        BrokerUnreachableError: the broker does not answer (nothing is stored).
    """
    store = store or default_store()
    pool = jobs.get(store, generate_job_id)
    if pool.kind != "generate" or pool.status != "succeeded":
        raise ValueError(
            f"Job {generate_job_id} is a {pool.kind} job that is {pool.status}; select images"
            " from a generation job that succeeded."
        )
    source_id = pool.inputs.get("source_job") or pool.parent
    if not source_id:
        raise ValueError(f"Job {generate_job_id} was not made from a fine-tune job.")
    source = jobs.get(store, source_id)
    if source.kind != "finetune":
        raise ValueError(f"Job {generate_job_id}'s source {source_id} is not a fine-tune job.")
    previous = FinetuneSpec.from_dict(source.inputs)
    selected = [str(i) for i in selected_ids]
    repeated = sorted({i for i in selected if selected.count(i) > 1})
    if not selected or repeated:
        raise ValueError(
            f"Select each image once; repeated: {', '.join(repeated)}." if repeated
            else f"Select at least one image of {generate_job_id}."
        )  # fmt: skip
    candidates = _candidates(store, pool, previous.descriptor)
    unknown = [i for i in selected if i not in candidates]
    if unknown:
        raise ValueError(
            f"No image(s) {', '.join(unknown)} in {generate_job_id}; its images are"
            f" {', '.join(sorted(candidates)) or 'none'}."
        )
    paths, captions = [], {}
    for candidate in selected:
        key, prompt = candidates[candidate]
        path = store.fetch(key)
        paths.append(path)
        captions[str(path)] = prompt
    options = FinetuneOptions(
        previous.descriptor, base=previous.base, adapter=adapter, steps=steps,
        learning_rate=learning_rate, batch_size=batch_size, seed=seed,
        variants_per_image=variants_per_image, checkpoint_every=checkpoint_every,
        round=previous.round + 1, selected_from=pool.id,
    )  # fmt: skip
    return submit(paths, options, captions=captions, parent=source.id, store=store, app=app)


def list_jobs(
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
    store: Store | None = None,
) -> list[jobs.Job]:
    """Job records, newest first (optionally one status and/or kind only)."""
    return jobs.list_jobs(store or default_store(), status=status, kind=kind, limit=limit)


def show(job_id: str, *, store: Store | None = None) -> jobs.Job:
    """One job record.

    Raises:
        InvalidJobIdError: a malformed id.
        JobNotFoundError: no such job.
    """
    return jobs.get(store or default_store(), job_id)


def cancel(job_id: str, *, store: Store | None = None, app: Celery | None = None) -> jobs.Job:
    """Cancels a job: a queued one ends now, a running one stops at its next step.

    A running job checkpoints and its worker records "cancelled"; `wait` sees it end.
    A job that has already ended is returned unchanged.

    Raises:
        InvalidJobIdError: a malformed id.
        JobNotFoundError: no such job.
    """
    store = store or default_store()
    job = jobs.get(store, job_id)
    if job.is_terminal:
        return job
    jobs.request_cancel(store, job_id)
    was_queued: dict[str, bool] = {"queued": False}

    def change(record: jobs.Job) -> None:
        if record.status == "queued":
            was_queued["queued"] = True
            record.status, record.finished = "cancelled", jobs.utc_now()
            record.error = "Cancelled before it started."

    job = jobs.update(store, job_id, change)
    if was_queued["queued"] and job.task_id:
        # Best effort: the worker checks the record too, so a lost revoke is harmless.
        with contextlib.suppress(Exception):
            _app(app).control.revoke(job.task_id)
    return job


def wait(
    job_id: str,
    *,
    timeout: float | None = None,
    poll: float = 1.0,
    on_update: Callable[[jobs.Job], Any] | None = None,
    store: Store | None = None,
) -> jobs.Job:
    """Polls the job record until the job ends.

    Args:
        job_id: The job.
        timeout: Seconds to wait at most (None: no limit).
        poll: Seconds between reads of the record.
        on_update: Called with the record after each read (progress display).
        store: The store.

    Returns:
        The record of the ended job.

    Raises:
        WaitTimeoutError: when it has not ended within `timeout`.
        JobNotFoundError: no such job.
    """
    store = store or default_store()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = jobs.get(store, job_id)
        if on_update is not None:
            on_update(job)
        if job.is_terminal:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"Job {job_id} is still {job.status} after {timeout:g} s"
                f" (step {job.progress.get('step', 0)} of {job.progress.get('total', '?')})."
            )
        delay = poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
        time.sleep(delay)


def submit_demo(
    *,
    style_image: str | Path | None = None,
    base: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    store: Store | None = None,
    app: Celery | None = None,
) -> jobs.Job:
    """Queues the demo (`styledrop.demo.run_demo`) as a job on the training queue.

    Args:
        style_image: The style image (None: the one shipped with the package); it is
            checked and copied into the job's `inputs/`.
        base: Base model folder as the workers see it (None: their embedded default).
        config: `DemoConfig` fields to override (caption, descriptor, steps, ...).
        store: The store (default `$STYLEDROP_STORE`).
        app: The Celery app (default: `worker.app.app`).

    Raises:
        ImageInputError: a bad style image (nothing is stored).
        BrokerUnreachableError: the broker does not answer (nothing is stored).
    """
    from worker.app import DEMO_TASK

    store = store or default_store()
    app = _app(app)
    job_id = jobs.new_job_id("demo")
    inputs: dict[str, Any] = {
        "style_image": None,
        "base": str(Path(base).expanduser().resolve()) if base is not None else None,
        "config": dict(config or {}),
    }
    data = None
    if style_image is not None:
        from styledrop.inputs import load_images

        load_images([Path(style_image)])  # checked before anything is stored
        data = Path(style_image).read_bytes()
        name = f"style{_EXTENSIONS[_image_format(data)]}"
        inputs["style_image"] = job_key(job_id, INPUTS, name)
    check_broker(app)
    if data is not None:
        store.write_bytes(inputs["style_image"], data)
    job = jobs.create(store, "demo", inputs, job_id=job_id)
    return _send(store, app, DEMO_TASK, job)
