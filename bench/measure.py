"""Timing, thread pinning and process isolation for the benchmark.

* `time_repeated(fn, warmup, repeats)`: warm-up calls (the first one compiles on our
  side), then timed repetitions; the figure is their median.
* `pin_process(threads)` / `child_env(threads)`: both implementations run on the same
  CPUs with the same thread count: the process's CPU affinity is cut to `threads` CPUs
  (XLA sizes its thread pool from it), `OMP_NUM_THREADS` / `MKL_NUM_THREADS` /
  `OPENBLAS_NUM_THREADS` are set, the workloads call `torch.set_num_threads`, and
  `XLA_FLAGS` carries `--xla_cpu_multi_thread_eigen=true`.
* Isolation: every measurement runs in its own process and reports its peak resident
  memory (`VmHWM`). `run_process` starts a fresh interpreter per measurement
  (`python -m bench.ours WORKLOAD ...`, one JSON line out): the reference method.
  `ForkWorker` starts one interpreter per implementation that imports that side's
  libraries once and forks a child per measurement (several at once if asked): much
  faster for small models, but
  the child's peak starts from its RSS at the fork, which leaves out the shared-library
  pages it never touches, so its memory figures read lower than a fresh process's
  (by about 250 MB per side here) and the two modes' figures are not comparable.

Workload modules (`bench.ours`, `bench.reference`) call `workload_main(run, argv)`,
which serves both: a plain command line runs one measurement; `--serve` runs the fork
server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import selectors
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
XLA_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=true"
RESULT_PREFIX = "BENCH-RESULT "


class BenchError(RuntimeError):
    """A measurement failed; the message carries the child's error output."""


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of one measurement, in seconds.

    Attributes:
        first_s: The first call (on our side it includes tracing and compiling).
        times_s: The timed repetitions, after warm-up.
    """

    first_s: float
    times_s: tuple[float, ...] = field(default_factory=tuple)

    @property
    def median_s(self) -> float:
        """Median of the timed repetitions."""
        return statistics.median(self.times_s)


def time_repeated(
    fn: Callable[[], Any],
    warmup: int = 1,
    repeats: int = 5,
    setup: Callable[[], Any] | None = None,
    sync: Callable[[], Any] | None = None,
) -> Timing:
    """Calls `fn` `warmup` times untimed-for-the-figure, then `repeats` times timed.

    `fn` must return only once its work is done (block on device results, convert to
    numpy, or call `.item()`), or `sync` must wait for it.

    Args:
        fn: The measured call.
        warmup: Calls before the timed ones.
        repeats: Timed calls.
        setup: Called before every call of `fn`, outside the timed span (for example
            to load a fresh model when `fn` changes the one it is given).
        sync: Called after every call of `fn`, inside the timed span: waits for work
            `fn` queued on an accelerator (`torch.cuda.synchronize`).

    Returns:
        The timing; `first_s` is the very first call whether or not it was a warm-up.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    times = []
    for _ in range(warmup + repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return Timing(first_s=times[0], times_s=tuple(times[warmup:]))


def _status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    `VmHWM` from /proc/self/status: the high-water mark of this process image only.
    (`ru_maxrss` would do on a fresh process too, but after fork + exec it starts from
    the parent's peak, so a small child of a big parent reports the parent's size.)
    Falls back to `ru_maxrss` where /proc is missing.
    """
    peak = _status_mb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak


def current_rss_mb() -> float:
    """This process's current resident set size in MB (`VmRSS`)."""
    value = _status_mb("VmRSS")
    return float("nan") if value is None else value


def available_cpus() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def pin_process(threads: int, cpus: Sequence[int] | None = None) -> list[int]:
    """Restricts this process to `cpus`, or else to its first `threads` allowed CPUs.

    Call it before JAX or torch start their thread pools (0 threads and no `cpus`: all
    allowed CPUs). Also sets the thread-count environment variables for libraries
    initialised later.

    Returns:
        The CPUs in use.
    """
    allowed = available_cpus()
    if cpus:
        chosen = sorted(set(cpus))
        if not set(chosen) <= set(allowed):
            raise ValueError(f"CPUs {chosen} are not all available (allowed: {allowed}).")
    elif threads > len(allowed):
        raise ValueError(f"Asked for {threads} threads but only {len(allowed)} CPUs are available.")
    else:
        chosen = allowed[:threads] if threads else allowed
    if chosen != allowed:
        os.sched_setaffinity(0, chosen)
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(len(chosen))
    return chosen


def parse_cpus(text: str | None) -> list[int] | None:
    """Parses a CPU list such as "0,1,4"; None or "" give None."""
    return [int(part) for part in text.split(",")] if text else None


def child_env(threads: int, xla_flags: str = "", cpu_only: bool = True) -> dict[str, str]:
    """Environment of a measurement process: pinned thread counts, CPU-only JAX, quiet logs.

    Args:
        threads: Thread count for both frameworks.
        xla_flags: Extra XLA flags (appended after the thread flag).
        cpu_only: Keep JAX on the CPU (a CPU-to-CPU comparison even where a GPU exists);
            False leaves JAX its default backend (`bench.gpu`).
    """
    env = dict(os.environ)
    for name in THREAD_ENV_VARS:
        env[name] = str(threads)
    flags = [XLA_THREAD_FLAG, *env.get("XLA_FLAGS", "").split(), *xla_flags.split()]
    env["XLA_FLAGS"] = " ".join(dict.fromkeys(flags))
    if cpu_only:
        env["JAX_PLATFORMS"] = "cpu"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_VERBOSITY"] = "error"
    env["DIFFUSERS_VERBOSITY"] = "error"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    path = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return env


def preload(modules: Iterable[str]) -> None:
    """Imports modules (without starting any computation)."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def workload_parser(prog: str, workloads: Sequence[str]) -> argparse.ArgumentParser:
    """The command line shared by `bench.ours` and `bench.reference`."""
    parser = argparse.ArgumentParser(prog=prog, description="Runs one benchmark workload.")
    parser.add_argument("workload", choices=list(workloads))
    parser.add_argument("--model", type=Path, help="model folder (ours: native; else diffusers)")
    parser.add_argument("--batch", type=int, default=1, help="images per call / train batch")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--adapter-kind", choices=["r1", "r2", "lora"], default="lora", help="train_step"
    )
    parser.add_argument("--adapter", type=Path, help="LoRA file (styledrop_sampling)")
    parser.add_argument("--size", type=int, default=2048, help="matmul side")
    parser.add_argument("--variant", default="plain", help="matmul variant (bench.matmul)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--cpus", help="comma-separated CPUs to run on (overrides --threads)")
    parser.add_argument(
        "--dump", type=Path, help="save the arrays of the same-function check (.npy)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=1000, help="zoo_finetune: optimizer steps per run"
    )
    parser.add_argument(
        "--sampling",
        type=json.loads,
        default=None,
        help="zoo_grid (diffusers): AmusedPipeline.__call__ sampling arguments, as JSON",
    )
    return parser


def report(
    impl: str,
    args: argparse.Namespace,
    timing: Timing,
    *,
    baseline_rss_mb: float,
    peak_mb: float,
    cpus: Sequence[int],
    torch_threads: int | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record of one measurement."""
    return {
        "impl": impl,
        "workload": args.workload,
        "args": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "first_s": timing.first_s,
        "times_s": list(timing.times_s),
        "median_s": timing.median_s,
        "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline_rss_mb,
        "threads": {"cpus": list(cpus), "torch": torch_threads},
        "extra": extra or {},
    }


@contextlib.contextmanager
def stdout_to_stderr():
    """Sends everything written to fd 1 to fd 2; yields a writer for the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w", closefd=True)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(real.fileno(), 1)
        real.close()


def workload_main(
    run: Callable[[list[str]], dict[str, Any]],
    argv: list[str] | None = None,
    preload_modules: Sequence[str] = (),
) -> int:
    """Entry point of a workload module.

    `python -m bench.X WORKLOAD ...` runs one measurement and prints one JSON line;
    `python -m bench.X --serve [--threads N]` is the fork server (see `serve`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--serve":
        parser = argparse.ArgumentParser(prog="--serve")
        parser.add_argument("--threads", type=int, default=0)
        parser.add_argument("--cpus")
        options = parser.parse_args(argv[1:])
        pin_process(options.threads, parse_cpus(options.cpus))
        preload(preload_modules)
        serve(run)
        return 0
    with stdout_to_stderr() as out:
        record = run(argv)
        out.write(json.dumps(record) + "\n")
    return 0


def serve(run: Callable[[list[str]], dict[str, Any]]) -> None:
    """Fork server: runs each request in a forked child; several may run at once.

    Requests arrive on stdin, one JSON object `{"id": n, "argv": [...]}` per line; each
    is answered on stdout, when its child exits, by one line `RESULT_PREFIX` + JSON
    `{"id": n, "record": {...}}` (the record holds "error" if the child failed). A
    child's own stdout goes to stderr; it sends its record through a pipe and leaves
    with `os._exit`. The server exits once stdin closes and its children are done.
    """
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    children: dict[int, tuple[Any, int, list[bytes]]] = {}  # pipe fd -> (id, pid, chunks)
    pending, stdin_open = b"", True
    while stdin_open or children:
        for key, _ in selector.select():
            if key.fd == 0:
                data = os.read(0, 1 << 16)
                if not data:
                    stdin_open = False
                    selector.unregister(0)
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        request = json.loads(line)
                        fd, pid = _fork_child(run, request["argv"])
                        children[fd] = (request["id"], pid, [])
                        selector.register(fd, selectors.EVENT_READ)
                continue
            chunk = os.read(key.fd, 1 << 16)
            if chunk:
                children[key.fd][2].append(chunk)
                continue
            selector.unregister(key.fd)
            os.close(key.fd)
            ident, pid, chunks = children.pop(key.fd)
            _, status = os.waitpid(pid, 0)
            payload = b"".join(chunks).decode()
            record = json.loads(payload) if payload else {"error": f"child died ({status})"}
            reply.write(RESULT_PREFIX + json.dumps({"id": ident, "record": record}) + "\n")
            reply.flush()


def _fork_child(run: Callable[[list[str]], dict[str, Any]], argv: list[str]) -> tuple[int, int]:
    """Forks a child that runs `run(argv)`; returns (read end of its result pipe, pid)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            try:
                payload = json.dumps(run(argv))
                code = 0
            except BaseException:
                payload = json.dumps({"error": traceback.format_exc()})
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(payload)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    return read_end, pid


def _parse_record(text: str, what: str, stderr_tail: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            record = json.loads(line)
            if "error" in record:
                raise BenchError(f"{what} failed:\n{record['error']}{stderr_tail}")
            return record
    raise BenchError(f"{what} printed no result.{stderr_tail}")


def _tail(text: str, lines: int = 30) -> str:
    text = text.strip()
    return "\n--- stderr (tail) ---\n" + "\n".join(text.splitlines()[-lines:]) if text else ""


def run_process(
    module: str, argv: Sequence[str], env: dict[str, str], timeout: float | None = None
) -> dict[str, Any]:
    """Runs `python -m module *argv` in a fresh interpreter and returns its JSON record."""
    what = f"python -m {module} {' '.join(argv)}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{what} ran past {timeout} s.") from error
    if done.returncode != 0:
        raise BenchError(f"{what} exited with {done.returncode}.{_tail(done.stderr)}")
    return _parse_record(done.stdout, what, _tail(done.stderr))


class ForkWorker:
    """One fork server (`python -m module --serve`) for the measurements of one side.

    `request(argv)` runs one measurement in a fresh child and blocks until it is done;
    several threads may call it at once (their children run concurrently). Use as a
    context manager. The server's stderr goes to `log` (a file path), or is discarded.
    """

    def __init__(
        self, module: str, env: dict[str, str], cpus: Sequence[int], log: Path | None = None
    ) -> None:
        self.module = module
        self._log = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115
        self.log_path = log
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module, "--serve", "--cpus", ",".join(map(str, cpus))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, queue.Queue] = {}
        self._reader = threading.Thread(target=self._read_replies, daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith(RESULT_PREFIX):
                reply = json.loads(line.removeprefix(RESULT_PREFIX))
                with self._lock:
                    box = self._waiting.pop(reply["id"], None)
                if box is not None:
                    box.put(reply["record"])
        with self._lock:  # the server is gone: wake everyone still waiting
            for box in self._waiting.values():
                box.put(None)
            self._waiting.clear()

    def request(self, argv: Sequence[str]) -> dict[str, Any]:
        """Runs one measurement (same arguments as the module's command line)."""
        what = f"{self.module} {' '.join(argv)} (forked)"
        box: queue.Queue = queue.Queue(maxsize=1)
        with self._lock:
            ident = self._next_id
            self._next_id += 1
            self._waiting[ident] = box
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"id": ident, "argv": list(argv)}) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError) as error:
                self._waiting.pop(ident, None)
                raise BenchError(f"{what}: the fork server is gone.{self._log_tail()}") from error
        record = box.get()
        if record is None:
            raise BenchError(f"{what}: the fork server exited.{self._log_tail()}")
        if "error" in record:
            raise BenchError(f"{what} failed:\n{record['error']}")
        return record

    def _log_tail(self) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            return _tail(self.log_path.read_text())
        return ""

    def close(self) -> None:
        """Stops the server: closes its stdin and waits for its children to finish."""
        if self._proc.stdin:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> ForkWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
