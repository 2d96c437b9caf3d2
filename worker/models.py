"""The models a worker process holds: loaded on first use, once per process.

A fine-tune job injects a fresh adapter into the base transformer, so the cache hands
out the model with every adapter removed, and `release` takes the job's adapter out
again when the job ends. Only the few most recently used base folders are kept (one
accelerator holds one or two models, not every folder ever asked for).

The CLIP judge that scores generated images (`judge_scorer`) is cached the same way: the
folder `$STYLEDROP_JUDGE`, else the zoo's judge (`styledrop.zoo.embedded.embedded_judge`).

Base models compute in `compute_dtype()` (`$STYLEDROP_DTYPE`, set by `styledrop worker
--dtype`): bfloat16 on a GPU unless told otherwise, float32 elsewhere.

Nothing is loaded (and neither JAX nor PyTorch is imported) until a task asks for a model,
so importing the Celery app or the task module stays cheap and fork-safe.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feedback.scorer import ClipScorer
    from muse.pipeline import Pipeline

MAX_MODELS = 2
JUDGE_ENV = "STYLEDROP_JUDGE"
DTYPE_ENV = "STYLEDROP_DTYPE"
DTYPES = ("auto", "float32", "bfloat16")

_cache: OrderedDict[str, Pipeline] = OrderedDict()
_judges: dict[str, ClipScorer] = {}
_lock = threading.Lock()


def resolve_base(folder: str | Path | None) -> Path:
    """The base model folder a job uses: the one given, else the embedded default.

    Raises:
        ZooMissingError: when no folder is given and the embedded zoo is missing.
        CheckpointError: when the folder is not a converted model folder.
    """
    from muse.checkpoint import read_model_json
    from styledrop.zoo.embedded import embedded_base

    path = Path(folder).expanduser() if folder else embedded_base()
    read_model_json(path)
    return path.resolve()


def compute_dtype() -> str:
    """The compute dtype of the base models this worker loads (`$STYLEDROP_DTYPE`).

    "auto" (the default) is bfloat16 on a GPU and float32 elsewhere
    (`muse.low_precision.default_compute_dtype`).

    Raises:
        ValueError: when the variable is not one of `DTYPES`.
    """
    raw = os.environ.get(DTYPE_ENV) or "auto"
    if raw not in DTYPES:
        raise ValueError(f"{DTYPE_ENV} must be one of {', '.join(DTYPES)}, got {raw!r}.")
    if raw != "auto":
        return raw
    from muse.low_precision import default_compute_dtype

    return default_compute_dtype()


def device_label(dtype: str | None = None) -> str:
    """What computes this worker's jobs, for the job record: "gpu:NVIDIA H200 (bfloat16)"."""
    import jax

    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind} ({dtype or compute_dtype()})"


def base_pipeline(folder: str | Path | None) -> Pipeline:
    """The loaded base model of `folder` (the embedded default for None), without adapters.

    It computes in `compute_dtype()`. The first call for a folder loads it; later calls
    return the same object.
    """
    import muse
    from adapters import remove_adapters

    path = resolve_base(folder)
    dtype = compute_dtype()
    key = f"{path}|{dtype}"
    with _lock:
        pipe = _cache.get(key)
        if pipe is None:
            pipe = muse.load(path, dtype=dtype)
            _cache[key] = pipe
            while len(_cache) > MAX_MODELS:
                _cache.popitem(last=False)
        _cache.move_to_end(key)
    remove_adapters(pipe.transformer)
    return pipe


def release(pipe: Pipeline) -> None:
    """Takes every adapter out of a cached model once a job is done with it."""
    from adapters import remove_adapters

    remove_adapters(pipe.transformer)


def resolve_judge() -> Path:
    """The CLIP folder that scores generated images: `$STYLEDROP_JUDGE`, else the zoo's judge.

    Raises:
        ZooMissingError: when the variable is unset and the zoo has no judge.
    """
    from styledrop.zoo.embedded import embedded_judge

    folder = os.environ.get(JUDGE_ENV)
    return (Path(folder).expanduser() if folder else embedded_judge()).resolve()


def judge_scorer() -> ClipScorer:
    """The loaded CLIP scorer of `resolve_judge()`; the first call loads it, later calls reuse it.

    Raises:
        ZooMissingError: no `$STYLEDROP_JUDGE` and no judge in the zoo.
        ScorerLoadError: the folder is not an open_clip folder that loads offline.
    """
    from feedback.scorer import ClipScorer

    key = str(resolve_judge())
    with _lock:
        scorer = _judges.get(key)
        if scorer is None:
            scorer = ClipScorer.load(key)
            _judges.clear()  # one judge per process: a changed variable replaces it
            _judges[key] = scorer
    return scorer


def clear() -> None:
    """Forgets every loaded model and judge (tests, or freeing accelerator memory)."""
    with _lock:
        _cache.clear()
        _judges.clear()
