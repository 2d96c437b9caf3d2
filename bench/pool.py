"""Running measurement processes: a pool of CPU slots, and fixture builds in a subprocess.

`Runner` runs each `bench.plan.Task` in its own process (a fresh interpreter, or with
`--isolation fork` a fork of a per-side server that imported the libraries once), `jobs`
at a time on disjoint CPU sets. `prepare_fixture` builds or finds a fixture in a separate
process, so its memory is freed before the measurements run.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import fixtures, measure
from bench.plan import IMPLS, Task
from bench.tables import format_value


class Runner:
    """Runs tasks in isolated processes, `jobs` at a time on disjoint CPU sets ("slots").

    Slot i runs on CPUs `cpus[i * threads:(i + 1) * threads]`. With `isolation="fork"`
    there is one fork server per side (started by `start()`, on all the slots' CPUs);
    each forked child pins itself to its slot.
    """

    def __init__(
        self,
        isolation: str,
        cpus: Sequence[int],
        threads: int,
        jobs: int,
        env: dict[str, str],
        log_dir: Path,
        timeout: float | None = None,
    ) -> None:
        if jobs * threads > len(cpus):
            raise ValueError(f"{jobs} jobs x {threads} threads need more than {len(cpus)} CPUs.")
        self.isolation = isolation
        self.slots = [list(cpus[i * threads : (i + 1) * threads]) for i in range(jobs)]
        self.env = env
        self.log_dir = log_dir
        self.timeout = timeout
        self._workers: dict[str, measure.ForkWorker] = {}

    def start(self) -> None:
        """Starts the fork servers (their imports overlap with whatever runs next)."""
        if self.isolation != "fork":
            return
        used = sorted({cpu for slot in self.slots for cpu in slot})
        for impl, module in IMPLS.items():
            log = self.log_dir / f"{impl}-server.log"
            self._workers[impl] = measure.ForkWorker(module, self.env, used, log)

    def run_one(self, task: Task, slot: int = 0) -> dict[str, Any]:
        """Runs one task on a slot's CPUs and returns its record (BenchError on failure)."""
        argv = (*task.argv, "--cpus", ",".join(map(str, self.slots[slot])))
        if self.isolation == "fork":
            return self._workers[task.impl].request(argv)
        return measure.run_process(IMPLS[task.impl], argv, self.env, self.timeout)

    def run_all(
        self, tasks: Sequence[Task], progress: Callable[[str], None]
    ) -> dict[tuple[str, str], dict[str, Any] | measure.BenchError]:
        """Runs each distinct task (by side and key) once; failures are returned, not raised."""
        distinct = list({(t.impl, t.key): t for t in tasks}.values())
        if len(self.slots) > 1:  # longest first, so that no slot idles at the end
            distinct.sort(key=expected_cost, reverse=True)
        pending: queue.Queue = queue.Queue()
        for task in distinct:
            pending.put(task)
        results: dict[tuple[str, str], Any] = {}

        def drain(slot: int) -> None:
            while True:
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    return
                progress(f"  {task.impl:9s} {task.key} ...")
                try:
                    record = self.run_one(task, slot)
                    progress(
                        f"  {task.impl:9s} {task.key}: {format_value(record['median_s'], 's')}"
                    )
                except measure.BenchError as error:
                    record = error
                    progress(f"  {task.impl:9s} {task.key}: FAILED")
                results[task.impl, task.key] = record

        if len(self.slots) == 1:
            drain(0)
        else:
            with concurrent.futures.ThreadPoolExecutor(len(self.slots)) as pool:
                for future in [pool.submit(drain, i) for i in range(len(self.slots))]:
                    future.result()
        return results

    def close(self) -> None:
        """Stops the fork servers."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()


def expected_cost(task: Task) -> int:
    """A rough rank of how long a task takes (ours compiles; training compiles most)."""
    order = (
        "matmul", "cfg_forward", "sampling", "zoo_grid", "styledrop_sampling", "train_step",
        "zoo_finetune",
    )  # fmt: skip
    rank = order.index(task.argv[0])
    return rank + (len(order) if task.impl == "ours" else 0) + ("bfloat16" in task.argv)


def prepare_fixture(name: str, cache: Path, env: dict[str, str]) -> fixtures.Fixture:
    """Builds or finds a fixture in a separate process (its memory is freed at its exit)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.fixtures", name, "--cache", str(cache)],
        capture_output=True,
        text=True,
        env=env,
        cwd=measure.REPO_ROOT,
    )
    if done.returncode != 0:
        raise measure.BenchError(f"Building the {name} fixture failed:\n{done.stderr[-3000:]}")
    return fixtures.Fixture.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))
