"""Every page's main flow, driven by Streamlit's AppTest over a real store and Redis."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from feedback.selection import Candidate, clip_best_per_prompt
from styledrop.terms import DEFAULT_LAMBDA_A
from worker import client, jobs
from worker.finetune_spec import FinetuneOptions
from worker.store import Store, job_key
from zoo_build.assemble import ZOO_CONTENT_FIRST

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "ui/pages"
STYLE_IMAGE = ROOT / "styledrop/data/demo_style_house_line_art.png"
TIMEOUT = 60


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)


def _queued_messages(broker: str, queue: str) -> list[dict]:
    import redis

    connection = redis.Redis.from_url(broker)
    return [json.loads(raw) for raw in connection.lrange(queue, 0, -1)]


def _values(elements) -> list[str]:
    return [element.value for element in elements]


def test_new_style_queues_a_job_with_the_images_captions_and_settings(empty_service):
    store, broker = empty_service
    at = page("new_style").run()
    at.file_uploader(key="style_files").set_value(
        [("house.png", STYLE_IMAGE.read_bytes(), "image/png")]
    ).run()
    at.text_input(key="caption_0").set_value("a house")
    at.text_input(key="descriptor").set_value("in line art style")
    at.selectbox(key="adapter").set_value("lora")
    at.number_input(key="steps").set_value(7)
    at.button(key="submit").click().run()

    assert not at.exception and not at.error, _values(at.error)
    [message] = _values(at.success)
    job_id = message.split()[1].rstrip(".")
    job = jobs.get(store, job_id)
    assert job.status == "queued" and job.kind == "finetune"
    assert job.inputs["descriptor"] == "in line art style"
    assert job.inputs["adapter"] == "lora" and job.inputs["steps"] == 7
    [image] = job.inputs["images"]
    assert image["caption"] == "a house" and image["name"] == "house.png"
    assert store.read_bytes(image["key"]) == STYLE_IMAGE.read_bytes()
    [queued] = _queued_messages(broker, "training")
    assert queued["headers"]["task"] == "styledrop.finetune"
    assert at.session_state["job_id"] == job_id


def _png(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("broken.png", _png()[:60], "broken.png"),
        ("notes.png", b"just some text, not an image", "notes.png"),
        ("scan.png", _gif(), "scan.png"),  # a GIF behind a .png name
    ],
)
def test_new_style_rejects_a_bad_upload_says_why_and_keeps_the_form(empty_service, name, data, why):
    store, broker = empty_service
    at = page("new_style").run()
    at.file_uploader(key="style_files").set_value(
        [("good.png", _png(), "image/png"), (name, data, "image/png")]
    ).run()
    at.text_input(key="descriptor").set_value("in line art style")
    at.button(key="submit").click().run()

    [error] = _values(at.error)
    assert error.startswith("Not submitted") and why in error
    assert not at.success
    assert at.text_input(key="descriptor").value == "in line art style"  # nothing lost
    assert jobs.list_jobs(store) == [] and _queued_messages(broker, "training") == []


def test_new_style_asks_for_images_and_a_descriptor(empty_service):
    at = page("new_style").run()
    at.button(key="submit").click().run()
    assert "Add at least one style image" in at.error[0].value
    at.file_uploader(key="style_files").set_value(("a.png", _png(), "image/png")).run()
    at.button(key="submit").click().run()
    assert "style descriptor" in at.error[0].value


def test_jobs_page_shows_a_finished_job_and_offers_its_adapter(service):
    store = Store(service.store_dir)
    at = page("jobs").run()
    at.selectbox(key="jobs_pick").set_value(service.style).run()
    assert not at.exception
    job = jobs.get(store, service.style)
    assert f"{service.style}: succeeded" in _values(at.subheader)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the loss chart
    [download] = at.download_button
    assert download.proto.label == "Download adapter"
    assert job.artifacts["adapter"].endswith(".safetensors")


def test_jobs_page_says_how_a_generation_job_sampled(service):
    at = page("jobs").run()
    at.selectbox(key="jobs_pick").set_value(service.pool).run()
    assert not at.exception
    job = jobs.get(Store(service.store_dir), service.pool)
    assert job.decoding is not None
    assert job.guidance == {"lambda_a": 1.0, "lambda_b": 5.0, "content_first": ZOO_CONTENT_FIRST}
    assert f"Sampled with {job.sampling_summary()} on {job.device}." in _values(at.caption)


def test_jobs_page_cancels_a_queued_job(empty_service):
    store, _ = empty_service
    options = FinetuneOptions("in line art style", steps=5)
    job = client.submit([STYLE_IMAGE], options, store=store, app=_app_for_env())
    at = page("jobs").run()
    assert at.selectbox(key="jobs_pick").value == job.id
    at.button(key=f"cancel_{job.id}").click().run()
    record = jobs.get(store, job.id)
    assert record.status == "cancelled" and record.error == "Cancelled before it started."


def _app_for_env():
    import os

    from worker.app import make_app

    return make_app(os.environ["STYLEDROP_BROKER_URL"])


def test_review_selects_by_clip_and_queues_round_2_on_the_picks(service):
    store = Store(service.store_dir)
    scores = client.read_scores(service.pool, store=store)
    pool = [Candidate(s["id"], s["prompt"], s["text_score"], s["style_score"]) for s in scores]
    best = sorted(c.id for c in clip_best_per_prompt(pool))

    at = page("review").run()
    at.selectbox(key="review_source").set_value(service.style).run()
    at.selectbox(key="review_pool").set_value(service.pool).run()
    assert len(at.checkbox) == len(scores) == 4 and len(at.image) == 4
    at.button(key="by_clip").click().run()
    ticked = sorted(s["id"] for s, box in zip(scores, at.checkbox, strict=True) if box.value)
    assert ticked == best and len(best) == 2  # one per prompt
    at.text_input[-1].set_value("ana")  # the reviewer
    at.number_input(key="round2_steps").set_value(3)
    at.button(key="round2").click().run()

    assert not at.error, _values(at.error)
    job_id = at.session_state["job_id"]
    job = jobs.get(store, job_id)
    assert job.parent == service.style and job.inputs["round"] == 2
    assert job.inputs["steps"] == 3 and job.inputs["adapter"] == "r2"
    assert sorted(i["caption"] for i in job.inputs["images"]) == sorted(
        s["prompt"] for s in scores if s["id"] in best
    )
    selection = store.read_json(job_key(service.pool, "selection.json"))
    assert sorted(selection["selected"]) == best and selection["reviewer"] == "ana"


def test_review_draws_candidates_with_the_chosen_adapter(service):
    at = page("review").run()
    at.selectbox(key="review_source").set_value(service.style).run()
    at.text_area[0].set_value("a tree\na fish")
    at.button[0].click().run()  # the form's "Draw candidates"
    assert not at.error, _values(at.error)
    [queued] = [j for j in jobs.list_jobs(Store(service.store_dir), kind="generate")
                if j.inputs["prompts"] == ["a tree", "a fish"]]  # fmt: skip
    assert queued.status == "queued" and queued.inputs["source_job"] == service.style
    # By default the candidates are drawn varied (MaskGIT's temperatures); "sharp" leaves
    # the base's own.
    assert (queued.inputs["temperature"], queued.inputs["token_temperature"]) == (4.5, 1.0)
    at.text_area[0].set_value("a boat")
    at.radio(key="review_variety").set_value("sharp")
    at.button[0].click().run()
    assert not at.error, _values(at.error)
    [sharp] = [j for j in jobs.list_jobs(Store(service.store_dir), kind="generate")
               if j.inputs["prompts"] == ["a boat"]]  # fmt: skip
    assert (sharp.inputs["temperature"], sharp.inputs["token_temperature"]) == (None, None)


def test_compare_shows_both_jobs_with_their_score_table(service):
    at = page("compare").run()
    at.selectbox(key="cmp_a").set_value(service.pool)
    at.selectbox(key="cmp_b").set_value(service.other_pool).run()
    assert not at.exception and len(at.image) == 2
    table = at.dataframe[0].value
    assert list(table["job"]) == [service.pool, service.other_pool]
    assert list(table["images"]) == [4, 4]


def test_compare_blind_ab_hides_the_sides_records_votes_and_reports_rates(service):
    from ui.ab_study import a_on_left, study_key

    store = Store(service.store_dir)
    a, b = service.pool, service.other_pool
    at = page("compare").run()
    at.selectbox(key="cmp_a").set_value(a)
    at.selectbox(key="cmp_b").set_value(b).run()
    at.segmented_control(key="cmp_mode").set_value("Blind A/B").run()
    at.text_input(key="ab_reviewer").set_value("ana").run()
    lefts = []
    for pair in range(4):  # always vote for the left image
        lefts.append(a if a_on_left(a, b, pair, "ana") else b)
        at.button(key="vote_left").click().run()
    assert "You have judged every pair." in _values(at.success)
    votes = store.read_json(study_key(a, b))["votes"]
    assert [v["pair"] for v in votes] == [0, 1, 2, 3]
    assert [v["winner"] for v in votes] == lefts and {v["reviewer"] for v in votes} == {"ana"}
    rates = {row["choice"]: row for _, row in at.dataframe[0].value.iterrows()}
    assert rates[a]["votes"] == lefts.count(a) and rates[b]["votes"] == lefts.count(b)


def test_ab_order_is_balanced_and_fixed_per_reviewer():
    from ui.ab_study import a_on_left

    sides = [a_on_left("gen-1", "gen-2", pair, "ana") for pair in range(400)]
    assert 160 < sum(sides) < 240  # about half on each side
    assert sides == [a_on_left("gen-1", "gen-2", pair, "ana") for pair in range(400)]
    assert sides != [a_on_left("gen-1", "gen-2", pair, "bo") for pair in range(400)]


def test_generate_page_queues_style_and_subject_with_the_chosen_weights(service):
    at = page("generate").run()
    at.selectbox(key="gen_style").set_value(service.style).run()
    at.selectbox(key="gen_subject").set_value(service.subject).run()
    at.text_area(key="gen_prompts").set_value("a cat\n\na boat")
    at.slider(key="gen_lambda_a").set_value(1.5)
    assert "gen_lambda_b" not in [s.key for s in at.slider]  # unset: the base's own
    at.checkbox(key="gen_set_lambda_b").check().run()
    at.slider(key="gen_lambda_b").set_value(3.0)
    at.slider(key="gen_gamma").set_value(0.4)
    assert "gen_content_first" not in [s.key for s in at.slider]  # unset: the base's own
    at.checkbox(key="gen_set_content_first").check().run()
    at.slider(key="gen_content_first").set_value(0.5)
    at.button(key="generate").click().run()
    assert not at.error, _values(at.error)
    job = jobs.get(Store(service.store_dir), at.session_state["generate_job"])
    subject = jobs.get(Store(service.store_dir), service.subject)
    assert job.inputs["prompts"] == ["a cat", "a boat"]
    assert job.inputs["lambda_a"] == 1.5 and job.inputs["lambda_b"] == 3.0
    assert job.inputs["subject_adapter"] == subject.artifacts["adapter"]
    assert job.inputs["gamma"] == pytest.approx(0.4)
    assert job.inputs["content_first"] == pytest.approx(0.5)


def test_generate_page_leaves_lambda_b_and_temperatures_to_the_base_unless_set(service):
    at = page("generate").run()
    at.selectbox(key="gen_style").set_value(service.style).run()
    at.text_area(key="gen_prompts").set_value("a cat")
    at.button(key="generate").click().run()
    assert not at.error, _values(at.error)
    job = jobs.get(Store(service.store_dir), at.session_state["generate_job"])
    assert job.inputs["lambda_b"] is None and job.inputs["lambda_a"] == DEFAULT_LAMBDA_A
    assert job.inputs["content_first"] is None
    # Drawn sharp (the base's temperatures) unless "varied" is chosen.
    assert (job.inputs["temperature"], job.inputs["token_temperature"]) == (None, None)
    at.radio(key="gen_variety").set_value("varied")
    at.button(key="generate").click().run()
    varied = jobs.get(Store(service.store_dir), at.session_state["generate_job"])
    assert varied.id != job.id
    assert (varied.inputs["temperature"], varied.inputs["token_temperature"]) == (4.5, 1.0)


def test_the_app_and_its_pages_never_import_jax_or_torch(service):
    script = f"""
import sys
from streamlit.testing.v1 import AppTest
for path in {[str(ROOT / "ui/app.py"), *[str(p) for p in sorted(PAGES.glob("*.py"))]]!r}:
    at = AppTest.from_file(path, default_timeout=60).run()
    assert not at.exception, (path, [e.value for e in at.exception])
print(sorted(m for m in ("jax", "flax", "torch", "open_clip") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
