"""The StyleDrop paper's Parti-190 prompts, and which emoji world subject each one names.

Parti-190: the PartiPrompts rows (google-research/parti, Apache License 2.0; a copy ships in
`styledrop/data/PartiPrompts.tsv`) with Challenge == "Basic", minus the categories Abstract,
World Knowledge, People and Arts.

A prompt maps to a subject by keyword matching against the vocabulary's names and synonyms
(the whole prompt first, then its longest sub-phrase), followed by `OVERRIDES`, reviewed by
hand: they block wrong keyword hits ("a fire hydrant" is not "fire") and add stand-ins
("a pumpkin" -> the jack-o-lantern emoji). Each match has a quality:

- "exact": the prompt (without articles or "an illustration of") is a name or synonym;
- "keyword": a sub-phrase matched and the subject depicts the prompt ("a koi fish" -> fish);
- "approximate": the subject is a reasonable stand-in ("a corgi" -> dog, "a red cube" ->
  red square); use these prompts where some coverage beats none.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from styledrop.zoo.vocabulary import EMOJI_SUBJECTS

PARTI_TSV = Path(__file__).resolve().parents[1] / "data" / "PartiPrompts.tsv"
EXCLUDED_CATEGORIES = ("Abstract", "World Knowledge", "People", "Arts")
MIN_COVERED = 150  # the tests hold the mapping to at least this many of the 190 prompts

# prompt -> (subject id or None, quality). Reviewed by hand against the auto matches.
OVERRIDES: dict[str, tuple[str | None, str]] = {
    # Wrong keyword hits.
    "a hot air balloon": (None, "none"),
    "a fire hydrant": (None, "none"),
    "a tennis court": (None, "none"),
    "a coffee table": (None, "none"),
    "a coffee maker": (None, "none"),
    "an espresso machine": (None, "none"),
    "a clock tower": (None, "none"),
    "a painting of black and white": (None, "none"),
    "a space elevator": (None, "none"),
    "an iPhone case": (None, "none"),
    # Stand-ins.
    "a shiba inu": ("dog", "approximate"),
    "a corgi": ("dog", "approximate"),
    "brain coral": ("coral", "approximate"),
    "a walnut": ("chestnut", "approximate"),
    "a chimpanzee": ("monkey", "approximate"),
    "a baby penguin": ("penguin", "approximate"),
    "a roast turkey": ("poultry_leg", "approximate"),
    "a pumpkin": ("jack_o_lantern", "approximate"),
    "orange juice": ("juice_box", "approximate"),
    "A bowl of Pho": ("bowl_of_noodles", "approximate"),
    "a margarita": ("cocktail_glass", "approximate"),
    "lily pads": ("lotus", "approximate"),
    "a fall landscape": ("national_park", "approximate"),
    "a city intersection": ("cityscape", "approximate"),
    "A picture of some food in the plate": ("plate", "approximate"),
    "a yellow box": ("yellow_square", "approximate"),
    "a red box": ("red_square", "approximate"),
    "a large blue box": ("blue_square", "approximate"),
    "a red cube": ("red_square", "approximate"),
    "a sphere": ("red_circle", "approximate"),
    "a red sphere": ("red_circle", "approximate"),
    "a blue metallic sphere": ("blue_circle", "approximate"),
    "red balls": ("red_circle", "approximate"),
    "concentric circles": ("bullseye", "approximate"),
    "a pirate ship": ("sailboat", "approximate"),
    "a rowboat": ("canoe", "approximate"),
    "a wood cabin": ("hut", "approximate"),
    "an armchair": ("couch_and_lamp", "approximate"),
    "a wall": ("brick", "approximate"),
    "a red lego block": ("brick", "approximate"),
    "a wooden post": ("wood", "approximate"),
    "a yellow sticky note": ("memo", "approximate"),
    "a bookshelf": ("books", "approximate"),
    "toy cars": ("car", "approximate"),
    "a tuba": ("trumpet", "approximate"),
    "the planet Jupiter": ("ringed_planet", "approximate"),
    "a book cover": ("book", "approximate"),
    "a room": ("couch_and_lamp", "approximate"),
    "congruent triangles": ("red_triangle", "approximate"),
}

_LEADS = re.compile(r"^(an illustration of|a picture of|an image of|a photo of)\s+")
_ARTICLES = re.compile(r"^(a|an|the|some)\s+")


@dataclass(frozen=True)
class PartiPrompt:
    """One PartiPrompts row."""

    prompt: str
    category: str
    challenge: str
    note: str


@dataclass(frozen=True)
class PartiMatch:
    """A Parti prompt's subject (None when no subject depicts it) and the match quality."""

    subject: str | None
    quality: str  # "exact", "keyword", "approximate" or "none"


