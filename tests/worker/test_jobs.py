"""Job records and their lifecycle, the claim rules of a delivered job, client and CLI errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from styledrop.terms import DEFAULT_CAPTION
from worker import client, jobs
from worker.claim import MAX_ATTEMPTS, claim, skipped
from worker.finetune_spec import FinetuneOptions, FinetuneSpec, ImageInput
from worker.store import InvalidJobIdError, Store

SHORT = FinetuneOptions("in x style", steps=3)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def _inputs() -> dict:
    image = ImageInput(key="jobs/x/inputs/00.png", name="a.png", sha256="0" * 64, caption="a")
    return FinetuneSpec(images=(image,), descriptor="in x style", steps=5).to_dict()


def test_record_lifecycle(store):
    job = jobs.create(store, "finetune", _inputs())
    assert job.id.startswith("ft-") and job.status == "queued" and job.attempts == 0
    assert jobs.get(store, job.id) == job
    with pytest.raises(ValueError, match="already exists"):
        jobs.create(store, "finetune", {}, job_id=job.id)
    running = jobs.update(store, job.id, status="running", progress={"step": 1, "total": 5})
    assert jobs.get(store, job.id).progress == {"step": 1, "total": 5}
    assert not running.is_terminal
    with pytest.raises(ValueError, match="status"):
        jobs.update(store, job.id, status="exploded")
    with pytest.raises(ValueError, match="no field"):
        jobs.update(store, job.id, colour="red")
    assert not jobs.is_cancel_requested(store, job.id)
    jobs.request_cancel(store, job.id)
    assert jobs.is_cancel_requested(store, job.id)
    assert jobs.get(store, job.id).status == "running"  # the marker does not touch the record
    done = jobs.update(store, job.id, status="cancelled")
    assert done.is_terminal
    other = jobs.create(store, "generate", {})
    assert [j.id for j in jobs.list_jobs(store)] == [other.id, job.id]  # newest first
    assert [j.id for j in jobs.list_jobs(store, status="cancelled")] == [job.id]
    assert [j.id for j in jobs.list_jobs(store, kind="generate")] == [other.id]
    assert FinetuneSpec.from_dict(jobs.get(store, job.id).inputs).steps == 5


def test_unknown_and_malformed_ids(store):
    with pytest.raises(jobs.JobNotFoundError, match="jobs list"):
        jobs.get(store, "ft-nothere")
    with pytest.raises(InvalidJobIdError):
        jobs.get(store, "../../etc")
    with pytest.raises(InvalidJobIdError):
        jobs.create(store, "finetune", {}, job_id="../x")
    with pytest.raises(jobs.JobNotFoundError):
        jobs.request_cancel(store, "ft-nothere")


def test_claim_counts_attempts_and_skips_ended_jobs(store):
    job = jobs.create(store, "finetune", _inputs())
    first = claim(store, job.id, "w1@host")
    assert (first.status, first.attempts, first.worker) == ("running", 1, "w1@host")
    jobs.update(store, job.id, heartbeat="2026-01-01T00:00:00.000Z")  # w1 went quiet: lost
    again = claim(store, job.id, "w2@host")  # redelivered after w1 was lost
    assert (again.attempts, again.worker) == (2, "w2@host")
    jobs.update(store, job.id, status="succeeded")
    assert claim(store, job.id, "w3@host") is None  # a finished job is not run again
    assert jobs.get(store, job.id).attempts == 2
    assert skipped(store, job.id) == {"job_id": job.id, "status": "succeeded", "skipped": True}


def test_mark_failed_names_the_error_and_ends_the_job(store):
    job = jobs.create(store, "finetune", _inputs())
    record = jobs.mark_failed(store, job.id, ValueError("bad step count"))
    assert record.status == "failed" and record.is_terminal and record.finished
    assert record.error == "ValueError: bad step count"
    other = jobs.create(store, "finetune", _inputs())
    queued = jobs.mark_failed(store, other.id, OSError("refused"), context="Could not be queued")
    assert queued.error == "Could not be queued: OSError: refused"
    assert jobs.get(store, other.id) == queued


def test_claim_ends_a_job_cancelled_before_it_ran(store):
    job = jobs.create(store, "finetune", _inputs())
    jobs.request_cancel(store, job.id)
    assert claim(store, job.id, "w1@host") is None
    record = jobs.get(store, job.id)
    assert record.status == "cancelled" and record.attempts == 0 and record.finished


def test_claim_gives_up_after_max_attempts(store):
    job = jobs.create(store, "finetune", _inputs())
    for _ in range(MAX_ATTEMPTS):
        assert claim(store, job.id, "w@host") is not None
    assert claim(store, job.id, "w@host") is None
    record = jobs.get(store, job.id)
    assert record.status == "failed" and "Gave up" in record.error


def test_spec_validation():
    image = ImageInput(key="k", name="a.png", sha256="", caption=DEFAULT_CAPTION)
    with pytest.raises(ValueError, match="steps"):
        FinetuneSpec(images=(image,), descriptor="d", steps=0)
    with pytest.raises(ValueError, match="adapter"):
        FinetuneSpec(images=(image,), descriptor="d", adapter="r9")
    with pytest.raises(ValueError, match="image"):
        FinetuneSpec(images=(), descriptor="d")
    with pytest.raises(ValueError, match="descriptor is empty; the learning rate"):
        FinetuneOptions(" ", learning_rate=0.0)


def test_a_spec_is_the_options_with_the_images():
    image = ImageInput(key="k", name="a.png", sha256="", caption=DEFAULT_CAPTION)
    options = FinetuneOptions("d", base=Path("/m"), steps=30, preview_prompts=["a cat"])
    assert options.checkpoint_every is None  # chosen with the steps, in the spec
    spec = FinetuneSpec.of((image,), options)
    assert (spec.images, spec.base, spec.steps) == ((image,), "/m", 30)
    assert (spec.checkpoint_every, spec.preview_prompts) == (3, ("a cat",))
    assert FinetuneSpec.of((image,), FinetuneOptions("d", steps=5000)).checkpoint_every == 100
    assert FinetuneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_submit_to_an_unreachable_broker_stores_nothing(store, style_image):
    from worker.app import make_app

    dead = make_app(broker="redis://127.0.0.1:1/0", visibility=5)
    with pytest.raises(client.BrokerUnreachableError, match="redis-server"):
        client.submit([style_image], SHORT, store=store, app=dead)
    assert client.list_jobs(store=store) == []
    assert store.list_names("jobs") == []


def test_submit_copies_the_images_and_queues_the_task(service, style_image):
    job = client.submit(
        [style_image], FinetuneOptions("in stripes style", steps=4),
        captions={"stripes.png": "a grid"}, store=service.store, app=service.app,
    )  # fmt: skip
    spec = FinetuneSpec.from_dict(job.inputs)
    assert spec.images[0].caption == "a grid" and spec.images[0].name == "stripes.png"
    assert service.store.read_bytes(spec.images[0].key) == style_image.read_bytes()
    assert spec.images[0].key == f"jobs/{job.id}/inputs/00.png"
    assert spec.checkpoint_every == 1 and job.task_id
    assert service.queue_length("training") == 1
    message = json.loads(service.redis.lindex("training", 0))
    assert message["headers"]["task"] == "styledrop.finetune"
    assert message["content-type"] == "application/json"
    # A queued job is cancelled at once (and revoked).
    cancelled = client.cancel(job.id, store=service.store, app=service.app)
    assert cancelled.status == "cancelled" and cancelled.finished
    assert client.cancel(job.id, store=service.store, app=service.app).status == "cancelled"
    with pytest.raises(client.WaitTimeoutError):
        other = client.submit([style_image], SHORT, store=service.store, app=service.app)
        client.wait(other.id, timeout=0.3, poll=0.1, store=service.store)


def test_a_bad_image_is_refused_before_anything_is_stored(store, tmp_path):
    from styledrop.inputs import ImageInputError

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageInputError, match=r"notes\.png"):
        client.submit([bad], FinetuneOptions("in x style"), store=store)
    assert store.list_names("jobs") == []


def test_cli_errors_are_clear(store, capsys, style_image, monkeypatch):
    for name in ("STYLEDROP_BROKER_URL", "STYLEDROP_STORE", "JAX_COMPILATION_CACHE_DIR"):
        monkeypatch.setenv(name, "")  # `styledrop worker` sets them; restored afterwards
    root = str(store.root)
    assert main(["jobs", "show", "../../etc/passwd", "--store", root]) == 2
    assert "Invalid job id" in capsys.readouterr().err
    assert main(["jobs", "show", "ft-20260101-nope00", "--store", root]) == 2
    assert "No job 'ft-20260101-nope00'" in capsys.readouterr().err
    assert main(["jobs", "cancel", "ft-20260101-nope00", "--store", root]) == 2
    assert "No job" in capsys.readouterr().err
    code = main(["jobs", "submit", str(style_image), "--descriptor", "in x style", "--store",
                 root, "--broker", "redis://127.0.0.1:1/0"])  # fmt: skip
    assert code == 2
    assert "Cannot reach the message broker at redis://127.0.0.1:1/0" in capsys.readouterr().err
    assert main(["worker", "--broker", "redis://127.0.0.1:1/0", "--store", root]) == 2
    assert "Cannot reach the message broker" in capsys.readouterr().err
    assert main(["jobs", "list", "--store", root]) == 0
    assert "No jobs" in capsys.readouterr().out


def test_cli_submit_list_show_cancel_wait(service, capsys, style_image):
    common = ["--store", str(service.store.root), "--broker", service.broker]
    assert main(["jobs", "submit", str(style_image), "--descriptor", "in x style", "--steps",
                 "3", "--caption", "stripes.png=a grid", *common]) == 0  # fmt: skip
    job_id = capsys.readouterr().out.strip()
    assert main(["jobs", "list", "--json", *common]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)] == [job_id]
    assert main(["jobs", "show", job_id, "--json", *common]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "queued" and record["inputs"]["images"][0]["caption"] == "a grid"
    assert main(["jobs", "cancel", job_id, *common]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["jobs", "wait", job_id, "--timeout", "5", "--json", *common]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert main(["jobs", "generate", job_id, "--prompt", "a dog", *common]) == 2
    assert "no adapter" in capsys.readouterr().err
    hot = ["--prompt", "a dog", "--token-temperature", "0", *common]
    assert main(["jobs", "generate", job_id, *hot]) == 2  # refused before the job is read
    assert "--token-temperature must be positive" in capsys.readouterr().err


def test_the_client_and_jobs_cli_do_not_import_jax(tmp_path):
    code = (
        "import sys\n"
        "import worker.client\n"
        "from cli.main import main\n"
        f"assert main(['jobs', 'list', '--store', {str(tmp_path)!r}]) == 0\n"
        f"assert main(['jobs', 'show', 'ft-x', '--store', {str(tmp_path)!r}]) == 2\n"
        "heavy = sorted(m for m in ('jax', 'torch', 'flax') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_sampling_summary_names_what_the_record_has():
    job = jobs.Job(id="gen-x", kind="generate")
    assert job.sampling_summary() == ""  # not started yet
    job.guidance = {"lambda_a": 1.0, "lambda_b": 0.5}
    assert job.sampling_summary() == "lambda_A 1, lambda_B 0.5"
    job.decoding = {"temperature": [4.5, 0.0], "token_temperature": 1.0}  # a schedule
    assert job.sampling_summary() == "lambda_A 1, lambda_B 0.5; temperatures 4.5 to 0 / 1"


def test_generate_and_round_spec_validation():
    from worker.generate_spec import GenerateSpec

    spec = GenerateSpec(adapter="a", prompts=("x", "y"), num_images=2)
    assert (spec.score, spec.gamma, spec.subject_adapter) == (True, 0.6, None)
    assert spec.image_prompts() == ["x", "x", "y", "y"]
    assert GenerateSpec.from_dict({"adapter": "a", "prompts": ["x"]}).score is True
    with pytest.raises(ValueError, match="gamma"):
        GenerateSpec(adapter="a", prompts=("x",), gamma=1.5)
    with pytest.raises(ValueError, match="subject adapter is the style adapter"):
        GenerateSpec(adapter="a", prompts=("x",), subject_adapter="a")
    with pytest.raises(ValueError, match="temperature must be positive"):
        GenerateSpec(adapter="a", prompts=("x",), temperature=-1.0)
    with pytest.raises(ValueError, match=r"content first is the fraction .* got 1"):
        GenerateSpec(adapter="a", prompts=("x",), content_first=1.0)
    assert GenerateSpec(adapter="a", prompts=("x",), content_first=0.0).content_first == 0.0
    old_record = GenerateSpec.from_dict({"adapter": "a", "prompts": ["x"]})  # before the field
    assert (old_record.temperature, old_record.token_temperature) == (None, None)
    image = ImageInput(key="k", name="a.png", sha256="", caption=DEFAULT_CAPTION)
    assert FinetuneSpec(images=(image,), descriptor="d").round == 1
    with pytest.raises(ValueError, match="round"):
        FinetuneSpec(images=(image,), descriptor="d", round=0)


def test_submit_with_an_unknown_parent_stores_nothing(service, style_image):
    with pytest.raises(jobs.JobNotFoundError):
        client.submit([style_image], SHORT, parent="ft-20260101-nope00",
                      store=service.store, app=service.app)  # fmt: skip
    assert service.store.list_names("jobs") == []
    parent = client.submit([style_image], SHORT, store=service.store, app=service.app)
    child = client.submit([style_image], dataclasses.replace(SHORT, round=2), parent=parent.id,
                          store=service.store, app=service.app)  # fmt: skip
    assert child.parent == parent.id and child.inputs["round"] == 2
    assert jobs.get(service.store, child.id).parent == parent.id
