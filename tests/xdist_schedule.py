"""How the default run spreads its test files over pytest-xdist workers.

`make test` runs `pytest -n auto --dist loadfile`; `tests/conftest.py` hands xdist the
scheduler below for `loadfile`. A test file is one unit of work (its module fixtures are
built once, on one worker), except that files sharing a costly session fixture form one
unit. The units that take longest are handed out first, so the workers finish together
instead of one of them ending the run alone with a long file.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Files that share a started Celery worker (`queue_service`): one unit, one worker.
SHARED_UNITS = {
    "tests/worker/test_queue.py": "queue_service",
    "tests/worker/test_feedback_jobs.py": "queue_service",
}

# The longest units (measured with `pytest --durations=0`), longest first. The first two
# start the run side by side: one builds the tiny zoo (`built_once`) while the other
# trains without it. The rest of the units follow, most tests first (xdist's order).
LONGEST_FIRST = (
    "tests/styledrop/test_rounds.py",
    "tests/zoo_build/test_gpu_zoo_build_script.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the shared unit of its file."""
    path = nodeid.split("::", 1)[0]
    return SHARED_UNITS.get(path, path)


def rank(unit: str) -> int:
    """Position of a unit in `LONGEST_FIRST`; every other unit ranks after them."""
    return LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)


class FileUnitScheduling(LoadScopeScheduling):
    """xdist's `loadfile` with shared units and the longest units handed out first."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node) -> None:
        # min() keeps the queue's order among equal ranks.
        self.workqueue.move_to_end(min(self.workqueue, key=rank), last=False)
        super()._assign_work_unit(node)
