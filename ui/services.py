"""What every page shares: the store, the Celery app, job lookups and labels.

The store is `$STYLEDROP_STORE` and the broker `$STYLEDROP_BROKER_URL`, as for the CLI;
both are cached per value, so a changed environment gets new ones.
"""

from __future__ import annotations

import os

import streamlit as st
from celery import Celery

from worker import jobs
from worker.app import broker_url, make_app
from worker.client import BrokerUnreachableError, check_broker
from worker.store import STORE_ENV, Store

POLL_SECONDS = 2.0  # how often a running job's view refreshes


@st.cache_resource(show_spinner=False)
def _store(root: str | None) -> Store:
    return Store(root)


@st.cache_resource(show_spinner=False)
def _celery(url: str) -> Celery:
    return make_app(url)


def store() -> Store:
    """The job store of this environment."""
    return _store(os.environ.get(STORE_ENV))


def celery_app() -> Celery:
    """The Celery app on this environment's broker (sends tasks by name only)."""
    return _celery(broker_url())


@st.cache_data(ttl=10, show_spinner=False)
def _broker_problem(url: str) -> str | None:
    try:
        check_broker(_celery(url), timeout=1.0)
    except BrokerUnreachableError as error:
        return str(error)
    return None


def broker_problem() -> str | None:
    """Why the broker does not answer (None when it does); re-checked every 10 s."""
    return _broker_problem(broker_url())


def finetune_jobs(succeeded_only: bool = False) -> list[jobs.Job]:
    """Fine-tune jobs, newest first; only those with an adapter when `succeeded_only`."""
    found = jobs.list_jobs(store(), kind="finetune")
    if succeeded_only:
        found = [j for j in found if j.status == "succeeded" and "adapter" in j.artifacts]
    return found


def generate_jobs(source: str | None = None, succeeded_only: bool = False) -> list[jobs.Job]:
    """Generation jobs (of fine-tune job `source` only, if given), newest first."""
    found = jobs.list_jobs(store(), kind="generate")
    if source is not None:
        found = [j for j in found if j.inputs.get("source_job") == source]
    if succeeded_only:
        found = [j for j in found if j.status == "succeeded"]
    return found


def job_label(job: jobs.Job) -> str:
    """One line naming a job: id, round or prompts, status."""
    if job.kind == "finetune":
        what = f"round {job.inputs.get('round', 1)} · {job.inputs.get('descriptor', '')}"
    else:
        prompts = job.inputs.get("prompts", [])
        what = f"{len(prompts)} prompt(s) from {job.inputs.get('source_job') or 'an adapter'}"
    return f"{job.id} · {what} · {job.status}"


def labels(found: list[jobs.Job]) -> dict[str, str]:
    """{job id: label} for a select box's `format_func`."""
    return {job.id: job_label(job) for job in found}


def pick_job(title: str, found: list[jobs.Job], key: str, help: str | None = None) -> str | None:
    """A select box over jobs that remembers the last job chosen anywhere in the app.

    Returns:
        The chosen job id, or None when `found` is empty.
    """
    if not found:
        return None
    names = labels(found)
    ids = list(names)
    remembered = st.session_state.get("job_id")
    index = ids.index(remembered) if remembered in ids else 0
    chosen = st.selectbox(title, ids, index=index, format_func=names.get, key=key, help=help)
    return chosen


def image_bytes(key: str) -> bytes:
    """A stored file's bytes (images, adapters)."""
    return store().read_bytes(key)
