"""The models a worker process holds: loaded on first use, once per process.

A fine-tune job injects a fresh adapter into the base transformer, so the cache hands
out the model with every adapter removed, and `release` takes the job's adapter out
again when the job ends. Only the few most recently used base folders are kept (one
accelerator holds one or two models, not every folder ever asked for).

The CLIP judge that scores generated images (`judge_scorer`) is cached the same way: the
folder `$STYLEDROP_JUDGE`, else the zoo's judge (`styledrop.zoo.embedded.embedded_judge`).

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


def base_pipeline(folder: str | Path | None) -> Pipeline:
    """The loaded base model of `folder` (the embedded default for None), without adapters.

    The first call for a folder loads it; later calls return the same object.
    """
    import muse
    from adapters import remove_adapters

    path = resolve_base(folder)
    key = str(path)
    with _lock:
        pipe = _cache.get(key)
        if pipe is None:
            pipe = muse.load(path)
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
