"""The emoji world dataset: every subject x a few style draws, in disjoint splits.

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

import argparse
import hashlib
import io
import json
import sys
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL

from styledrop.zoo import render
from styledrop.zoo.styles import (
    HELDOUT_STYLES,
    INCOMPATIBLE,
    LINE_ART,
    NOT_FOR_LETTERS,
    TRAIN_STYLES,
    Style,
    get_style,
    stylize,
)
from styledrop.zoo.vocabulary import (
    RECIPE_VERSION,
    SUBJECTS,
    Subject,
    category_counts,
    get_subject,
)

SPLITS = ("vq", "base", "judge", "eval", "canonical")
DEFAULT_DRAWS = {"vq": 2, "base": 8, "judge": 16, "eval": 2, "canonical": 8}
# The split whose draws keep the canonical framing and always carry a style (the plain
# canonical look is base draw 0). A shift of a few pixels changes every token of an
# 8-pixel-patch tokenizer, so jittered draws give the base U-ViT unrelated token grids of one
# subject; at one framing the styled draws share the plain draw's layout.
CANONICAL_SPLIT = "canonical"
P_PLAIN = 0.2  # chance that a draw has no style at all
P_BACKGROUND = 0.35  # chance that a foreground style also gets a background style
SCALE_RANGE = (0.72, 0.92)  # jittered glyph size (fraction of the side); canonical 0.875
LINE_ART_INK = (30, 50, 115)  # Symbola line art: dark blue ink...
LINE_ART_PAPER = (250, 245, 230)  # ...on cream paper
FILES = ("images.npz", "captions.jsonl", "heldout.npz", "heldout.jsonl")


# --------------------------------------------------------------------------------------------
# Captions.


def captions_for(subject: Subject, styles: Sequence[Style] = ()) -> list[str]:
    """Caption variants for a subject drawn in some styles (best first, no duplicates).

    Args:
        subject: The subject.
        styles: Its styles in pipeline order ([] for the plain look).

    Returns:
        Phrasings such as "a penguin in greyscale on a blue background", "penguin in
        greyscale on a blue background", "an image of a penguin in greyscale on a blue
        background", "a greyscale image of a penguin on a blue background".
    """
    main = subject.phrase()
    image_of = subject.phrase(subject.synonyms[0]) if subject.kind == "letter" else main
    nouns = [subject.phrase(name) for name in subject.names[:3]]
    if not styles:
        variants = [*nouns, subject.name, f"an image of {image_of}", f"a picture of {image_of}"]
    else:
        suffix = " ".join(style.suffix for style in styles)
        variants = [f"{noun} {suffix}" for noun in nouns]
        variants += [f"{subject.name} {suffix}", f"an image of {image_of} {suffix}"]
        lead = next((style for style in styles if style.lead), None)
        if lead is not None:
            rest = " ".join(style.suffix for style in styles if style is not lead)
            variants.append(f"{lead.lead} {image_of} {rest}".strip())
    return list(dict.fromkeys(variants))


# --------------------------------------------------------------------------------------------
# Draws.


def _allowed(subject: Subject, styles: Iterable[Style]) -> bool:
    names = {style.name for style in styles}
    if subject.kind == "letter" and names & NOT_FOR_LETTERS:
        return False
    return frozenset(names) not in INCOMPATIBLE


def draw_styles(subject: Subject, rng: np.random.Generator, plain: bool = True) -> list[Style]:
    """Picks the training styles of one draw: none, one, or a foreground plus a background.

    Args:
        subject: The subject (letters skip styles that would hide a black glyph).
        rng: The draw's generator.
        plain: Whether the draw may have no style (chance `P_PLAIN`).

    Returns:
        Styles in pipeline order.
    """
    if plain and rng.random() < P_PLAIN:
        return []
    candidates = [s for s in TRAIN_STYLES if _allowed(subject, [s])]
    primary = candidates[int(rng.integers(len(candidates)))]
    styles = [primary]
    if primary.kind == "fg" and rng.random() < P_BACKGROUND:
        backgrounds = [
            s for s in TRAIN_STYLES if s.kind == "bg" and _allowed(subject, [primary, s])
        ]
        styles.append(backgrounds[int(rng.integers(len(backgrounds)))])
    return styles


def draw_framing(size: int, rng: np.random.Generator) -> tuple[float, tuple[int, int]]:
    """A jittered glyph scale and an integer offset that keeps the glyph inside the image."""
    scale = float(rng.uniform(*SCALE_RANGE))
    margin = (size - round(scale * size)) // 2
    reach = max(0, margin - max(1, size // 32))
    offset = rng.integers(-reach, reach + 1, 2) if reach else np.zeros(2, int)
    return scale, (int(offset[0]), int(offset[1]))


def is_plain_canonical(record: Mapping) -> bool:
    """Whether a `captions.jsonl` record is a subject's plain canonical draw (base draw 0)."""
    return record["split"] == "base" and record["draw"] == 0


