"""Faults that must not lose or misreport a job, each reproduced first (seconds each).

Poison queue items pushed into a real Redis for a real worker; lost messages found and
queued again; a heartbeat racing the job's end on a remote store; malformed records; bad
settings refused before anything runs. The long ones (a broker restart mid-job, a
worker's shutdown mid-job) are in test_faults_e2e.py.
"""

from __future__ import annotations

import base64
import json
import threading

import pytest

from cli.main import main
from worker import client, heartbeat, jobs, recovery
from worker.app import GENERATE_TASK
from worker.finetune_spec import FinetuneOptions
from worker.redis_transport import REJECTED_LIST
from worker.store import Store, job_key


def _envelope(**changes):
    """A kombu message envelope as Redis holds it, with `changes` applied."""
    envelope = {
        "body": base64.b64encode(b"[[], {}, {}]").decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "styledrop.nonexistent", "id": "t-1"},
        "properties": {
            "body_encoding": "base64", "delivery_tag": "tag-1",
            "delivery_info": {"exchange": "", "routing_key": "training"},
        },
    }  # fmt: skip
    envelope.update(changes)
    return json.dumps(envelope)


POISON = [
    "garbage-not-json",
    '{"hello": "world"}',
    "[1, 2, 3]",
    "null",
    "",
    b"\xff\xfe\x00 not utf-8",
    _envelope(properties={"delivery_info": {}}),  # no delivery tag
    _envelope(headers="not an object"),
    _envelope(body=12),
    _envelope(),  # well formed, but no such task: Celery's to refuse
]


def test_poison_items_are_set_aside_and_the_worker_lives_on(service, wait_for):
    worker = service.start_worker("poison", queues="training,generation", warm_up=False)
    worker.wait_ready()
    for item in POISON:
        service.redis.lpush("training", item)
    wait_for(lambda: service.queue_length("training") == 0, 60, "the items to be taken")
    # Nine are not messages: set aside with their reason; the tenth is Celery's to refuse.
    wait_for(lambda: service.redis.llen(REJECTED_LIST) == 9, 30, "the items to be set aside")
    rejected = [json.loads(item) for item in service.redis.lrange(REJECTED_LIST, 0, -1)]
    assert {r["item"] for r in rejected} >= {"garbage-not-json", '{"hello": "world"}'}
    assert all(r["reason"] for r in rejected)
    wait_for(lambda: "styledrop.nonexistent" in worker.output(), 30, "Celery's refusal")
    assert worker.process.poll() is None, worker.output()[-3000:]
    assert worker.output().count("Set aside a malformed queue item") == 9
    # Still consuming: a task for a job that does not exist is run (and fails cleanly).
    service.app.send_task(GENERATE_TASK, args=["gen-20260101-absent"], queue="generation")
    wait_for(lambda: "JobNotFoundError" in worker.output(), 60, "the next task to run")
    assert worker.process.poll() is None and "Unrecoverable" not in worker.output()


def _finetune(service, image, steps=3):
    options = FinetuneOptions("in stripes style", steps=steps, batch_size=2)
    return client.submit([image], options, store=service.store, app=service.app)


def _write_checkpoint(store, job_id, step):
    folder = store.job_dir(job_id) / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"step": step}))


