"""Job records: one JSON file per job in the store (`jobs/<id>/job.json`).

A record says what a job is (kind, inputs), where it stands (status, progress, attempts,
timestamps) and what it produced (artifacts: store paths). The client creates it; the
worker running the job updates it. A cancel request is a separate marker file, so a
progress write racing with it cannot lose it.

Statuses: queued -> running -> succeeded | failed | cancelled (a queued job can also go
straight to cancelled). Timestamps are UTC ISO 8601 strings.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from worker.store import CANCEL_FILE, JOB_FILE, JOBS, Store, job_key, validate_job_id

KINDS = ("finetune", "generate", "demo")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
ID_PREFIXES = {"finetune": "ft", "generate": "gen", "demo": "demo"}
_ID_ALPHABET = string.ascii_lowercase + string.digits

log = logging.getLogger(__name__)


class JobNotFoundError(LookupError):
    """No job with that id in the store."""


class JobRecordError(ValueError):
    """A job record that cannot be read (truncated, not JSON, or missing its id or kind)."""


def utc_now() -> str:
    """The current time as a UTC ISO 8601 string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id(kind: str) -> str:
    """A short, url-safe, unique job id: `<kind prefix>-<UTC date>-<6 random characters>`."""
    if kind not in KINDS:
        raise ValueError(f"Unknown job kind {kind!r}; use one of {', '.join(KINDS)}.")
    day = datetime.now(UTC).strftime("%Y%m%d")
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    return validate_job_id(f"{ID_PREFIXES[kind]}-{day}-{suffix}")