def _seed(split_seed: int, subject_id: str, split: str, draw: int, attempt: int) -> list[int]:
    return [split_seed, zlib.crc32(subject_id.encode()), SPLITS.index(split), draw, attempt]


def render_draw(
    subject: Subject,
    styles: Sequence[Style],
    size: int,
    rng: np.random.Generator,
    scale: float = render.DEFAULT_SCALE,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Renders one styled image of a subject.

    Args:
        subject: The subject.
        styles: Styles in pipeline order (training or procedural held-out; not line art).
        size: Image side.
        rng: Generator for the styles' randomness.
        scale: Glyph size as a fraction of the side.
        offset: Glyph shift in pixels.

    Returns:
        uint8 [size, size, 3].
    """
    rgba = np.asarray(render.render_subject(subject, size, scale, offset), np.float32) / 255.0
    rgb = stylize(rgba, styles, rng)  # [S, S, 3] floats
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _subject_draws(
    subject: Subject, size: int, split_seed: int, draws: Mapping[str, int]
) -> Iterable[tuple[str, int, list[Style], list[int], np.ndarray]]:
    """Yields (split, draw, styles, seed, image) for every draw of one subject, all distinct."""
    seen: set[bytes] = set()
    order = [(split, draw) for split in SPLITS for draw in range(draws.get(split, 0))]
    order.sort(key=lambda item: item != ("base", 0))  # the canonical look claims its image first
    for split, draw in order:
        for attempt in range(100):
            seed = _seed(split_seed, subject.id, split, draw, attempt)
            rng = np.random.default_rng(np.random.SeedSequence(seed))
            if split == "base" and draw == 0 and attempt == 0:
                styles, scale, offset = [], render.DEFAULT_SCALE, (0, 0)  # the canonical look
            elif split == CANONICAL_SPLIT:
                styles = draw_styles(subject, rng, plain=False)
                scale, offset = render.DEFAULT_SCALE, (0, 0)
            else:
                styles = draw_styles(subject, rng)
                scale, offset = draw_framing(size, rng)
            image = render_draw(subject, styles, size, rng, scale, offset)
            key = hashlib.sha256(image.tobytes()).digest()
            if key not in seen:
                seen.add(key)
                break
        else:
            raise RuntimeError(f"Could not draw a new image of {subject.id} ({split} {draw}).")
        yield split, draw, styles, seed, image


# --------------------------------------------------------------------------------------------
# Held-out references.


def heldout_references(
    style: Style | str,
    subjects: Sequence[Subject | str] | None = None,
    size: int = 64,
    seed: int = 0,
    colour: tuple[int, int, int] = LINE_ART_INK,
    background: tuple[int, int, int] = LINE_ART_PAPER,
) -> tuple[np.ndarray, list[dict]]:
    """Ground-truth images of subjects in a held-out style (canonical framing).

    Args:
        style: A held-out style or its name ("line_art", "watercolor", "neon", ...).
        subjects: Subjects or ids (default: the whole vocabulary).
        size: Image side.
        seed: Seed of the styles' texture noise.
        colour: Ink colour of the line art style (Symbola glyphs are recolourable).
        background: Paper colour of the line art style.

    Returns:
        (images uint8 [N, size, size, 3], records with "subject", "style" and "captions").
        Subjects that Symbola cannot draw are left out of the line art style.

    Raises:
        ValueError: `style` is a training style.
    """
    style = get_style(style) if isinstance(style, str) else style
    if not style.heldout:
        raise ValueError(f"{style.name!r} is a training style, not a held-out one.")
    chosen = SUBJECTS if subjects is None else [_as_subject(s) for s in subjects]
    images, records = [], []
    for subject in chosen:
        if style is LINE_ART:
            rgba = render.render_symbola(subject, size, colour=colour)
            if rgba is None:
                continue
            image = np.asarray(render.composite(rgba, background))
        else:
            entropy = [seed, zlib.crc32(subject.id.encode()), zlib.crc32(style.name.encode())]
            rng = np.random.default_rng(np.random.SeedSequence(entropy))
            image = render_draw(subject, [style], size, rng)
        images.append(image)
        records.append(
            {"subject": subject.id, "style": style.name, "captions": captions_for(subject, [style])}
        )
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return stacked, records


# --------------------------------------------------------------------------------------------
# Files.


def _as_subject(subject: Subject | str) -> Subject:
    return subject if isinstance(subject, Subject) else get_subject(subject)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez_compressed without timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=6)


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

    Returns:
        The manifest (also written to `manifest.json`).

    Raises:
        render.FontNotFoundError: A font is not installed.
        ValueError: Unknown split in `draws`.
    """
    from tqdm import tqdm

    draws = dict(DEFAULT_DRAWS if draws is None else draws)
    if unknown := set(draws) - set(SPLITS):
        raise ValueError(f"Unknown splits {sorted(unknown)}; use {SPLITS}.")
    requested = list(SUBJECTS) if subjects is None else [_as_subject(s) for s in subjects]
    fonts = render.font_info()  # fails early, naming the package, when a font is missing
    # An older Noto Color Emoji lacks the newest emoji: leave those out and say so.
    chosen = [s for s in requested if s.kind != "emoji" or render.can_render_emoji(s.chars)]
    skipped = [s.id for s in requested if s not in chosen]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    per_split: dict[str, list[tuple[dict, np.ndarray]]] = {split: [] for split in SPLITS}
    bar = tqdm(total=len(chosen) * sum(draws.values()), desc="rendering", disable=not progress)
    for subject in chosen:
        for split, draw, styles, seed, image in _subject_draws(subject, size, split_seed, draws):
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
            per_split[split].append((record, image))
            bar.update()
    bar.close()

    records, images = [], []
    for split in SPLITS:
        for record, image in per_split[split]:
            records.append({"index": len(records), **record})
            images.append(image)
    _write_npz(out / "images.npz", {"images": np.stack(images)})  # [N, S, S, 3] uint8
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
        _write_npz(out / "heldout.npz", {"images": np.concatenate(held_images)})
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
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


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


# --------------------------------------------------------------------------------------------
# Command line.


def _parse_draws(text: str) -> dict[str, int]:
    try:
        pairs = [item.split("=") for item in text.split(",") if item]
        draws = {name.strip(): int(count) for name, count in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected split=count,...; got {text!r}") from None
    if unknown := set(draws) - set(SPLITS):
        raise argparse.ArgumentTypeError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
    return draws


def build_data_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Adds the `zoo data` options to a parser (a new one by default)."""
    parser = parser or argparse.ArgumentParser(
        prog="styledrop zoo data",
        description=(
            "Render the emoji world dataset (Noto Color Emoji subjects and A-Z in procedural"
            " styles, with captions) for the embedded model zoo: images.npz, captions.jsonl,"
            " held-out style references and manifest.json. Deterministic: the same seed gives"
            " byte-identical files."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw and split")
    parser.add_argument(
        "--draws",
        type=_parse_draws,
        default=None,
        help="draws per subject per split (default vq=2,base=8,judge=16,eval=2,canonical=8)",
    )
    parser.add_argument(
        "--subjects", help="comma-separated subject ids to build (default: all of them)"
    )
    parser.add_argument(
        "--no-heldout", action="store_true", help="skip the held-out style references"
    )
    return parser


def main_data(argv: Sequence[str] | None = None) -> int:
    """`styledrop zoo data`: builds the dataset and prints counts and the time taken.

    Returns:
        The exit code (2 when a font is missing or an argument is wrong).
    """
    args = build_data_parser().parse_args(argv)
    if args.size < 16:
        print("error: --size must be at least 16.", file=sys.stderr)
        return 2
    subjects = None
    if args.subjects:
        try:
            subjects = [get_subject(s.strip()) for s in args.subjects.split(",") if s.strip()]
        except KeyError as error:
            print(f"error: {error.args[0]}", file=sys.stderr)
            return 2
    start = time.perf_counter()
    try:
        manifest = build_dataset(
            args.out,
            size=args.size,
            split_seed=args.seed,
            draws=args.draws,
            subjects=subjects,
            heldout=not args.no_heldout,
            progress=True,
        )
    except render.FontNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{split} {count}" for split, count in manifest["counts"].items())
    held = sum(manifest["heldout_counts"].values())
    megabytes = sum((args.out / name).stat().st_size for name in manifest["files"]) / 2**20
    print(f"{manifest['subjects']} subjects at {args.size}px: {counts}; held-out references {held}")
    if manifest["skipped_subjects"]:
        skipped = ", ".join(manifest["skipped_subjects"])
        print(f"Skipped (the installed Noto Color Emoji cannot draw them): {skipped}")
    print(f"Wrote {args.out} ({megabytes:.1f} MiB) in {elapsed:.1f} s")
    return 0