def test_recover_queues_again_exactly_the_jobs_no_message_will_run(
    service, style_image, monkeypatch
):
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "1")
    store, app = service.store, service.app
    kept = _finetune(service, style_image)  # its message is in the queue
    lost = _finetune(service, style_image)
    silent = _finetune(service, style_image)
    broker_fault = _finetune(service, style_image)
    user_error = _finetune(service, style_image)
    # What a Redis restart without persistence leaves: the records, not the messages.
    service.redis.delete("training")
    kept = jobs.update(store, kept.id, task_id=app.send_task("x", queue="training").id)
    stale = "2026-01-01T00:00:00Z"
    jobs.update(store, silent.id, status="running", worker="gone@host", heartbeat=stale)
    for job, error in ((broker_fault, "ConnectionError: Error 111 connecting"),
                       (user_error, "TrainingDivergedError: Training diverged")):  # fmt: skip
        jobs.update(store, job.id, status="failed", error=error)
        _write_checkpoint(store, job.id, 40)
    found = recovery.find_lost(store, app, min_age=0)
    assert [item.job.id for item in found] == [lost.id, silent.id, broker_fault.id]
    assert "no message" in found[0].reason and "gone@host" in found[1].reason
    assert "step 40" in found[2].reason
    with_failed = recovery.find_lost(store, app, min_age=0, include_failed=True)
    assert user_error.id in [item.job.id for item in with_failed]
    recent = recovery.find_lost(store, app, min_age=3600)  # `lost` may still be being sent
    assert [item.job.id for item in recent] == [silent.id, broker_fault.id]

    recovery.recover(store, app, min_age=0)
    assert service.queue_length("training") == 1 + 3
    for job_id in (lost.id, silent.id, broker_fault.id):
        record = jobs.get(store, job_id)
        assert (record.status, record.error, record.heartbeat) == ("queued", None, None)
        assert record.task_id in recovery.broker_task_ids(app)
    assert jobs.get(store, broker_fault.id).attempts == 0
    assert jobs.get(store, user_error.id).status == "failed"
    assert recovery.find_lost(store, app, min_age=0) == []


def test_jobs_recover_command_lists_then_queues(service, style_image, capsys, monkeypatch):
    monkeypatch.setenv("STYLEDROP_STORE", str(service.store.root))
    job = _finetune(service, style_image)
    service.redis.delete("training")
    common = ["--min-age", "0", "--broker", service.broker]
    assert main(["jobs", "recover", "--dry-run", *common]) == 0
    assert f"{job.id}  lost: queued, but no message" in capsys.readouterr().out
    assert service.queue_length("training") == 0
    assert main(["jobs", "recover", *common]) == 0
    assert f"{job.id}  queued again" in capsys.readouterr().out
    assert service.queue_length("training") == 1


def test_a_late_heartbeat_cannot_revive_an_ended_job_on_a_remote_store(tmp_path, monkeypatch):
    # Two writers of one record in one worker: the heartbeat thread and the job's thread.
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "0.0005")
    store = Store(tmp_path / "remote", cache_dir=tmp_path / "cache", force_remote=True)
    for attempt in range(15):
        job = jobs.create(store, "finetune", {})
        jobs.update(store, job.id, status="running", worker="w@host")
        beat = heartbeat.start(store, job.id, "w@host")
        threading.Event().wait(0.02)  # let it beat a few times
        jobs.update(store, job.id, status="succeeded", finished=jobs.utc_now())
        beat.join(5)
        assert not beat.is_alive()
        assert jobs.get(store, job.id).status == "succeeded", f"revived on attempt {attempt}"


def test_malformed_records_are_skipped_in_lists_and_named_when_shown(tmp_path, capsys):
    store = Store(tmp_path / "store")
    good = jobs.create(store, "finetune", {})
    no_id = jobs.create(store, "finetune", {})
    truncated = jobs.create(store, "generate", {})
    record = store.read_json(job_key(no_id.id, "job.json"))
    del record["id"]
    store.write_json(job_key(no_id.id, "job.json"), record)
    store.write_bytes(job_key(truncated.id, "job.json"), b'{"id": "gen-1", "kin')
    assert [job.id for job in jobs.list_jobs(store)] == [good.id]
    args = ["--store", str(store.root)]
    assert main(["jobs", "list", *args]) == 0
    assert good.id in capsys.readouterr().out
    for job_id, why in ((no_id.id, "its id missing or invalid"), (truncated.id, "not JSON")):
        assert main(["jobs", "show", job_id, *args]) == 2
        err = capsys.readouterr().err
        assert why in err and "other jobs are not affected" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--descriptor", "  ", "is empty"), ("--lr", "inf", "finite number > 0"),
     ("--lr", "nan", "finite number > 0"), ("--lr", "-1e-3", "finite number > 0")],
)  # fmt: skip
@pytest.mark.parametrize("command", [["finetune", "--out", "x"], ["jobs", "submit"]])
def test_settings_that_cannot_train_are_refused_before_anything_runs(
    command, option, value, message, style_image, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    argv = [*command, str(style_image), "--descriptor", "in stripes style", f"{option}={value}"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()
