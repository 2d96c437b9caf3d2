"""The workers' pool: Celery's solo pool, with a cold shutdown that hands the job back.

A worker runs one job at a time in its own main thread (JAX is not fork-safe, and the
loaded model stays in memory between jobs). On a cold shutdown (SIGQUIT, or Ctrl-C on
`styledrop serve`), Celery cancels the running job by asking the pool to terminate it,
which Celery's solo pool cannot do: it raises `NotImplementedError` inside the training
loop, and the job would end "failed".

`InterruptibleSoloPool.terminate_job` raises `JobInterruptedError` instead: a
`WorkerTerminate`, so neither the job's code nor Celery's task frame treats it as the
job's failure. `worker.job_runner` puts the record back to "queued", the message is not
acknowledged, the worker's broker channel gives it back to the queue as it closes, and
the job resumes from its last checkpoint on the next worker.
"""

from __future__ import annotations

from celery.concurrency.solo import TaskPool
from celery.exceptions import WorkerTerminate

POOL = "worker.solo_pool:InterruptibleSoloPool"  # the `worker_pool` setting (worker.app)


class JobInterruptedError(WorkerTerminate):
    """The worker is shutting down while a job runs: the job goes back on the queue."""


class InterruptibleSoloPool(TaskPool):
    """Celery's solo pool whose cold shutdown interrupts the running job (see the module)."""

    def terminate_job(self, pid, signal=None):
        """Interrupts the job running in this (the only) thread.

        Celery calls it from its signal handler, which runs in the main thread, where
        the job runs: the exception unwinds the job from wherever it is.

        Raises:
            JobInterruptedError: always.
        """
        raise JobInterruptedError(0)
