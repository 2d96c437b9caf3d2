"""A worker refuses a pickled message: loading it would run the sender's code."""

from __future__ import annotations

import builtins


class _Exploit:
    """Unpickling this opens (creates) the marker file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_a_pickled_task_message_is_refused_not_executed(service, tmp_path, wait_for):
    import json

    from worker.app import FINETUNE_TASK

    marker = tmp_path / "pwned"
    service.app.send_task(
        FINETUNE_TASK, args=[_Exploit(str(marker))], queue="training", serializer="pickle"
    )
    queued = json.loads(service.redis.lindex("training", 0))
    assert queued["content-type"] == "application/x-python-serialize"
    worker = service.start_worker("guard", warm_up=False).wait_ready()
    wait_for(
        lambda: "disallowed" in worker.output().lower() or "refus" in worker.output().lower(),
        60, "the worker to refuse the message",
    )  # fmt: skip
    wait_for(lambda: service.queue_length("training") == 0, 30, "the message to be dropped")
    assert not marker.exists()
    assert worker.process.poll() is None  # the worker is still up
    assert not any(word in worker.output() for word in ("succeeded in", "raised unexpected"))
