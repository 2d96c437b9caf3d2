"""A run's fingerprint: equal settings give equal text; later settings keep old fingerprints."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from styledrop.fingerprint import settings_fingerprint


@dataclass(frozen=True)
class Settings:
    steps: int = 10
    checkpoint_every: int = 5
    words: str = "open"


def test_skipped_settings_do_not_count_and_unknown_names_are_refused():
    assert settings_fingerprint(Settings(checkpoint_every=1), skip=("checkpoint_every",)) == (
        settings_fingerprint(Settings(checkpoint_every=9), skip=("checkpoint_every",))
    )
    assert json.loads(settings_fingerprint(Settings(), skip=("words",))) == {
        "steps": 10, "checkpoint_every": 5,
    }  # fmt: skip
    with pytest.raises(KeyError):
        settings_fingerprint(Settings(), skip=("stpes",))
    with pytest.raises(KeyError):
        settings_fingerprint(Settings(), added_later={"wrods": "curated"})


def test_a_setting_added_later_counts_only_away_from_the_value_earlier_runs_had():
    # What a run recorded before `words` existed: the same settings without it.
    before = settings_fingerprint({"steps": 10, "checkpoint_every": 5})
    later = {"words": "curated"}
    assert settings_fingerprint(Settings(words="curated"), added_later=later) == before
    assert '"words": "open"' in settings_fingerprint(Settings(), added_later=later)
    # Skipped as well: left out either way, with no error.
    assert settings_fingerprint(
        Settings(words="curated"), skip=("words",), added_later=later
    ) == settings_fingerprint(Settings(words="open"), skip=("words",), added_later=later)
