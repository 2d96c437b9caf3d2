"""The emoji world dataset files: every subject x a few draws (`styledrop.zoo.draws`), in splits.

`build_dataset` writes into one folder:

- `images.npz`: `images`, uint8 [N, size, size, 3] (every split, in `captions.jsonl` order);
- `captions.jsonl`: one record per image: index, split, subject id, category, style names,
  seed, and caption variants ("a penguin", "penguin", "an image of a penguin",
  "a penguin in greyscale", "a greyscale image of a penguin", ...);
- `heldout.npz` / `heldout.jsonl`: ground-truth references of every subject in each held-out
  style (for checking style transfer; never for training);
- `manifest.json`: recipe version, counts, sha256 of every file, the fonts used with their
  sha256, and the software versions that rendered them.

Splits: "vq" (VQ tokenizer), "base" (the text encoder, and the VQ; its first draw of each
subject is the plain canonical rendering, which the base U-ViT trains on), "judge" (the
judge CLIP, disjoint from the base split so scores do not come from the conditioning
model's data), "eval" (unseen draws of the same subjects and training styles) and
"canonical" (styled draws at the canonical framing, for the base U-ViT; rendered last, so
the other splits do not depend on it). Each draw has its own seed, derived from
(split_seed, subject id, split, draw); no two images of a subject are identical across or
within splits. Held-out styles appear in no split. The same arguments give byte-identical
files on the same fonts and software versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL

from styledrop.zoo import render
from styledrop.zoo.draws import (
    DEFAULT_DRAWS,
    SPLITS,
    as_subject,
    captions_for,
    heldout_references,
    subject_draws,
)
from styledrop.zoo.styles import HELDOUT_STYLES, TRAIN_STYLES
from styledrop.zoo.vocabulary import RECIPE_VERSION, SUBJECTS, Subject, category_counts

FILES = ("images.npz", "captions.jsonl", "heldout.npz", "heldout.jsonl")
MANIFEST_FILE = "manifest.json"


# --------------------------------------------------------------------------------------------
# Files.


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], compresslevel: int = 6) -> None:
    """np.savez_compressed without timestamps, so equal arrays give equal bytes.

    Args:
        path: Destination file.
        arrays: Name -> array (stored as NAME.npy, deflated).
        compresslevel: zlib level (6 for the dataset files, whose sha256 manifests record).
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=compresslevel)


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_dataset(
    out_dir: str | Path,
    size: int = 64,
    split_seed: int = 0,
    draws: Mapping[str, int] | None = None,
    subjects: Sequence[Subject | str] | None = None,
    heldout: bool = True,
    progress: bool = False,
    processes: int = 1,
) -> dict:
    """Renders the emoji world dataset into a folder (see the module docstring).

    Args:
        out_dir: Output folder (created; existing dataset files are replaced).
        size: Image side in pixels.
        split_seed: Seed of every draw; the same seed gives byte-identical files.
        draws: Draws per subject for each split (default `DEFAULT_DRAWS`).
        subjects: Subjects or ids to build (default: the whole vocabulary).
        heldout: Also write the held-out style references.
        progress: Show a progress bar.
        processes: Render the subjects in this many processes (the files are the same).

    Returns:
        The manifest (also written to `manifest.json`).

    Raises:
        render.FontNotFoundError: A font is not installed.
        ValueError: Unknown split in `draws`, or none of the subjects can be drawn.
    """
    from tqdm import tqdm

    draws = dict(DEFAULT_DRAWS if draws is None else draws)
    if unknown := set(draws) - set(SPLITS):
        raise ValueError(f"Unknown splits {sorted(unknown)}; use {SPLITS}.")
    requested = list(SUBJECTS) if subjects is None else [as_subject(s) for s in subjects]
    fonts = render.font_info()  # fails early, naming the package, when a font is missing
    # An older Noto Color Emoji lacks the newest emoji: leave those out and say so.
    chosen = [s for s in requested if s.kind != "emoji" or render.can_render_emoji(s.chars)]
    skipped = [s.id for s in requested if s not in chosen]
    if not chosen:
        raise ValueError(
            f"None of the {len(requested)} subjects can be drawn here ({', '.join(skipped[:5])}"
            f"{', ...' if len(skipped) > 5 else ''}): the installed fonts, or the data pack in"
            " use, lack their glyphs."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    per_split: dict[str, list[tuple[dict, np.ndarray]]] = {split: [] for split in SPLITS}
    bar = tqdm(total=len(chosen), unit="subject", desc="rendering", disable=not progress)
    jobs = [(subject.id, size, split_seed, draws) for subject in chosen]
    with _subject_pool(processes) as pool:
        for rendered in pool(_render_subject, jobs):
            for record, image in rendered:
                per_split[record["split"]].append((record, image))
            bar.update()
    bar.close()

    records, images = [], []
    for split in SPLITS:
        for record, image in per_split[split]:
            records.append({"index": len(records), **record})
            images.append(image)
    write_npz(out / "images.npz", {"images": np.stack(images)})  # [N, S, S, 3] uint8
    _write_jsonl(out / "captions.jsonl", records)

    heldout_counts = {}
    if heldout:
        held_images, held_records = [], []
        for style in tqdm(HELDOUT_STYLES, desc="held-out references", disable=not progress):
            style_images, style_records = heldout_references(style, chosen, size, split_seed)
            held_images.append(style_images)
            held_records += style_records
            heldout_counts[style.name] = len(style_records)
        held_records = [{"index": i, **record} for i, record in enumerate(held_records)]
        write_npz(out / "heldout.npz", {"images": np.concatenate(held_images)})
        _write_jsonl(out / "heldout.jsonl", held_records)
    else:
        for name in ("heldout.npz", "heldout.jsonl"):
            (out / name).unlink(missing_ok=True)

    manifest = {
        "recipe_version": RECIPE_VERSION,
        "size": size,
        "split_seed": split_seed,
        "draws": draws,
        "counts": {split: len(per_split[split]) for split in SPLITS} | {"total": len(records)},
        "heldout_counts": heldout_counts,
        "subjects": len(chosen),
        "skipped_subjects": skipped,
        "categories": category_counts(tuple(chosen)),
        "train_styles": [style.name for style in TRAIN_STYLES],
        "heldout_styles": [style.name for style in HELDOUT_STYLES],
        "files": {name: _sha256(out / name) for name in FILES if (out / name).exists()},
        "fonts": fonts,
        "software": {
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "layout_engine": render.layout_engine(),
        },
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _render_subject(job: tuple) -> list[tuple[dict, np.ndarray]]:
    """Every draw of one subject as (record without index, uint8 [S, S, 3] image)."""
    subject_id, size, split_seed, draws = job
    subject = as_subject(subject_id)
    rendered = []
    for split, draw, styles, seed, image in subject_draws(subject, size, split_seed, draws):
        record = {
            "split": split,
            "subject": subject.id,
            "category": subject.category,
            "style": "+".join(style.name for style in styles) or "plain",
            "styles": [style.name for style in styles],
            "draw": draw,
            "seed": seed,
            "captions": captions_for(subject, styles),
        }
        rendered.append((record, image))
    return rendered


@contextlib.contextmanager
def _subject_pool(processes: int) -> Iterator[Callable]:
    """An ordered map over subjects: in this process, or in `processes` spawned ones.

    Spawned, not forked: the caller may have started JAX's threads. Each worker draws from
    the glyph atlas in use here (`render.current_glyph_atlas`), or from the fonts.
    """
    if processes <= 1:
        yield map
        return
    context = multiprocessing.get_context("spawn")
    atlas = render.current_glyph_atlas()
    with context.Pool(processes, initializer=render.set_glyph_atlas, initargs=(atlas,)) as pool:
        yield lambda fn, jobs: pool.imap(fn, jobs, chunksize=4)


def load_dataset(
    out_dir: str | Path, split: str | None = None, heldout: bool = False
) -> tuple[np.ndarray, list[dict]]:
    """Reads a built dataset back.

    Args:
        out_dir: Folder written by `build_dataset`.
        split: One of `SPLITS` (default: all) for the training images.
        heldout: Read the held-out references instead (`split` must be None).

    Returns:
        (images uint8 [N, size, size, 3], their records).
    """
    if heldout and split is not None:
        raise ValueError("The held-out references have no splits: pass split=None.")
    out = Path(out_dir)
    stem = "heldout" if heldout else "images"
    captions = "heldout.jsonl" if heldout else "captions.jsonl"
    with np.load(out / f"{stem}.npz") as archive:
        images = archive["images"]
    lines = (out / captions).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; use {SPLITS}.")
        records = [record for record in records if record.get("split") == split]
        images = images[[record["index"] for record in records]]
    return images, records


def _manifest(out_dir: str | Path) -> dict | None:
    """A dataset folder's `manifest.json` (None: the folder has none)."""
    manifest = Path(out_dir) / MANIFEST_FILE
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8"))


def recipe_version(out_dir: str | Path) -> str | None:
    """The recipe version a dataset folder was built with (None: the folder has no manifest).

    Args:
        out_dir: Folder written by `build_dataset`.
    """
    manifest = _manifest(out_dir)
    return None if manifest is None else manifest.get("recipe_version")


def dataset_draws(out_dir: str | Path) -> dict[str, int] | None:
    """Draws per subject per split a dataset folder was built with (None: no manifest).

    Args:
        out_dir: Folder written by `build_dataset`.
    """
    manifest = _manifest(out_dir)
    return None if manifest is None else manifest.get("draws")
