"""Published open_clip weights by tag ("ViT-B-32" + "openai"): from the cache, or downloaded.

open_clip's table of pretrained tags says where each tag's weights live: most on the
Hugging Face Hub (`hf_hub`: a repo and a file name), which land in the hub cache
(`$HF_HUB_CACHE`); a few at a plain URL only, which open_clip keeps in `~/.cache/clip`.
`pretrained_file` returns the weights file from its cache, or downloads it there (with
a progress bar) unless downloads are off: `offline=True` (the `--offline` option) or
`HF_HUB_OFFLINE=1`. Then a missing file is an error that says what to do.

`tag_settings` gives what open_clip applies when it is handed the tag itself (QuickGELU,
the tag's image normalisation), so a model built from the file computes the same function.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The Hub file names of an open_clip checkpoint; the safetensors one is preferred.
PYTORCH_FILE = "open_clip_pytorch_model.bin"
SAFETENSORS_FILE = "open_clip_model.safetensors"
URL_CACHE = Path("~/.cache/clip")  # where open_clip keeps weights downloaded from a URL
_TRUE = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub reads as true in HF_HUB_OFFLINE
OFFLINE_HINT = (
    "Run once where the network is reachable, without --offline and with HF_HUB_OFFLINE"
    " unset, to download them into the cache (or copy a cache that has them), or pass"
    " --clip-weights a local checkpoint file."
)


class ClipWeightsError(ValueError):
    """Published weights are unavailable: unknown tag, not cached while offline, no network."""


def downloads_disabled(offline: bool = False) -> bool:
    """Whether nothing may be downloaded: `offline`, or HF_HUB_OFFLINE set in the environment.

    The environment is read now (huggingface_hub reads it once, when first imported).
    """
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    return offline or flag or bool(constants.HF_HUB_OFFLINE)


def tag_config(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's table entry of a pretrained tag.

    Raises:
        ClipWeightsError: the tag is not one of the architecture's.
    """
    import open_clip

    config = open_clip.get_pretrained_cfg(arch, tag)
    if not config:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ClipWeightsError(f"{tag!r} is not a pretrained tag of {arch} (its tags: {tags}).")
    return config


def tag_settings(arch: str, tag: str) -> dict[str, Any]:
    """`open_clip.create_model` options that loading from the tag would imply.

    Returns:
        `force_quick_gelu` (the OpenAI weights were trained with QuickGELU) and
        `force_preprocess_cfg` (the tag's mean, std, interpolation, ...).
    """
    from open_clip.transform import merge_preprocess_dict

    config = tag_config(arch, tag)
    return {
        "force_quick_gelu": bool(config.get("quick_gelu", False)),
        "force_preprocess_cfg": merge_preprocess_dict({}, config),
    }


def pretrained_file(
    arch: str, tag: str, *, offline: bool = False, cache_dir: str | Path | None = None
) -> Path:
    """The weights file of a pretrained tag, from its cache or downloaded into it.

    Args:
        arch: An open_clip architecture, e.g. "ViT-B-32".
        tag: One of its pretrained tags, e.g. "openai" or "laion2b_s34b_b79k".
        offline: Use the cache only (HF_HUB_OFFLINE=1 does the same).
        cache_dir: The cache folder (default: the hub cache, or `~/.cache/clip` for
            weights published at a URL only).

    Returns:
        The local file.

    Raises:
        ClipWeightsError: unknown tag; not cached while downloads are off (the message
            names the cache and what to do); or the download failed.
    """
    config = tag_config(arch, tag)
    no_downloads = downloads_disabled(offline)
    if config.get("hf_hub"):
        repo, name = os.path.split(config["hf_hub"])  # "org/repo/" -> ("org/repo", "")
        return _hub_file(arch, tag, repo, name or PYTORCH_FILE, no_downloads, cache_dir)
    url = config.get("url")
    if not url:
        raise ClipWeightsError(f"open_clip lists no source for {arch} {tag}.")
    folder = Path(cache_dir or URL_CACHE).expanduser()
    target = folder / os.path.basename(url)
    if target.is_file():
        return target
    if no_downloads:
        raise ClipWeightsError(
            f"The {arch} {tag} weights are not in {folder} (open_clip's cache for {url}),"
            f" and downloads are off (--offline or HF_HUB_OFFLINE=1). {OFFLINE_HINT}"
        )
    from open_clip.pretrained import download_pretrained_from_url

    try:
        return Path(download_pretrained_from_url(url, cache_dir=str(folder)))
    except (OSError, RuntimeError) as error:
        raise ClipWeightsError(f"Could not download {url}: {error}") from error


def _hub_file(
    arch: str, tag: str, repo: str, name: str, no_downloads: bool, cache_dir: str | Path | None
) -> Path:
    """The file from a Hub repo, its safetensors twin first (as open_clip looks them up)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    names = [name]
    if name == PYTORCH_FILE:
        names.insert(0, SAFETENSORS_FILE)
    elif name.endswith((".bin", ".pth")):
        names.insert(0, name[:-4] + ".safetensors")
    unreachable = None  # once the Hub did not answer, the other names are looked up locally
    for candidate in names:
        try:
            path = hf_hub_download(
                repo, candidate, cache_dir=cache_dir,
                local_files_only=no_downloads or unreachable is not None,
            )  # fmt: skip
            return Path(path)
        except LocalEntryNotFoundError as error:  # not cached, and no download allowed/possible
            unreachable = unreachable or error
        except EntryNotFoundError:  # the Hub has no such file: try the next name
            continue
        except OSError as error:  # HTTP errors (an unknown repo, a refused token), disk
            raise ClipWeightsError(f"Could not download {repo}/{candidate}: {error}") from error
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    if no_downloads:
        raise ClipWeightsError(
            f"The {arch} {tag} weights ({repo}: {' or '.join(names)}) are not in the Hugging"
            f" Face cache {cache}, and downloads are off (--offline or HF_HUB_OFFLINE=1)."
            f" {OFFLINE_HINT}"
        )
    if unreachable is not None:
        raise ClipWeightsError(
            f"Could not download the {arch} {tag} weights from {repo} (is the Hub reachable?),"
            f" and they are not in the Hugging Face cache {cache}: {unreachable}"
        ) from unreachable
    raise ClipWeightsError(f"{repo} has none of {', '.join(names)}.")
