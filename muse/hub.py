"""Published diffusers checkpoints from the Hugging Face Hub, into (or from) its local cache.

`styledrop convert amused/amused-256 DEST` reads the repo's diffusers folder. `fetch_snapshot`
returns its snapshot in the hub cache (`$HF_HUB_CACHE`), downloading with huggingface_hub's
progress bars what is missing, and only the files the conversion reads: the components'
configs, the tokenizer, and one safetensors file per model, full precision where the repo
has it, else its `.fp16` variant. With downloads off (`offline=True`, the `--offline`
option, or HF_HUB_OFFLINE=1) it reads the cache only, and a repo missing there is an
error that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

# The weights each component's folder holds, as `stem` (+ ".fp16") + ".safetensors".
WEIGHT_STEMS = {
    "transformer": "diffusion_pytorch_model",
    "vqvae": "diffusion_pytorch_model",
    "text_encoder": "model",
}
CONFIG_PATTERNS = (
    "model_index.json",
    "transformer/config.json",
    "vqvae/config.json",
    "text_encoder/config.json",
    "tokenizer/*",
    "scheduler/scheduler_config.json",
)
_TRUE = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub reads as true in HF_HUB_OFFLINE


class SnapshotUnavailableError(ValueError):
    """A repo's checkpoint is neither in the local cache nor downloadable now."""


def downloads_disabled(offline: bool = False) -> bool:
    """Whether nothing may be downloaded: `offline`, or HF_HUB_OFFLINE set in the environment.

    The environment is read now (huggingface_hub reads it once, when first imported).
    """
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    return offline or flag or bool(constants.HF_HUB_OFFLINE)


def weight_patterns(fp16: bool = False) -> list[str]:
    """The weights files of a diffusers aMUSEd repo: full precision, or the fp16 variants."""
    suffix = ".fp16.safetensors" if fp16 else ".safetensors"
    return [f"{folder}/{stem}{suffix}" for folder, stem in WEIGHT_STEMS.items()]


def missing_weights(folder: Path) -> list[str]:
    """The components of `folder` that have neither weights file (full or fp16)."""
    return [
        component
        for component, stem in WEIGHT_STEMS.items()
        if not any(
            (folder / component / f"{stem}{suffix}").is_file()
            for suffix in (".safetensors", ".fp16.safetensors")
        )
    ]


def fetch_snapshot(
    repo_id: str,
    *,
    offline: bool = False,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The local snapshot of a diffusers aMUSEd repo, downloading what conversion reads.

    Args:
        repo_id: A Hub repo id such as "amused/amused-256".
        offline: Read the cache only (HF_HUB_OFFLINE=1 does the same).
        revision: Branch, tag or commit (default: main).
        cache_dir: The hub cache (default: huggingface_hub's, `$HF_HUB_CACHE`).

    Returns:
        The snapshot folder (transformer/, vqvae/, text_encoder/, tokenizer/, scheduler/).

    Raises:
        SnapshotUnavailableError: not cached while downloads are off, or the download
            failed; the message says what to do.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    if downloads_disabled(offline):
        try:
            path = snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True
            )
        except LocalEntryNotFoundError as error:
            raise SnapshotUnavailableError(
                f"{repo_id!r} is not in the local Hugging Face cache ({cache}), and downloads"
                " are off (--offline or HF_HUB_OFFLINE=1). Run the same command where the"
                " network is reachable without --offline and with HF_HUB_OFFLINE unset, which"
                f" downloads it into the cache (or `hf download {repo_id}`), or give a local"
                " folder."
            ) from error
        return Path(path)

    def download(patterns: list[str]) -> Path:
        try:
            path = snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns
            )
        except LocalEntryNotFoundError as error:  # the Hub unreachable, nothing cached
            raise SnapshotUnavailableError(
                f"Could not reach the Hugging Face Hub to download {repo_id!r}, and it is not"
                f" in the local cache ({cache}). Check the network (HF_ENDPOINT), or give a"
                f" local folder. ({error})"
            ) from error
        except OSError as error:  # HTTP errors: no such repo, a gated one, refused token
            raise SnapshotUnavailableError(f"Could not download {repo_id!r}: {error}") from error
        return Path(path)

    folder = download([*CONFIG_PATTERNS, *weight_patterns()])
    if missing_weights(folder):  # a repo with fp16 weights only
        folder = download(weight_patterns(fp16=True))
    return folder
