"""Fixtures for the app tests: a real Redis, and a store with real finished jobs.

The finished jobs are made by the workers' own job functions, run in this process on the
tiny zoo (a few steps each): two fine-tune jobs (a style and a "subject"), and two
scored generation jobs of the style with the same prompts and different seeds. Their
messages stay queued in Redis (no worker consumes them here); the pages only read the
records and files in the store, and queue new jobs on the broker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.finetune_spec import FinetuneOptions
from worker.store import Store

ROOT = Path(__file__).resolve().parents[2]
STYLE_IMAGE = ROOT / "styledrop/data/demo_style_house_line_art.png"
PAGES = ROOT / "ui/pages"
PROMPTS = ["a cat", "a boat"]


@dataclass
class Finished:
    """The ids of the finished jobs in the session store."""

    store_dir: Path
    broker: str
    style: str
    subject: str
    pool: str
    other_pool: str


def _app(broker: str):
    from worker.app import make_app

    return make_app(broker)


@pytest.fixture(scope="session")
def finished(redis_server, tiny_zoo, tmp_path_factory) -> Finished:
    """The finished jobs, trained and scored on the tiny zoo (its base and judge)."""
    saved = os.environ.get("STYLEDROP_ZOO")
    os.environ["STYLEDROP_ZOO"] = str(tiny_zoo)  # the workers' embedded default, for now
    try:
        return _finished_jobs(redis_server, tmp_path_factory)
    finally:
        if saved is None:
            os.environ.pop("STYLEDROP_ZOO", None)
        else:
            os.environ["STYLEDROP_ZOO"] = saved


def _finished_jobs(redis, tmp_path_factory) -> Finished:
    from worker import client
    from worker.finetune_job import run_finetune_job
    from worker.generate_job import run_generate_job

    store_dir = tmp_path_factory.mktemp("store")
    store, broker = Store(store_dir), redis.url(redis.new_database())
    app = _app(broker)

    def finetune(descriptor: str, steps: int) -> str:
        options = FinetuneOptions(descriptor, steps=steps, batch_size=2)
        job = client.submit(
            [STYLE_IMAGE], options, captions={STYLE_IMAGE.name: "a house"}, store=store, app=app
        )
        run_finetune_job(store, job.id, "test-worker")
        assert client.show(job.id, store=store).status == "succeeded"
        return job.id

    def generate(source: str, seed: int) -> str:
        job = client.submit_generate(source, PROMPTS, num_images=2, seed=seed, store=store, app=app)
        run_generate_job(store, job.id, "test-worker")
        assert client.show(job.id, store=store).status == "succeeded"
        return job.id

    style = finetune("in line art style", 3)
    subject = finetune("in a subject style", 2)
    return Finished(
        store_dir, broker, style, subject, generate(style, seed=0), generate(style, seed=1)
    )


@pytest.fixture
def service(finished, monkeypatch) -> Finished:
    """The environment the app reads: the session store and a broker database."""
    monkeypatch.setenv("STYLEDROP_STORE", str(finished.store_dir))
    monkeypatch.setenv("STYLEDROP_BROKER_URL", finished.broker)
    return finished


@pytest.fixture
def empty_service(redis_server, tmp_path, monkeypatch) -> tuple[Store, str]:
    """An empty store of the test's own and a broker database of its own."""
    broker = redis_server.url(redis_server.new_database())
    monkeypatch.setenv("STYLEDROP_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("STYLEDROP_BROKER_URL", broker)
    return Store(tmp_path / "store"), broker
