"""Where the committed emoji-world zoo lives, and the default base everywhere.

The zoo ships inside the package (`styledrop/zoo/weights/`): a native model folder that
`muse.load` reads (base U-ViT, VQ tokenizer, text encoder, tokenizer, `model.json`), the
judge CLIP under `judge/`, and `manifest.json` with the sha256 of every file, so
`styledrop` runs offline with `--base` omitted. `styledrop zoo assemble` rebuilds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

EMBEDDED_ZOO = Path(__file__).resolve().parent / "weights"
JUDGE_DIR = "judge"
MANIFEST = "manifest.json"
ZOO_SOURCE = "styledrop-zoo/emoji-world"  # `model.json` "source" of every emoji-world zoo
# Points the defaults at another zoo folder (a rebuild under test, a shared copy).
ZOO_ENV = "STYLEDROP_ZOO"


class ZooMissingError(FileNotFoundError):
    """The embedded zoo (or the part asked for) is not on disk."""


def zoo_dir() -> Path:
    """The zoo folder in use: `$STYLEDROP_ZOO` when set, else the committed one."""
    return Path(os.environ.get(ZOO_ENV) or EMBEDDED_ZOO)


def embedded_base() -> Path:
    """The default base model folder.

    Raises:
        ZooMissingError: when the folder holds no `model.json`, with how to rebuild it.
    """
    folder = zoo_dir()
    if not (folder / "model.json").is_file():
        raise ZooMissingError(
            f"The embedded model zoo is missing at {folder} (no model.json). Pass --base with"
            " a converted model folder, or rebuild the zoo: see `styledrop zoo --help`."
        )
    return folder


def is_emoji_world(base: str | Path) -> bool:
    """Whether a model folder is an emoji-world zoo (its `model.json` source says so).

    Such a base only knows the world's subjects: prompt sets map onto them, and the judge
    can name the subject of its images.
    """
    from muse.checkpoint import read_model_json

    return read_model_json(base)["config"].get("source") == ZOO_SOURCE


def embedded_judge() -> Path:
    """The judge CLIP folder (open_clip `local-dir:` layout) of the zoo.

    Raises:
        ZooMissingError: when it is not there.
    """
    folder = zoo_dir() / JUDGE_DIR
    if not (folder / "open_clip_config.json").is_file():
        raise ZooMissingError(
            f"The zoo's judge CLIP is missing at {folder}. Pass --clip/--clip-weights, or"
            " rebuild the zoo: `styledrop zoo train judge`, then `styledrop zoo assemble`."
        )
    return folder


def read_manifest(folder: str | Path | None = None) -> dict:
    """The zoo's manifest (file hashes, training configs, evaluation figures)."""
    path = Path(folder or zoo_dir()) / MANIFEST
    if not path.is_file():
        raise ZooMissingError(f"No {MANIFEST} in {path.parent}.")
    return json.loads(path.read_text())
