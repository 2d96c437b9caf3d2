"""Speed and time left of a training run, for the progress events the zoo trainers send."""

from __future__ import annotations

import time


class StepRate:
    """Steps per second and seconds left, counted from the step a run (re)started at."""

    def __init__(self, start: int, steps: int):
        """Starts the clock.

        Args:
            start: The step the run starts (or resumes) after.
            steps: The run's total steps.
        """
        self.start, self.steps = start, steps
        self.began = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.began

    def __call__(self, step: int) -> dict[str, float]:
        """{"steps_per_s", "eta_s"} once `step` is done (a step past `start`)."""
        rate = (step - self.start) / max(self.elapsed(), 1e-9)
        return {"steps_per_s": rate, "eta_s": (self.steps - step) / rate}
