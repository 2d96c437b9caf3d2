"""The StyleDrop service back end: artifact store, job records, Celery app, tasks, client.

`worker.store` and `worker.jobs` hold the state (a folder or any fsspec URL), `worker.app`
configures Celery (Redis broker, JSON only, late acknowledgement), `worker.tasks` holds
the tasks, which run `worker.finetune_job` (claim, train with resume, record) on models
cached by `worker.models`; `worker.finetune_spec` is the job inputs both sides agree on,
and `worker.client` submits and watches jobs without importing JAX. `styledrop worker`
and `styledrop jobs` are the command lines.
"""
