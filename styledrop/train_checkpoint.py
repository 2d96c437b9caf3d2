"""Resumable training state: adapter + optimizer leaves, step and run fingerprint, atomically.

The state is any pytree (here `(adapter_state, opt_state)`). Its leaves are written in
flattening order to `checkpoint/state.safetensors` and the step and fingerprint to
`checkpoint/state.json`; the folder is staged and renamed into place, so a crash
mid-write leaves the previous checkpoint intact. A crash between the two renames leaves
no `checkpoint/` but a complete `checkpoint.partial/` (the new one) and `checkpoint.old/`
(the one before): `restore` then takes the newest complete one. Randomness is a function of
(seed, step), so the step is all a resumed run needs to continue bit-identically.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

CHECKPOINT_DIR = "checkpoint"


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but belongs to a run with other settings."""


def has_checkpoint(out_dir: str | Path) -> bool:
    """Whether the run folder `out_dir` holds a checkpoint."""
    return (Path(out_dir) / CHECKPOINT_DIR / "state.json").is_file()


def save(out_dir: Path, state: Any, step: int, fingerprint: str) -> Path:
    """Writes the checkpoint of `state` at `step` under `out_dir/checkpoint`, atomically."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    leaves = jax.tree.leaves(state)
    save_file({f"{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)},
              str(staging / "state.safetensors"))  # fmt: skip
    info = {"step": step, "fingerprint": fingerprint, "leaves": len(leaves)}
    (staging / "state.json").write_text(json.dumps(info))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _newest_complete(out_dir: Path) -> tuple[Path, dict] | None:
    """The checkpoint folder to resume from and its info, or None when there is none.

    `checkpoint/` when it is there; else (a crash between the renames of `save`) the
    staged new one if it was written completely (state.json is written last), else the
    previous one.
    """
    folder = out_dir / CHECKPOINT_DIR
    candidates = [folder]
    if not folder.exists():
        candidates += [folder.with_name(folder.name + suffix) for suffix in (".partial", ".old")]
    for candidate in candidates:
        try:
            info = json.loads((candidate / "state.json").read_text())
        except (OSError, ValueError):  # missing, or cut short by the crash
            continue
        if (candidate / "state.safetensors").is_file():
            return candidate, info
    return None


def restore(out_dir: Path, template: Any, fingerprint: str) -> tuple[Any, int] | None:
    """Loads the checkpoint into the structure of `template`.

    Args:
        out_dir: The run folder.
        template: A pytree with the right structure, shapes and dtypes (a fresh state).
        fingerprint: The current run's settings; must equal the checkpoint's.

    Returns:
        (state, step), or None when there is no checkpoint.

    Raises:
        CheckpointMismatchError: if the checkpoint was written by a different run.
    """
    found = _newest_complete(Path(out_dir))
    if found is None:
        return None
    folder, info = found
    if info["fingerprint"] != fingerprint:
        raise CheckpointMismatchError(
            f"{folder} belongs to a run with other settings; use a new output folder or"
            f" delete it to start over.\n  saved:   {info['fingerprint']}\n  current: {fingerprint}"
        )
    tensors = load_file(str(folder / "state.safetensors"))
    leaves, treedef = jax.tree.flatten(template)
    if len(tensors) != len(leaves):
        raise CheckpointMismatchError(
            f"{folder} holds {len(tensors)} arrays, expected {len(leaves)}."
        )
    restored = []
    for i, leaf in enumerate(leaves):
        value = tensors[f"{i:05d}"]
        if value.shape != tuple(np.shape(leaf)):
            raise CheckpointMismatchError(f"{folder}: array {i} has shape {value.shape}.")
        restored.append(jnp.asarray(value, dtype=jnp.asarray(leaf).dtype))
    return jax.tree.unflatten(treedef, restored), int(info["step"])


def trim_log(path: Path, last_step: int) -> None:
    """Drops the JSON-lines log records after `last_step`, the checkpoint a run resumes from.

    A killed run may have logged steps past its last checkpoint; the resumed run trains
    them again and logs them once more, so they are dropped first. A line cut short by the
    kill is dropped too.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    path.write_text("".join(f"{line}\n" for line in kept))
