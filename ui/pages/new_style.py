"""New style: upload style images with their captions, choose the settings, start training.

Nothing is stored until every image passes the checks of `styledrop.inputs` (format,
bytes, pixels, count); a rejected upload says why, and the form keeps what was entered.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import streamlit as st

from styledrop.inputs import MAX_IMAGES
from styledrop.terms import ADAPTER_KINDS, DEFAULT_STEPS
from ui import access, services
from worker import client
from worker.finetune_spec import FinetuneOptions

EMBEDDED = "(the embedded zoo)"
ADAPTER_HELP = {
    "r1": "Round 1 of the paper: a small per-layer adapter (rank-1 style).",
    "r2": "A wider adapter, for round 2 on selected images.",
    "lora": "LoRA on attention q/k/v (peft-compatible file).",
}


def _safe_name(name: str) -> str:
    """A file name with only plain characters (the upload's own name is untrusted)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip("._")
    return stem[:80] or "image"


def _preview(data: bytes, name: str) -> None:
    try:
        st.image(data, caption=name, width=160)
    except Exception:  # the checks at submission say exactly what is wrong
        st.warning(f"{name}: cannot be shown as an image.")


def _submit(files, captions: list[str], settings: dict) -> None:
    """Queues the job; `settings` are `FinetuneOptions` fields (bad ones are shown)."""
    with tempfile.TemporaryDirectory(prefix="styledrop-upload-") as folder:
        paths, by_path = [], {}
        for index, (upload, caption) in enumerate(zip(files, captions, strict=True)):
            path = Path(folder) / f"{index:02d}" / _safe_name(upload.name)
            path.parent.mkdir()
            path.write_bytes(upload.getvalue())
            paths.append(path)
            if caption.strip():
                by_path[str(path)] = caption.strip()
        try:
            job = client.submit(
                paths, FinetuneOptions(**settings), captions=by_path, store=services.store(),
                app=services.celery_app(),
            )  # fmt: skip
        except (ValueError, ConnectionError, OSError) as error:
            st.error(f"Not submitted: {error}", icon=":material/error:")
            return
    st.session_state["job_id"] = job.id
    st.success(f"Queued {job.id}. Follow it on the Jobs page.", icon=":material/check:")


st.title("New style")
st.write(
    "Give one or a few images of a style and what each one shows; a worker fits a style"
    " adapter on the base model."
)
files = st.file_uploader(
    f"Style images (PNG, JPEG or WebP; 1 to {MAX_IMAGES})",
    type=["png", "jpg", "jpeg", "webp"],
    accept_multiple_files=True,
    key="style_files",
)
captions: list[str] = []
if files:
    columns = st.columns(min(len(files), 4))
    for index, upload in enumerate(files):
        with columns[index % len(columns)]:
            _preview(upload.getvalue(), upload.name)
            caption = st.text_input(
                "What it shows", placeholder="a house", key=f"caption_{index}",
                help="The content of this image, without the style (the paper's caption).",
            )  # fmt: skip
            captions.append(caption)
descriptor = st.text_input(
    "Style descriptor", placeholder="in watercolor painting style", key="descriptor",
    help="Appended to every prompt of this style.",
)  # fmt: skip
left, middle, right = st.columns(3)
adapter = left.selectbox(
    "Adapter", ADAPTER_KINDS, format_func=lambda k: f"{k}: {ADAPTER_HELP[k]}", key="adapter"
)
steps = middle.number_input(
    "Steps", min_value=1, max_value=100_000, value=DEFAULT_STEPS, key="steps"
)
preview_every = right.number_input(
    "Preview every (steps, 0: none)", min_value=0, max_value=100_000, value=0,
    key="preview_every",
)  # fmt: skip
with st.expander("More settings"):
    base = st.selectbox(
        "Base model", [EMBEDDED, *access.allowed_bases()], key="base",
        help="The folders the operator allows ($STYLEDROP_BASES), as the workers see them.",
    )  # fmt: skip
    a, b, c = st.columns(3)
    learning_rate = a.number_input(
        "Learning rate (0: the adapter's default)", min_value=0.0, value=0.0, format="%g",
        key="learning_rate",
    )  # fmt: skip
    batch_size = b.number_input("Batch size", min_value=1, max_value=256, value=8, key="batch")
    seed = c.number_input("Seed", min_value=0, value=0, key="seed")
    preview_prompts = st.text_area(
        "Preview prompts (one per line)", placeholder="a cat\na boat", key="preview_prompts"
    )

if st.button("Start training", type="primary", key="submit"):
    if not files:
        st.error("Add at least one style image first.")
    elif not descriptor.strip():
        st.error('Give a style descriptor, such as "in watercolor painting style".')
    else:
        _submit(
            files,
            captions,
            {
                "descriptor": descriptor.strip(),
                "base": None if base == EMBEDDED else base,
                "adapter": adapter,
                "steps": int(steps),
                "learning_rate": float(learning_rate) or None,
                "batch_size": int(batch_size),
                "seed": int(seed),
                "preview_every": int(preview_every),
                "preview_prompts": [p.strip() for p in preview_prompts.splitlines() if p.strip()],
            },
        )