def read_parti_prompts(path: str | Path = PARTI_TSV) -> list[PartiPrompt]:
    """All PartiPrompts rows (1632 in the published file)."""
    with Path(path).open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return [
        PartiPrompt(row["Prompt"], row["Category"], row["Challenge"], row.get("Note") or "")
        for row in rows
    ]


@cache
def parti190(path: str | Path = PARTI_TSV) -> tuple[PartiPrompt, ...]:
    """The StyleDrop paper's 190 prompts, in file order.

    Raises:
        ValueError: The file does not give exactly 190 prompts under the paper's rule.
    """
    prompts = tuple(
        row
        for row in read_parti_prompts(path)
        if row.challenge == "Basic" and row.category not in EXCLUDED_CATEGORIES
    )
    if len(prompts) != 190:
        raise ValueError(f"Expected 190 Parti prompts in {path}, found {len(prompts)}.")
    return prompts


def normalize(text: str) -> str:
    """Lowercase, no leading "an illustration of" / article, no trailing punctuation."""
    text = re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!?")
    text = _LEADS.sub("", text)
    return _ARTICLES.sub("", text)


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


@cache
def _name_index() -> dict[str, str]:
    """Normalized emoji subject names and synonyms (and their singulars) -> subject id."""
    index: dict[str, str] = {}
    for subject in EMOJI_SUBJECTS:
        for name in subject.names:
            index.setdefault(normalize(name), subject.id)
    for subject in EMOJI_SUBJECTS:  # singulars after every real name: "books" is not "book"
        for name in subject.names:
            singular = " ".join(_singular(w) for w in normalize(name).split())
            index.setdefault(singular, subject.id)
    return index


def match_prompt(prompt: str) -> PartiMatch:
    """Keyword match of a prompt against the vocabulary (no overrides).

    The whole normalized prompt (or its singular) is tried first ("exact"), then its
    sub-phrases from the longest ("keyword").
    """
    index = _name_index()
    text = normalize(prompt)
    words = text.split()
    singular = " ".join(_singular(w) for w in words)
    for candidate in (text, singular):
        if candidate in index:
            return PartiMatch(index[candidate], "exact")
    for length in range(len(words) - 1, 0, -1):
        for start in range(len(words) - length + 1):
            for phrase_words in (words, singular.split()):
                phrase = " ".join(phrase_words[start : start + length])
                if phrase in index:
                    return PartiMatch(index[phrase], "keyword")
    return PartiMatch(None, "none")


def map_prompt(prompt: str) -> PartiMatch:
    """The subject of one prompt: the hand-reviewed override if any, else the keyword match."""
    if prompt in OVERRIDES:
        return PartiMatch(*OVERRIDES[prompt])
    return match_prompt(prompt)


@cache
def parti_mapping() -> dict[str, PartiMatch]:
    """Every Parti-190 prompt -> its match (subject None where nothing fits)."""
    return {row.prompt: map_prompt(row.prompt) for row in parti190()}


def parti_to_subject(include_approximate: bool = True) -> dict[str, str]:
    """Parti-190 prompt -> subject id, for the prompts that have a subject.

    Args:
        include_approximate: Keep stand-in subjects ("a corgi" -> dog).
    """
    return {
        prompt: match.subject
        for prompt, match in parti_mapping().items()
        if match.subject is not None and (include_approximate or match.quality != "approximate")
    }


def coverage() -> dict[str, int]:
    """How many of the 190 prompts map to a subject, by quality (and in total)."""
    counts = {"exact": 0, "keyword": 0, "approximate": 0, "none": 0}
    for match in parti_mapping().values():
        counts[match.quality] += 1
    return counts | {"covered": 190 - counts["none"], "total": 190}


def __getattr__(name: str):
    """`PARTI_TO_SUBJECT`: the mapping with stand-ins, built on first use."""
    if name == "PARTI_TO_SUBJECT":
        return parti_to_subject()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
