"""Scored generation, round 2 on picked images, style + subject: real Redis, real workers.

The tests share the session's `queue_service` (its live worker runs every job) and, per
module, one short fine-tune job and one scored generation job of it. Jobs are tiny (tiny
zoo, a few steps, batch 2, 2 crops per image, 2 x 2 images).
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from worker import client, jobs
from worker.finetune_spec import FinetuneOptions
from zoo_build.assemble import ZOO_CONTENT_FIRST

JOB = {"adapter": "r1", "batch_size": 2, "variants_per_image": 2}
DESCRIPTOR = "in stripes style"
# The second prompt carries the descriptor: its content prompt is "a dog".
PROMPTS = ["a house", f"a dog {DESCRIPTOR}"]
CONTENT = ["a house", "a house", "a dog", "a dog"]
SEED = 5


def _finetune(service, image, base, steps=3, caption="a grid", **options):
    options = FinetuneOptions(DESCRIPTOR, base=base, steps=steps, **{**JOB, **options})
    return client.submit(
        [image], options, captions={image.name: caption}, store=service.store, app=service.app
    )


def _generate(service, source, **options):
    options = {"num_images": 2, "seed": SEED, **options}
    return client.submit_generate(source, PROMPTS, store=service.store, app=service.app, **options)


def _succeeded(service, job_id):
    done = service.wait_job(job_id)
    assert done.status == "succeeded", done.error
    return done


def _pixels(service, job, index):
    with Image.open(service.store.fetch(job.artifacts[f"image-{index:03d}"])) as image:
        return np.asarray(image.convert("RGB"))


def _sha256(service, key):
    return hashlib.sha256(service.store.read_bytes(key)).hexdigest()


@pytest.fixture(scope="module")
def style_job(queue_service, style_image, tiny_zoo):
    """A fine-tune job that succeeded (3 steps)."""
    queue_service.live_worker()
    return _succeeded(queue_service, _finetune(queue_service, style_image, tiny_zoo).id)


@pytest.fixture(scope="module")
def generated(queue_service, style_job):
    """A scored generation job of `style_job`: 2 prompts x 2 images."""
    return _succeeded(queue_service, _generate(queue_service, style_job.id).id)


def test_a_generate_job_scores_every_image(queue_service, style_job, generated, style_image):
    from feedback.scorer import ClipScorer
    from styledrop.zoo.embedded import embedded_judge

    assert generated.inputs["score"] is True
    # lambda_B left to the base: the tiny zoo stores none, so the paper's 5 was used; its
    # content first is the one every zoo assembly stores.
    assert (generated.inputs["lambda_b"], generated.guidance) == (
        None, {"lambda_a": 1.0, "lambda_b": 5.0, "content_first": ZOO_CONTENT_FIRST}
    )  # fmt: skip
    assert generated.artifacts["scores"] == f"jobs/{generated.id}/scores.json"
    scores = client.read_scores(generated.id, store=queue_service.store)
    assert scores == queue_service.store.read_json(generated.artifacts["scores"])
    assert [s["id"] for s in scores] == ["000.png", "001.png", "002.png", "003.png"]
    assert [s["key"] for s in scores] == [generated.artifacts[f"image-{i:03d}"] for i in range(4)]
    assert [s["prompt"] for s in scores] == CONTENT
    for entry in scores:
        assert set(entry) == {"id", "key", "prompt", "text_score", "style_score"}
        for name in ("text_score", "style_score"):
            assert isinstance(entry[name], float) and math.isfinite(entry[name])
    # The same judge, run here on the stored files, gives the same numbers.
    scorer = ClipScorer.load(embedded_judge())
    images = np.stack([_pixels(queue_service, generated, i) for i in range(4)])
    with Image.open(style_image) as reference:
        references = np.asarray(reference.convert("RGB"))[None]
    np.testing.assert_allclose(
        [s["text_score"] for s in scores], scorer.text_scores(images, CONTENT), atol=1e-4
    )
    np.testing.assert_allclose(
        [s["style_score"] for s in scores], scorer.style_scores(images, references), atol=1e-4
    )


def test_a_generate_job_draws_and_records_the_temperatures_asked(
    queue_service, style_job, generated, tiny_zoo, capsys
):
    from muse.checkpoint import read_model_config

    own = read_model_config(tiny_zoo).sampling  # left unset: the base's, as recorded
    assert generated.decoding == {
        "temperature": json.loads(json.dumps(own.temperature)),
        "token_temperature": own.token_temperature,
    }
    hot = _generate(queue_service, style_job.id, score=False, temperature=4.5,
                    token_temperature=1.0)  # fmt: skip
    assert (hot.inputs["temperature"], hot.inputs["token_temperature"]) == (4.5, 1.0)
    done = _succeeded(queue_service, hot.id)
    assert done.decoding == {"temperature": 4.5, "token_temperature": 1.0}
    # Same seed, prompts and guidance as `generated`: only the temperatures differ.
    assert any(
        not np.array_equal(_pixels(queue_service, done, i), _pixels(queue_service, generated, i))
        for i in range(4)
    )
    with pytest.raises(ValueError, match="token_temperature must be positive"):
        _generate(queue_service, style_job.id, token_temperature=0.0)
    # `jobs show` says how it sampled (the tiny zoo stores no lambda_B: the paper's 5).
    assert main(["jobs", "show", done.id, "--store", str(queue_service.store.root)]) == 0
    printed = capsys.readouterr().out
    expected = f"lambda_A 1, lambda_B 5, content first {ZOO_CONTENT_FIRST:g}; temperatures 4.5 / 1"
    assert f"sampled with: {expected}" in printed
    assert f"device: {done.device}" in printed


def test_score_false_writes_no_scores(queue_service, style_job, generated, service):
    job = _generate(
        queue_service, style_job.id, score=False, seed=SEED + 1, lambda_b=2.0, content_first=0.0
    )
    assert job.inputs["score"] is False
    done = _succeeded(queue_service, job.id)
    # The given lambda_B; the given content first (the paper's rule).
    assert done.guidance == {"lambda_a": 1.0, "lambda_b": 2.0, "content_first": 0.0}
    assert "scores" not in done.artifacts and "image-003" in done.artifacts
    assert not queue_service.store.exists(f"jobs/{job.id}/scores.json")
    assert client.read_scores(job.id, store=queue_service.store) == []
    # Its images can still be picked: captions come from the prompts, less the descriptor.
    # (Queued on the broker of `service`, where no worker runs it.)
    store, idle = queue_service.store, service.app
    picked = client.submit_round2(job.id, ["002.png", "001.png"], steps=2, store=store, app=idle)
    assert [i["caption"] for i in picked.inputs["images"]] == ["a dog", "a house"]
    assert picked.parent == style_job.id and picked.inputs["selected_from"] == job.id
    assert service.queue_length("training") == 1
    assert client.cancel(picked.id, store=store, app=idle).status == "cancelled"


def test_round2_trains_on_the_selected_images(queue_service, style_job, generated):
    from adapters.files import read_adapter_file

    picked = ["003.png", "000.png"]
    job = client.submit_round2(
        generated.id, picked, steps=2, batch_size=2, variants_per_image=2,
        store=queue_service.store, app=queue_service.app,
    )  # fmt: skip
    assert (job.kind, job.parent) == ("finetune", style_job.id)
    inputs = job.inputs
    assert (inputs["round"], inputs["selected_from"], inputs["adapter"]) == (2, generated.id, "r2")
    assert inputs["descriptor"] == style_job.inputs["descriptor"] == DESCRIPTOR
    assert inputs["base"] == style_job.inputs["base"]
    wanted = [_sha256(queue_service, generated.artifacts[f"image-{i}"]) for i in ("003", "000")]
    assert [image["sha256"] for image in inputs["images"]] == wanted
    assert [image["name"] for image in inputs["images"]] == picked
    assert [image["caption"] for image in inputs["images"]] == ["a dog", "a house"]
    assert [_sha256(queue_service, image["key"]) for image in inputs["images"]] == wanted
    done = _succeeded(queue_service, job.id)
    assert (done.parent, done.inputs["round"], done.progress["step"]) == (style_job.id, 2, 2)
    adapter = read_adapter_file(queue_service.store.fetch(done.artifacts["adapter"]))
    assert adapter.spec.kind == "r2" and adapter.metadata["round"] == 2
    assert [i["sha256"] for i in adapter.metadata["source_images"]] == wanted


def test_round2_refuses_bad_selections(queue_service, style_job, generated):
    store, app = queue_service.store, queue_service.app
    before = len(client.list_jobs(store=store))
    for selection, message in (
        ([], "at least one"),
        (["000.png", "000.png"], "repeated: 000.png"),
        (["000.png", "009.png"], "No image.* 009.png"),
    ):
        with pytest.raises(ValueError, match=message):
            client.submit_round2(generated.id, selection, steps=2, store=store, app=app)
    with pytest.raises(ValueError, match="generation job that succeeded"):
        client.submit_round2(style_job.id, ["000.png"], steps=2, store=store, app=app)
    with pytest.raises(jobs.JobNotFoundError):
        client.submit_round2("gen-20260101-nope00", ["000.png"], store=store, app=app)
    assert len(client.list_jobs(store=store)) == before  # nothing was stored


def test_style_and_subject_differ_from_style_only(
    queue_service, style_job, generated, tiny_zoo, subject_image
):
    trained = _finetune(queue_service, subject_image, tiny_zoo, caption="a pattern")
    subject = _succeeded(queue_service, trained.id)
    job = _generate(queue_service, style_job.id, subject=subject.id, gamma=0.6)
    assert job.inputs["subject_adapter"] == subject.artifacts["adapter"]
    assert (job.inputs["subject_job"], job.inputs["gamma"]) == (subject.id, 0.6)
    composed = _succeeded(queue_service, job.id)
    style_only = [_pixels(queue_service, generated, i) for i in range(4)]
    mixed = [_pixels(queue_service, composed, i) for i in range(4)]
    assert any(not np.array_equal(a, b) for a, b in zip(mixed, style_only, strict=True))
    assert len(client.read_scores(composed.id, store=queue_service.store)) == 4
    # The worker's cached base lost the subject adapter: style only again, same images.
    again = _succeeded(queue_service, _generate(queue_service, style_job.id, score=False).id)
    for index, expected in enumerate(style_only):
        np.testing.assert_array_equal(_pixels(queue_service, again, index), expected)


def test_cli_round2_select_by_clip_and_subject_errors(
    queue_service, style_job, generated, service, capsys
):
    # The jobs of queue_service, queued on the broker of `service` (no worker runs them).
    common = ["--store", str(queue_service.store.root), "--broker", service.broker]
    scores = client.read_scores(generated.id, store=queue_service.store)
    best = {}
    for entry in scores:  # per prompt, the best text score (the first of ties)
        if entry["prompt"] not in best or entry["text_score"] > best[entry["prompt"]][1]:
            best[entry["prompt"]] = (entry["id"], entry["text_score"])
    args = ["jobs", "round2", generated.id, "--select-by-clip", "--json"]
    args += ["--steps", "2", "--batch-size", "2"]
    assert main([*args, *common]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["parent"] == style_job.id and record["inputs"]["round"] == 2
    assert [i["name"] for i in record["inputs"]["images"]] == [i for i, _ in best.values()]
    assert service.queue_length("training") == 1
    assert client.cancel(record["id"], store=queue_service.store).status == "cancelled"
    assert main(["jobs", "round2", generated.id, "--select", "042.png", *common]) == 2
    assert "No image(s) 042.png" in capsys.readouterr().err
    assert main(["jobs", "round2", style_job.id, "--select-by-clip", *common]) == 2
    assert "no CLIP scores" in capsys.readouterr().err
    subject = ["--subject", generated.id, "--gamma", "0.5"]
    assert main(["jobs", "generate", style_job.id, "--prompt", "a dog", *subject, *common]) == 2
    assert "the subject) is a generate job" in capsys.readouterr().err
