"""`styledrop demo`: round 1 of StyleDrop on the embedded zoo, with a report.

By default it goes through the service, as `make demo` shows: it starts a private Redis
and a worker (`worker.local_service`), submits a demo job, shows its progress from the job
record, copies the report (with the images it shows) out of the store and stops what it
started. `--in-process` runs the same demo in this process instead.
"""

from __future__ import annotations

from pathlib import Path

from cli.errors import UserError


def add_parser(subparsers) -> None:
    """Registers the subcommand and its options."""
    parser = subparsers.add_parser(
        "demo",
        help="Fit a style adapter to the shipped style image and draw other subjects in it.",
        description=(
            "Draws the demo subjects with the base (descriptor only), fits a round-1 adapter"
            " to one style image (default: the line-art house shipped with the package), draws"
            " them again with StyleDrop guidance, scores both with the judge CLIP and writes"
            " OUT/report.html. Offline, a few minutes on a CPU."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--base", type=Path, help="model folder with judge/ (default: the zoo)")
    parser.add_argument("--style-image", type=Path, help="style image (default: shipped one)")
    parser.add_argument("--caption", help='content caption of the style image ("a house")')
    parser.add_argument("--descriptor", help="style descriptor appended to prompts")
    parser.add_argument("--steps", type=int, help="fine-tuning steps")
    parser.add_argument("-n", "--images-per-prompt", type=int, help="samples per prompt")
    parser.add_argument("--seed", type=int, help="seed of fine-tuning and sampling")
    parser.add_argument(
        "--in-process", action="store_true",
        help="run here instead of as a job on a worker (no Redis, no worker process)",
    )  # fmt: skip
    parser.add_argument("--store", help="job store (default: $STYLEDROP_STORE or runs/store)")
    parser.set_defaults(run=run)


def run(args) -> None:
    """Runs the subcommand with parsed arguments."""
    if args.style_image is not None and args.caption is None:
        raise UserError("--style-image needs --caption: what the image shows ('a teapot').")
    overrides = {
        "caption": args.caption,
        "descriptor": args.descriptor,
        "steps": args.steps,
        "images_per_prompt": args.images_per_prompt,
        "seed": args.seed,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    if given.get("steps", 1) < 1 or given.get("images_per_prompt", 1) < 1:
        raise UserError("--steps and -n must be at least 1.")
    summary = _in_process(args, given) if args.in_process else _through_queue(args, given)
    for name, scores in summary.get("scores", {}).items():
        named = scores.get("subject_named")
        named_text = "" if named is None else f"  subject named {named:.3f}"
        print(f"{name:24s} style {scores['style']:.3f}  text {scores['text']:.3f}{named_text}")
    print(f"Wrote {args.out / 'report.html'}")


def _in_process(args, given: dict) -> dict:
    import dataclasses

    from tqdm import tqdm

    from styledrop.demo import DemoConfig, run_demo

    config = dataclasses.replace(DemoConfig(), **given)
    bar = tqdm(total=config.steps, unit="step", desc="demo")

    def on_stage(line: str) -> None:
        bar.set_description_str(line[:40])
        bar.refresh()

    def on_step(event) -> None:
        bar.n = event.step
        bar.set_postfix(loss=f"{event.loss:.3f}", eta=f"{event.eta_seconds:.0f}s")
        bar.refresh()

    summary = run_demo(
        args.out, config, base=args.base, style_image=args.style_image,
        on_step=on_step, on_stage=on_stage,
    )  # fmt: skip
    bar.close()
    return summary


def _through_queue(args, given: dict) -> dict:
    """Redis + a worker + a demo job; the outputs are copied from the store to --out."""
    import json

    from tqdm import tqdm

    from worker import client
    from worker.app import make_app
    from worker.local_redis import LocalRedisError
    from worker.local_service import LocalService
    from worker.outputs import copy_out
    from worker.store import Store

    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "worker.log"
    with log_path.open("w") as worker_log:
        service = LocalService(store=args.store, workers=1, queues="training",
                               worker_output=worker_log, name="demo")  # fmt: skip
        try:
            service.start()
        except LocalRedisError as error:
            raise UserError(str(error)) from None
        try:
            store, app = Store(service.store), make_app(service.broker)
            job = client.submit_demo(
                style_image=args.style_image, base=args.base, config=given, store=store,
                app=app,
            )  # fmt: skip
            print(f"Queued {job.id} (worker log: {log_path})", flush=True)
            bar = tqdm(total=given.get("steps"), unit="step", desc="queued")

            shown: list = [None]

            def on_update(record) -> None:
                if service.dead_worker() is not None:
                    raise UserError(f"The worker exited; see {log_path}.")
                progress = record.progress
                state = (record.status, progress.get("stage"), progress.get("step"))
                if state == shown[0]:
                    return
                shown[0] = state
                bar.total = progress.get("total", bar.total)
                bar.n = progress.get("step", 0)
                bar.set_description_str((progress.get("stage") or record.status)[:40])
                if "loss" in progress:
                    bar.set_postfix(loss=f"{progress['loss']:.3f}")
                bar.refresh()

            try:
                job = client.wait(job.id, poll=1.0, on_update=on_update, store=store)
            except KeyboardInterrupt:
                client.cancel(job.id, store=store, app=app)
                raise
            finally:
                bar.close()
        finally:
            service.stop()
    if job.status != "succeeded":
        raise UserError(f"Demo job {job.id} {job.status}: {job.error} (see {log_path}).")
    for key in job.artifacts.values():  # the report brings the images it shows
        copy_out(store, key, args.out / key.rsplit("/", 1)[-1])
    return json.loads((args.out / "summary.json").read_text())
