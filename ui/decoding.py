"""The "Candidates" choice of the pages that draw: varied or sharp MaskGIT temperatures."""

from __future__ import annotations

import streamlit as st

from styledrop.terms import VARIED_TEMPERATURE, VARIED_TOKEN_TEMPERATURE

VARIED = "varied"
SHARP = "sharp"
LABELS = {
    VARIED: f"Varied (temperatures {VARIED_TEMPERATURE:g} / {VARIED_TOKEN_TEMPERATURE:g})",
    SHARP: "Sharp (the base's own temperatures)",
}
HELP = (
    "Varied images differ more between the images of one prompt, so there is more to choose"
    " from; sharp ones are the base's most likely pictures, nearly alike."
)


def temperature_choice(key: str, default: str) -> tuple[float | None, float | None]:
    """A radio of the two settings; returns (choice temperature, token temperature).

    Args:
        key: The widget's session-state key.
        default: VARIED or SHARP.

    Returns:
        MaskGIT's (4.5, 1.0) for varied; (None, None), the base's own, for sharp.
    """
    options = list(LABELS)
    choice = st.radio(
        "Images", options, index=options.index(default), format_func=LABELS.get,
        horizontal=True, help=HELP, key=key,
    )  # fmt: skip
    if choice == VARIED:
        return VARIED_TEMPERATURE, VARIED_TOKEN_TEMPERATURE
    return None, None