@dataclass
class Job:
    """One job record.

    Attributes:
        id: Job id (see `new_job_id`).
        kind: "finetune", "generate" or "demo".
        status: One of `STATUSES`.
        created: When it was submitted.
        started: When a worker last started (or resumed) it.
        finished: When it reached a terminal status.
        progress: {"step", "total", "loss", "eta_seconds", "previews": [store paths],
            "updated"} for fine-tuning; {"done", "total"} for generation.
        inputs: What the job was submitted with (files as store paths).
        artifacts: What it produced: {name: store path}.
        error: Why it failed (or how it was cancelled).
        attempts: Deliveries to a worker so far (a redelivered job resumes).
        worker: Host name of the worker that ran it last.
        task_id: The Celery task id (for revoking a queued job).
        parent: The job it derives from (round 2: the round-1 fine-tune).
        heartbeat: When the worker running it last said it is alive (`worker.heartbeat`).
        device: What computed it: "cpu:cpu (float32)", "gpu:NVIDIA H200 (bfloat16)".
        guidance: The StyleDrop guidance a generation job sampled with,
            {"lambda_a": 1.0, "lambda_b": 0.5, "content_first": 0.75}: its inputs, else
            its base's, else the paper's (`styledrop.guidance.model_guidance`).
        decoding: The MaskGIT temperatures a generation job sampled with,
            {"temperature": 4.5, "token_temperature": 1.0}: its inputs, else its base's
            (the choice temperature may be a [start, end] pair).
    """

    id: str
    kind: str
    status: str = "queued"
    created: str = field(default_factory=utc_now)
    started: str | None = None
    finished: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    task_id: str | None = None
    parent: str | None = None
    heartbeat: str | None = None
    device: str | None = None
    guidance: dict[str, float] | None = None
    decoding: dict[str, Any] | None = None

    def sampling_summary(self) -> str:
        """How a generation job sampled, for people.

        Returns:
            "lambda_A 1, lambda_B 5; temperatures 4.5 / 1" (choice / token temperature; a
            choice schedule reads "4.5 to 0"), the parts the record has: empty before a
            worker has started the job, and for other kinds.
        """
        parts = []
        if self.guidance:
            guidance = self.guidance
            parts.append(f"lambda_A {guidance['lambda_a']:g}, lambda_B {guidance['lambda_b']:g}")
            if guidance.get("content_first"):  # records from before it existed have none
                parts[-1] += f", content first {guidance['content_first']:g}"
        if self.decoding:
            choice = self.decoding["temperature"]
            choice = (
                " to ".join(f"{t:g}" for t in choice) if isinstance(choice, list) else f"{choice:g}"
            )
            parts.append(f"temperatures {choice} / {self.decoding['token_temperature']:g}")
        return "; ".join(parts)

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A record from its JSON data (unknown keys from newer versions are ignored).

        Raises:
            JobRecordError: not an object, or its id, kind or status is missing or wrong.
        """
        if not isinstance(data, dict):
            raise JobRecordError(f"a job record is a JSON object, not {type(data).__name__}")
        problems = [
            name for name, allowed in (("kind", KINDS), ("status", STATUSES))
            if data.get(name, "queued" if name == "status" else None) not in allowed
        ]  # fmt: skip
        if not isinstance(data.get("id"), str):
            problems.insert(0, "id")
        if problems:
            raise JobRecordError(f"its {', '.join(problems)} missing or invalid")
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _check(kind: str | None = None, status: str | None = None) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"Unknown job kind {kind!r}; use one of {', '.join(KINDS)}.")
    if status is not None and status not in STATUSES:
        raise ValueError(f"Unknown job status {status!r}; use one of {', '.join(STATUSES)}.")


def create(
    store: Store,
    kind: str,
    inputs: dict[str, Any],
    *,
    job_id: str | None = None,
    parent: str | None = None,
) -> Job:
    """Writes a new queued job record.

    Args:
        store: The store.
        kind: "finetune", "generate" or "demo".
        inputs: What the job needs (JSON-ready; files as store paths).
        job_id: Id to use (default: a new one from `new_job_id`); must not exist yet.
        parent: Id of the job this one derives from.

    Raises:
        ValueError: unknown kind, invalid or already used id.
    """
    _check(kind)
    job_id = validate_job_id(job_id) if job_id else new_job_id(kind)
    with store.lock(job_id):
        if store.exists(job_key(job_id, JOB_FILE)):
            raise ValueError(f"A job with id {job_id!r} already exists.")
        job = Job(id=job_id, kind=kind, inputs=inputs, parent=parent)
        store.write_json(job_key(job_id, JOB_FILE), job.to_dict())
    return job


def get(store: Store, job_id: str) -> Job:
    """Reads a job record.

    Raises:
        InvalidJobIdError: for a malformed id.
        JobNotFoundError: when there is no such job.
    """
    key = job_key(job_id, JOB_FILE)
    try:
        data = store.read_json(key)
    except FileNotFoundError:
        raise JobNotFoundError(
            f"No job {job_id!r} in the store {store.url}; `styledrop jobs list` shows the jobs."
        ) from None
    except ValueError as error:  # truncated or not JSON (UnicodeDecodeError included)
        raise JobRecordError(_unreadable(store, key, f"it is not JSON ({error})")) from None
    try:
        return Job.from_dict(data)
    except JobRecordError as error:
        raise JobRecordError(_unreadable(store, key, str(error))) from None


def _unreadable(store: Store, key: str, why: str) -> str:
    return (
        f"The job record {store.url}/{key} cannot be read: {why}. Restore it from a backup"
        " or delete the job's folder; other jobs are not affected."
    )


def list_jobs(
    store: Store,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[Job]:
    """Job records, newest first, optionally only one status and/or kind."""
    _check(kind, status)
    found = []
    for name in store.list_names(JOBS):
        try:
            job = get(store, name)
        except JobNotFoundError:
            continue  # a folder without a record yet (being created)
        except (JobRecordError, ValueError) as error:  # a malformed record or folder name
            log.warning("Skipping %s: %s", name, error)
            continue
        if (status is None or job.status == status) and (kind is None or job.kind == kind):
            found.append(job)
    found.sort(key=lambda job: (job.created, job.id), reverse=True)
    return found[:limit] if limit is not None else found


def update(
    store: Store,
    job_id: str,
    change: Callable[[Job], None] | None = None,
    **values: Any,
) -> Job:
    """Changes a job record atomically (read, modify, write under the job's lock).

    Args:
        store: The store.
        job_id: The job.
        change: Optional function that modifies the record in place.
        **values: Attributes to set (`status="running"`, `progress={...}`).

    Returns:
        The record as written.
    """
    unknown = set(values) - {f.name for f in fields(Job)}
    if unknown:
        raise ValueError(f"Job records have no field(s) {', '.join(sorted(unknown))}.")
    if "status" in values:
        _check(status=values["status"])
    with store.lock(job_id):
        job = get(store, job_id)
        for name, value in values.items():
            setattr(job, name, value)
        if change is not None:
            change(job)
        store.write_json(job_key(job_id, JOB_FILE), job.to_dict())
    return job


def mark_failed(store: Store, job_id: str, error: BaseException, context: str = "") -> Job:
    """Ends a job "failed", its error naming the exception's class and message.

    Args:
        store: The store holding the job.
        job_id: The job.
        error: What went wrong.
        context: Words put before the error ("Could not be queued", say).

    Returns:
        The updated record.
    """
    message = f"{error.__class__.__name__}: {error}"
    message = f"{context}: {message}" if context else message
    return update(store, job_id, status="failed", error=message, finished=utc_now())


def request_cancel(store: Store, job_id: str) -> None:
    """Leaves the cancel marker that a running job polls (the record is not touched).

    Raises:
        JobNotFoundError: when there is no such job.
    """
    get(store, job_id)
    store.write_json(job_key(job_id, CANCEL_FILE), {"requested": utc_now()})


def is_cancel_requested(store: Store, job_id: str) -> bool:
    """Whether someone asked to cancel the job."""
    return store.exists(job_key(job_id, CANCEL_FILE))
