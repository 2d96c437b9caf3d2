"""`styledrop jobs`: queue fine-tune, generation and round-2 jobs, and watch them (no JAX)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cli.decoding_options import (
    add_content_first_option,
    add_temperature_options,
    checked_temperatures,
)
from cli.errors import UserError
from cli.training_options import (
    add_optimizer_options,
    add_preview_options,
    add_style_image_options,
)
from styledrop.terms import ADAPTER_KINDS, DEFAULT_GAMMA


def _common(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the job record(s) as JSON")
    parser.add_argument(
        "--store", help="artifact store folder or fsspec URL (default: $STYLEDROP_STORE)"
    )
    parser.add_argument("--broker", help="Redis URL (default: $STYLEDROP_BROKER_URL)")


def add_parser(subparsers) -> None:
    """Registers the subcommand and its actions."""
    parser = subparsers.add_parser(
        "jobs",
        help="Submit fine-tune and generation jobs to the workers, list, show, cancel, wait.",
        description=(
            "Jobs run on `styledrop worker` processes through the Redis broker"
            " ($STYLEDROP_BROKER_URL); their records, inputs and outputs live in the artifact"
            " store ($STYLEDROP_STORE, default runs/store)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    submit = actions.add_parser(
        "submit", help="Queue a fine-tune job; prints its id.",
        description="Validates and stores the images, writes the job record, queues the job.",
    )  # fmt: skip
    add_style_image_options(submit)
    submit.add_argument(
        "--base", type=Path,
        help="base model folder as the workers see it (default: their embedded zoo)",
    )  # fmt: skip
    submit.add_argument(
        "--adapter", choices=ADAPTER_KINDS, default="r1",
        help="r1: paper round 1 (bottleneck 4, shared); r2: bottleneck 32 per layer; lora",
    )  # fmt: skip
    add_optimizer_options(submit)
    submit.add_argument(
        "--checkpoint-every", type=int, help="steps per checkpoint (default 100, or steps/10)"
    )
    add_preview_options(submit)
    _common(submit)
    submit.set_defaults(run=run_submit)

    generate = actions.add_parser(
        "generate", help="Queue images in the style of a finished fine-tune job; prints its id.",
        description="Samples each prompt N times with the adapter of the fine-tune job SOURCE.",
    )  # fmt: skip
    generate.add_argument("source", metavar="SOURCE", help="id of a succeeded fine-tune job")
    generate.add_argument(
        "--prompt", action="append", required=True, help="content prompt (repeat for several)"
    )
    generate.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    generate.add_argument("--seed", type=int, default=0, help="random seed")
    generate.add_argument("--lambda-a", type=float, help="StyleDrop guidance weight")
    generate.add_argument("--lambda-b", type=float, help="classifier-free guidance weight")
    add_content_first_option(generate)
    generate.add_argument(
        "--subject", metavar="JOB",
        help="id of a succeeded fine-tune job whose adapter is composed in as the subject",
    )  # fmt: skip
    generate.add_argument(
        "--gamma",
        type=float,
        default=DEFAULT_GAMMA,
        help="subject weight with --subject, in [0, 1]",
    )
    generate.add_argument(
        "--no-score", dest="score", action="store_false",
        help="do not score the images with CLIP (no scores.json)",
    )  # fmt: skip
    add_temperature_options(generate, "", "the images")
    _common(generate)
    generate.set_defaults(run=run_generate)

    round2 = actions.add_parser(
        "round2", help="Queue a fine-tune job on images picked from a generation job.",
        description=(
            "Fine-tunes again (the paper's round 2) on the selected images of the generation"
            " job GENERATE_JOB, each captioned with its content prompt, with the descriptor"
            " and base of that job's source fine-tune job (the new job's parent). Prints the"
            " new job's id."
        ),
    )  # fmt: skip
    round2.add_argument("generate_job", metavar="GENERATE_JOB", help="a succeeded generation job")
    picks = round2.add_mutually_exclusive_group(required=True)
    picks.add_argument(
        "--select", action="append", metavar="ID",
        help="an image to train on, e.g. 003.png (repeat for several)",
    )  # fmt: skip
    picks.add_argument(
        "--select-by-clip", action="store_true",
        help="per prompt, the image with the best CLIP text score (the paper's feedback)",
    )  # fmt: skip
    round2.add_argument(
        "--adapter", choices=ADAPTER_KINDS, default="r2",
        help="adapter kind (paper round 2: r2, bottleneck 32 per layer)",
    )  # fmt: skip
    add_optimizer_options(round2, lr_help="learning rate (default: the kind's)")
    round2.add_argument(
        "--checkpoint-every", type=int, help="steps per checkpoint (default 100, or steps/10)"
    )
    _common(round2)
    round2.set_defaults(run=run_round2)

    listing = actions.add_parser("list", help="List jobs, newest first.")
    listing.add_argument(
        "--status", choices=["queued", "running", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument("--limit", type=int, help="show at most this many")
    _common(listing)
    listing.set_defaults(run=run_list)

    recover = actions.add_parser(
        "recover", help="Queue again the jobs whose messages were lost (a broker restart).",
        description=(
            "Compares the store with the broker and queues again every job that no message"
            " will run: queued with no message (a Redis restart without persistence drops"
            " them), running with a silent worker and no message, failed by a broker fault"
            " with a checkpoint (with --failed: every failed fine-tune job with one). Workers"
            " run this at start-up too. A fine-tune job resumes from its checkpoint."
        ),
    )  # fmt: skip
    recover.add_argument(
        "--failed", action="store_true",
        help="also every failed fine-tune job with a checkpoint (fix what failed it first)",
    )  # fmt: skip
    recover.add_argument(
        "--min-age", type=float, default=60.0,
        help="seconds a queued job may be without a message (default 60)",
    )  # fmt: skip
    recover.add_argument("--dry-run", action="store_true", help="only list the lost jobs")
    _common(recover)
    recover.set_defaults(run=run_recover)

    for name, help_text, handler in (
        ("show", "Show one job's record.", run_show),
        ("cancel", "Cancel a job (a running one checkpoints and stops).", run_cancel),
        ("wait", "Wait until a job ends; exit code 1 unless it succeeded.", run_wait),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("job_id", metavar="ID", help="job id (as printed by submit)")
        if name == "wait":
            action.add_argument("--timeout", type=float, help="give up after this many seconds")
            action.add_argument("--poll", type=float, default=1.0, help="seconds between checks")
        _common(action)
        action.set_defaults(run=handler)


def _context(args):
    """The store and the Celery app named by the arguments, with errors as UserError."""
    try:
        from worker.app import make_app
        from worker.store import Store

        store = Store(args.store) if args.store else Store()
        app = make_app(broker=args.broker) if args.broker else None
    except ValueError as error:
        raise UserError(str(error)) from None
    return store, app


def _user_errors():
    from worker.client import BrokerUnreachableError, WaitTimeoutError
    from worker.jobs import JobNotFoundError, JobRecordError
    from worker.store import StoreKeyError

    return (
        BrokerUnreachableError, WaitTimeoutError, JobNotFoundError, JobRecordError, StoreKeyError
    )  # fmt: skip


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except _user_errors() as error:
        raise UserError(str(error)) from None


def _summary(job) -> str:
    progress = job.progress or {}
    step = f"{progress.get('step', 0)}/{progress.get('total', '?')}"
    loss = f" loss {progress['loss']:.4f}" if progress.get("loss") is not None else ""
    return f"{job.id}  {job.status:<9}  step {step}{loss}  created {job.created}"


def _print(job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.to_dict(), indent=2, sort_keys=True))
        return
    print(_summary(job))
    if job.error:
        print(f"  error: {job.error}")
    if job.attempts:
        print(f"  attempts: {job.attempts} (last worker: {job.worker})")
    if job.device:
        print(f"  device: {job.device}")
    sampling = job.sampling_summary()
    if sampling:
        print(f"  sampled with: {sampling}")
    for name, key in sorted(job.artifacts.items()):
        print(f"  {name}: {key}")


def run_submit(args) -> None:
    """Queues the job and prints its id (or its record with --json)."""
    from cli.finetune import parse_captions
    from worker import client
    from worker.finetune_spec import FinetuneOptions

    captions = parse_captions(args.caption, args.images)
    store, app = _context(args)

    def submit():
        options = FinetuneOptions(
            args.descriptor, base=args.base, adapter=args.adapter, steps=args.steps,
            learning_rate=args.lr, batch_size=args.batch_size, seed=args.seed,
            checkpoint_every=args.checkpoint_every, preview_every=args.preview_every,
            preview_prompts=args.preview_prompt,
        )  # fmt: skip
        return client.submit(
            args.images, options, captions={str(path): text for path, text in captions.items()},
            store=store, app=app,
        )  # fmt: skip

    _queue_and_print(args, submit)


def _queue_and_print(args, submit, *positional, **options) -> None:
    """Calls a `worker.client` submit function; prints the job id (its record with --json).

    Bad settings (ValueError) become a UserError; a bad image keeps its own error type.
    """
    try:
        job = _call(submit, *positional, **options)
    except ValueError as error:
        from styledrop.inputs import ImageInputError

        if isinstance(error, ImageInputError):
            raise
        raise UserError(str(error)) from None
    if args.json:
        _print(job, True)
    else:
        print(job.id)


def run_generate(args) -> None:
    """Queues the generation job and prints its id (or its record with --json)."""
    from worker import client

    temperature, token_temperature = checked_temperatures(args, "")
    store, app = _context(args)
    _queue_and_print(
        args, client.submit_generate, args.source, args.prompt, num_images=args.num_images,
        seed=args.seed, lambda_a=args.lambda_a, lambda_b=args.lambda_b,
        content_first=args.content_first, subject=args.subject, gamma=args.gamma,
        score=args.score, temperature=temperature, token_temperature=token_temperature,
        store=store, app=app,
    )  # fmt: skip


def _clip_choice(generate_job: str, store) -> list[str]:
    """Per prompt, the id of the image with the best CLIP text score."""
    from feedback.selection import candidates_from_entries, clip_best_per_prompt
    from worker import client

    scores = _call(client.read_scores, generate_job, store=store)
    if not scores:
        raise UserError(
            f"Job {generate_job} has no CLIP scores (not a finished generation job, or it ran"
            " with --no-score); pick the images with --select."
        )
    return [candidate.id for candidate in clip_best_per_prompt(candidates_from_entries(scores))]


def run_round2(args) -> None:
    """Queues the round-2 fine-tune job and prints its id (or its record with --json)."""
    from worker import client

    store, app = _context(args)
    selected = _clip_choice(args.generate_job, store) if args.select_by_clip else args.select
    _queue_and_print(
        args, client.submit_round2, args.generate_job, selected, adapter=args.adapter,
        steps=args.steps, learning_rate=args.lr, seed=args.seed,
        batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
        store=store, app=app,
    )  # fmt: skip


def run_list(args) -> None:
    """Prints the jobs, newest first."""
    from worker import client

    store, _ = _context(args)
    found = _call(client.list_jobs, status=args.status, limit=args.limit, store=store)
    if args.json:
        print(json.dumps([job.to_dict() for job in found], indent=2, sort_keys=True))
        return
    if not found:
        print(f"No jobs in {store.url}.")
    for job in found:
        print(_summary(job))


def run_recover(args) -> None:
    """Queues the lost jobs again and prints them."""
    from worker.app import app as default_app
    from worker.client import check_broker
    from worker.recovery import recover

    store, app = _context(args)
    app = app or default_app
    _call(check_broker, app)
    lost = _call(
        recover, store, app, min_age=args.min_age, include_failed=args.failed,
        dry_run=args.dry_run,
    )  # fmt: skip
    if args.json:
        print(json.dumps([{"id": i.job.id, "reason": i.reason} for i in lost], indent=2))
        return
    if not lost:
        print(f"No lost jobs in {store.url}.")
    for item in lost:
        print(f"{item.job.id}  {'lost' if args.dry_run else 'queued again'}: {item.reason}")


def run_show(args) -> None:
    """Prints one job record."""
    from worker import client

    store, _ = _context(args)
    _print(_call(client.show, args.job_id, store=store), args.json)


def run_cancel(args) -> None:
    """Cancels the job and prints its record."""
    from worker import client

    store, app = _context(args)
    job = _call(client.cancel, args.job_id, store=store, app=app)
    if not args.json and job.status == "running":
        print(f"Cancel requested: {job.id} stops at its next step (`styledrop jobs wait`).")
    _print(job, args.json)


def run_wait(args) -> int:
    """Waits for the job to end; prints progress to stderr and the record at the end."""
    from worker import client

    store, _ = _context(args)
    shown: dict[str, object] = {}

    def on_update(job) -> None:
        key = (job.status, (job.progress or {}).get("step"))
        if not args.json and key != shown.get("last"):
            shown["last"] = key
            print(_summary(job), file=sys.stderr)

    job = _call(
        client.wait, args.job_id, timeout=args.timeout, poll=args.poll,
        on_update=on_update, store=store,
    )  # fmt: skip
    _print(job, args.json)
    return 0 if job.status == "succeeded" else 1
