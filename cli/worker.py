"""`styledrop worker`: a Celery worker (solo pool) that runs the queued jobs."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from cli.errors import UserError

# XLA keeps compiled programs here across jobs and worker restarts: without it every job
# (and every redelivered one) compiles its train step again, which dominates short jobs.
COMPILATION_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
DEFAULT_COMPILATION_CACHE = Path("~/.cache/styledrop/xla")


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "worker",
        help="Run a worker that takes jobs from the queues (one per accelerator).",
        description=(
            "Starts a Celery worker with a solo pool (one process: JAX is not fork-safe,"
            " and the base model stays loaded between jobs) on the broker"
            " $STYLEDROP_BROKER_URL, reading and writing jobs in the store $STYLEDROP_STORE."
            " A job whose worker dies is delivered again after the visibility timeout"
            " ($STYLEDROP_VISIBILITY_TIMEOUT seconds) and resumes from its checkpoint."
        ),
    )
    parser.add_argument(
        "--queues", default="training,generation",
        help="comma-separated queues to take jobs from (default: all)",
    )  # fmt: skip
    parser.add_argument("--hostname", help="worker node name (default: celery@HOST)")
    parser.add_argument(
        "--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level",
    )  # fmt: skip
    parser.add_argument("--broker", help="Redis URL (sets $STYLEDROP_BROKER_URL)")
    parser.add_argument("--store", help="store folder or fsspec URL (sets $STYLEDROP_STORE)")
    parser.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16"],
        help="compute dtype of the base models (sets $STYLEDROP_DTYPE; default auto:"
        " bfloat16 on a GPU, float32 elsewhere)",
    )  # fmt: skip
    parser.add_argument(
        "--no-warm-up", dest="warm_up", action="store_false",
        help="do not import the training libraries in the background at start-up",
    )  # fmt: skip
    parser.set_defaults(run=run)


def _warm_up() -> None:
    """Imports the training code (JAX, Flax, PyTorch text encoder) while the worker idles.

    It runs in the worker's own process (the solo pool never forks), so the first job
    does not wait for the imports; no model is loaded (that happens per base folder, on
    the first job that needs it).
    """
    try:
        import muse.pipeline  # noqa: F401
        import styledrop.finetune  # noqa: F401
    except Exception:  # the first job reports a real import problem
        logging.getLogger(__name__).exception("Warm-up import failed.")


def run(args) -> None:
    """Checks the broker, then runs the worker until it is stopped."""
    # The app and the tasks read these when imported, so they are set first.
    if args.broker:
        os.environ["STYLEDROP_BROKER_URL"] = args.broker
    if args.store:
        os.environ["STYLEDROP_STORE"] = args.store
    if args.dtype:
        os.environ["STYLEDROP_DTYPE"] = args.dtype
    cache = os.environ.get(COMPILATION_CACHE_ENV) or str(DEFAULT_COMPILATION_CACHE)
    os.environ[COMPILATION_CACHE_ENV] = str(Path(cache).expanduser())
    try:
        from worker.app import QUEUES, app
    except ValueError as error:
        raise UserError(str(error)) from None
    from worker.client import BrokerUnreachableError, check_broker

    if args.broker:  # the app was made already when this runs inside another program
        app.conf.broker_url = args.broker

    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if not queues or unknown:
        raise UserError(f"--queues takes names from {', '.join(QUEUES)}; got {args.queues!r}.")
    try:
        check_broker(app)
    except BrokerUnreachableError as error:
        raise UserError(str(error)) from None
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    _recover_lost_jobs(app)
    if args.warm_up:
        threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    app.worker_main(argv)


def _recover_lost_jobs(app) -> None:
    """Queues again the jobs whose messages were lost (`worker.recovery`), at start-up."""
    from worker.recovery import min_age, recover
    from worker.store import default_store

    try:
        lost = recover(default_store(), app, min_age=min_age())
    except Exception:  # the worker still serves the jobs that have messages
        logging.getLogger(__name__).exception("Could not look for lost jobs at start-up.")
        return
    if lost:
        print(f"Queued again {len(lost)} lost job(s): {', '.join(i.job.id for i in lost)}")
