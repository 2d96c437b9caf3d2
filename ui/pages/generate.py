"""Generate: draw prompts in a trained style, optionally with a subject adapter.

The sliders are the StyleDrop guidance weights: lambda_A scales (adapted - base), the
style's pull; lambda_B is classifier-free guidance. With a subject adapter, gamma weighs
the subject against the style (the paper's style + subject composition). "Content first"
lets the base lay each image out from the prompt alone before the style joins. The images
are drawn at the base's own temperatures unless "Varied" is chosen.
"""

from __future__ import annotations

import streamlit as st

from styledrop.terms import DEFAULT_GAMMA, DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B
from ui import services
from ui.decoding import SHARP, temperature_choice
from worker import client

NO_SUBJECT = ""
LAMBDA_B_HELP = (
    "Unset: the base model's own lambda_B if it stores one (`zoo assemble"
    " --styledrop-lambda-b`), else the paper's 5."
)
CONTENT_FIRST_HELP = (
    "The share of the decoding steps drawn from the prompt alone (no style) before the"
    " style joins: higher keeps more of the subject, lower gives more of the style. Unset:"
    " the base model's own (the embedded zoo: 0.75), else 0, the paper's rule."
)


@st.fragment(run_every=services.POLL_SECONDS)
def latest(job_id: str) -> None:
    """The last job queued from this page: progress, then its grid."""
    job = client.show(job_id, store=services.store())
    st.markdown(f"**{job.id}: {job.status}**")
    if job.error:
        st.error(job.error)
    if "grid" in job.artifacts:
        st.image(services.image_bytes(job.artifacts["grid"]))
    elif not job.is_terminal:
        done, total = job.progress.get("done", 0), job.progress.get("total") or 1
        st.progress(min(done / total, 1.0), text=f"{done} of {total} images")


st.title("Generate")
styles = services.finetune_jobs(succeeded_only=True)
if not styles:
    st.info("No trained style yet: a fine-tune job must succeed first (New style page).")
    st.stop()
style = services.pick_job("Style adapter", styles, key="gen_style")
names = services.labels(styles)
subject = st.selectbox(
    "Subject adapter (optional)", [NO_SUBJECT, *[i for i in names if i != style]],
    format_func=lambda i: "none" if i == NO_SUBJECT else names[i], key="gen_subject",
    help="A second fine-tune job trained on a subject, to draw that subject in the style.",
)  # fmt: skip
prompts = st.text_area("Prompts (one per line)", placeholder="a cat\na boat", key="gen_prompts")
a, b = st.columns(2)
per_prompt = a.number_input("Images per prompt", min_value=1, max_value=16, value=4, key="gen_n")
seed = b.number_input("Seed", min_value=0, value=0, key="gen_seed")
lambda_a = st.slider("Style guidance lambda_A", 0.0, 4.0, DEFAULT_LAMBDA_A, 0.1, key="gen_lambda_a")
lambda_b = None  # the base's own if it stores one, else the paper's 5
if st.checkbox("Set text guidance lambda_B", key="gen_set_lambda_b", help=LAMBDA_B_HELP):
    lambda_b = st.slider(
        "Text guidance lambda_B", 0.0, 10.0, DEFAULT_LAMBDA_B, 0.5, key="gen_lambda_b"
    )
content_first = None  # the base's own if it stores one, else 0 (the paper's rule)
if st.checkbox("Set content first", key="gen_set_content_first", help=CONTENT_FIRST_HELP):
    content_first = st.slider("Content first", 0.0, 0.95, 0.75, 0.05, key="gen_content_first")
gamma = DEFAULT_GAMMA
if subject:
    gamma = st.slider("Subject weight gamma", 0.0, 1.0, DEFAULT_GAMMA, 0.05, key="gen_gamma")
negative = st.text_input("Negative prompt", value="", key="gen_negative")
temperature, token_temperature = temperature_choice("gen_variety", SHARP)

if st.button("Generate", type="primary", key="generate"):
    lines = [p.strip() for p in prompts.splitlines() if p.strip()]
    if not lines:
        st.error("Write at least one prompt.")
    else:
        try:
            job = client.submit_generate(
                style, lines, num_images=int(per_prompt), seed=int(seed),
                lambda_a=lambda_a, lambda_b=lambda_b, content_first=content_first,
                negative_prompt=negative,
                subject=subject or None, gamma=gamma, temperature=temperature,
                token_temperature=token_temperature,
                store=services.store(), app=services.celery_app(),
            )  # fmt: skip
        except (ValueError, ConnectionError, LookupError) as error:
            st.error(f"Not submitted: {error}")
        else:
            st.session_state["generate_job"] = job.id
            st.success(f"Queued {job.id}.")
if st.session_state.get("generate_job"):
    latest(st.session_state["generate_job"])
