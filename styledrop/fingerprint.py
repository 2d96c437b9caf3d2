"""The fingerprint of a training run: what a checkpoint must match to be resumed.

Every resumable trainer (StyleDrop fine-tuning, the zoo's VQ, text encoder, judge and base)
writes its settings into its checkpoints as one JSON string and refuses to resume a
checkpoint whose string differs. The string is built here, once, so that equal settings
always give equal text (sorted keys, nested dataclasses as objects, tuples as lists).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any


def settings_fingerprint(
    settings: Any,
    skip: Iterable[str] = (),
    added_later: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """The settings of a run as one canonical JSON string.

    Args:
        settings: A dataclass instance (nested dataclasses become JSON objects) or a
            mapping of setting names to values.
        skip: Settings that do not change what the run computes (how often it checkpoints,
            evaluates or previews), so a run may be resumed with other values of them.
        added_later: Settings added after a trainer's first runs, each with the value those
            runs had in effect; a setting at that value is left out, so their checkpoints
            still resume (a name also in `skip` is left out either way).
        overrides: Values recorded instead of the settings' own (e.g. the learning rate in
            effect where the setting is None for "the default").

    Returns:
        `json.dumps` of the remaining settings with sorted keys (values JSON cannot hold
        are written as their `str`).

    Raises:
        KeyError: a name in `skip` or `added_later` is not a setting.
    """
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        values = dataclasses.asdict(settings)
    elif isinstance(settings, Mapping):
        values = dict(settings)
    else:
        raise TypeError(f"Expected a dataclass instance or a mapping, got {type(settings)!r}.")
    skip = set(skip)
    for name in skip:
        values.pop(name)
    for name, earlier in (added_later or {}).items():
        if name not in skip and values[name] == earlier:
            del values[name]
    values.update(overrides)
    return json.dumps(values, sort_keys=True, default=str)
