"""The GPU zoo build script, rehearsed on CPU with tiny sizes (what the lent GPU runs).

`scripts/gpu_zoo_build.sh --rehearse` goes through the same code as the GPU call: the
pack, rendering, probing both trainers, sizing their schedules, training, assembling,
sharding and the sample grid. What the device tool brings back must fit its limits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import muse
from muse.checkpoint import read_model_json, sha256_file
from styledrop.zoo import embedded
from zoo_build.build import (
    BuildConfig,
    BuildConfigError,
    _sized_steps,
    build_zoo,
    planned_zoo_size,
)
from zoo_build.pack import write_pack
from zoo_build.shards import read_shards
from zoo_build.zoo_size import (
    COMMITTED_ZOO_LIMIT_BYTES,
    METADATA_BYTES,
    folder_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_zoo_build.sh"
TINY_SUBJECTS = ["penguin", "dog", "cat", "banana", "car", "letter_a"]
TINY_DRAWS = {"vq": 1, "base": 2, "judge": 0, "eval": 1, "canonical": 2}  # the script's tiny build


def _run(args, tmp_path, **env):
    environ = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=environ, timeout=900, check=False)  # fmt: skip


def _rehearse(tmp_path, *options):
    pack = tmp_path / "pack.npz"
    write_pack(pack, TINY_SUBJECTS)
    out = tmp_path / "OUT"
    result = _run(["--rehearse", "--pack", str(pack), "--", *options], tmp_path, OUT=str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads((out / "build_summary.json").read_text())["stages"]


def _tiny_build_config(**settings) -> BuildConfig:
    """The tiny sizes of the builds run here in-process, with `settings` on top."""
    tiny = dict(
        size=32, subjects=tuple(TINY_SUBJECTS), draws=TINY_DRAWS, base_width=32, base_layers=2,
        base_descriptor_pairs=1, base_batch=8, base_canonical_repeats=1, probe_steps=0,
        text_retention_steps=0, samples_per_prompt=0, reserve_s=5,
    )  # fmt: skip
    return BuildConfig(**{**tiny, **settings})


def _run_build(pack, tmp_path, config):
    """Builds in-process into tmp_path; returns the zoo, the results folder and its stages."""
    out = tmp_path / "OUT"
    zoo = build_zoo(pack, tmp_path / "work", config, results_dir=out, echo=lambda line: None)
    return zoo, out, json.loads((out / "build_summary.json").read_text())["stages"]


def _check_returned_files(out, expected):
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(expected)
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    events = [json.loads(line)["stage"] for line in (out / "build_log.jsonl").open()]
    summary = json.loads((out / "build_summary.json").read_text())
    assert events == list(summary["stages"])


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """The default run's rehearsal: a few fixed steps (one compilation per trainer)."""
    tmp_path = tmp_path_factory.mktemp("rehearsal")
    out, stages = _rehearse(
        tmp_path, "--probe-steps", "0", "--samples-per-prompt", "0",
        "--vq-max-steps", "6", "--base-max-steps", "4",
    )  # fmt: skip
    return tmp_path, out, stages


def test_the_rehearsal_trains_assembles_and_shards_a_zoo(rehearsal):
    tmp_path, out, stages = rehearsal
    _check_returned_files(out, [
        "build_log.jsonl", "build_summary.json",
        "vq-00001-of-00001.safetensors", "zoo-00001-of-00001.safetensors",
    ])  # fmt: skip
    assert list(stages) == [
        "environment", "zoo_size", "render", "text_encoder", "text_retention", "vq", "base",
        "assemble",
    ]  # fmt: skip
    assert stages["environment"]["jax_backend"] == "cpu"
    assert stages["render"]["subjects"] == len(TINY_SUBJECTS)
    assert stages["vq"]["steps"] == 6 and stages["base"]["steps_done"] == 4  # the caps
    zoo = read_shards(out, tmp_path / "zoo")
    manifest = json.loads((zoo / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert sha256_file(zoo / name) == digest
    # The size checked before training is the assembled zoo's, up to its metadata estimate.
    assembled = folder_bytes(zoo)
    assert 0 <= stages["zoo_size"]["bytes"] - assembled <= METADATA_BYTES
    assert stages["zoo_size"]["limit"] == COMMITTED_ZOO_LIMIT_BYTES
    # Each part says where it was trained. The judge is the committed zoo's; the text
    # encoder is the committed one after the text stage, whose record keeps the earlier ones.
    training = manifest["training"]
    for part in ("vq", "base"):
        assert training[part]["machine"]["jax_backend"] == "cpu"
        assert training[part]["machine"]["cpu_cores"] >= 1
    committed = json.loads((embedded.EMBEDDED_ZOO / "manifest.json").read_text())["training"]
    assert training["judge"] == committed["judge"]
    text_stage = training["text"]["descriptor_invariance"]
    assert text_stage["train"]["steps"] == 2 and text_stage["train"]["subject_weight"] > 0
    assert text_stage["train"]["retention_phrases"] == "mixed"
    assert 0.0 <= stages["text_retention"]["heldout_subject_top1_after"] <= 1.0
    assert text_stage["init"] == committed["text"]["descriptor_invariance"]
    assert stages["text_retention"]["complete"] and stages["text_retention"]["device"] == "cpu"
    committed_text = embedded.EMBEDDED_ZOO / "text_encoder" / "model.safetensors"
    assert manifest["files"]["text_encoder/model.safetensors"] != sha256_file(committed_text)
    vq = read_shards(out, tmp_path / "vq", prefix="vq")
    assert json.loads((vq / "vq_config.json").read_text())["num_vq_embeddings"] == 32


def test_a_later_build_continues_the_zoo_an_earlier_one_returned(rehearsal, tmp_path):
    """A second loan: the earlier zoo's VQ and text encoder kept, its base trained on."""
    earlier_tmp, earlier_out, _ = rehearsal
    earlier = read_shards(earlier_out, tmp_path / "earlier")
    config = _tiny_build_config(init_dir=str(earlier), base_warmup=5, base_max_steps=3)
    zoo, out, stages = _run_build(earlier_tmp / "pack.npz", tmp_path, config)
    assert list(stages) == [
        "environment", "continue", "zoo_size", "render", "text_encoder", "vq", "base",
        "assemble",
    ]  # fmt: skip
    assert stages["continue"]["base_runs"] == 1 and stages["vq"]["kept"] == str(earlier)
    _check_returned_files(out, [
        "build_log.jsonl", "build_summary.json", "zoo-00001-of-00001.safetensors",
    ])  # fmt: skip
    before = json.loads((earlier / "manifest.json").read_text())
    after = json.loads((zoo / "manifest.json").read_text())
    for kept in ("vqvae.safetensors", "text_encoder/model.safetensors"):
        assert after["files"][kept] == before["files"][kept]
    assert after["files"]["transformer.safetensors"] != before["files"]["transformer.safetensors"]
    base = after["training"]["base"]
    assert base["init"] == before["training"]["base"]  # the lineage goes on
    assert base["train"]["init_from"] == sha256_file(earlier / "transformer.safetensors")
    assert base["train"]["seed"] == before["training"]["base"]["train"]["seed"] + 1
    assert after["training"]["vq"] == before["training"]["vq"]
    assert 0 <= stages["zoo_size"]["bytes"] - folder_bytes(zoo) <= METADATA_BYTES


def test_a_build_transplants_a_bases_transformer_onto_its_new_tokenizer(rehearsal, tmp_path):
    """A new VQ of other codes; the base starts from the rehearsal zoo's transformer."""
    from safetensors.numpy import load_file

    earlier_tmp, earlier_out, _ = rehearsal
    source = read_shards(earlier_out, tmp_path / "earlier") / "transformer.safetensors"
    config = _tiny_build_config(
        vq_channels=(8, 16), vq_codes=24, vq_batch=8, vq_warmup=1, vq_max_steps=2,
        base_position_embedding=True, base_warmup=1, base_max_steps=2,
        base_transplant=str(source), base_transplant_steps=2,
    )  # fmt: skip
    zoo, _, stages = _run_build(earlier_tmp / "pack.npz", tmp_path, config)
    assert list(stages) == [
        "environment", "zoo_size", "render", "text_encoder", "vq", "base_transplant", "base",
        "assemble",
    ]  # fmt: skip
    # Only the tokenizer's tensors trained first: those of the 24 codes (the rehearsal's VQ
    # has 32), and the 2x2 convolutions, which fit by shape but spoke the rehearsal's codes.
    assert stages["base_transplant"]["trained"] == [
        "down_block.downsample.conv.kernel", "down_block.downsample.norm.scale",
        "embed.embeddings.embedding", "mlm_layer.conv2.kernel",
        "up_block.upsample.conv.kernel", "up_block.upsample.norm.scale",
    ]  # fmt: skip
    assert stages["base_transplant"]["steps_done"] == 2
    first = tmp_path / "work" / "base-transplant" / "transformer.safetensors"
    base = json.loads((zoo / "manifest.json").read_text())["training"]["base"]
    assert base["train"]["init_from"] == sha256_file(first)
    given, after_first = load_file(str(source)), load_file(str(first))
    for name in given:
        if name not in stages["base_transplant"]["trained"]:  # as the source had them
            assert (given[name].astype("float32") == after_first[name]).all(), name
    assert (
        load_file(str(zoo / "transformer.safetensors"))["embed.embeddings.embedding"].shape[0] == 25
    )
    with pytest.raises(BuildConfigError, match="--base-width 32 --base-layers 2"):
        build_zoo(earlier_tmp / "pack.npz", tmp_path / "other",
                  dataclasses.replace(config, base_layers=3), echo=lambda line: None)  # fmt: skip
    with pytest.raises(BuildConfigError, match="--init"):
        dataclasses.replace(config, init_dir=str(earlier_tmp))


def test_a_zoo_that_cannot_be_continued_is_refused_with_the_options_that_fit(tmp_path):
    pack = tmp_path / "pack.npz"
    write_pack(pack, TINY_SUBJECTS[:1])
    committed = str(embedded.EMBEDDED_ZOO)
    base = read_model_json(committed)["config"]["transformer"]
    width, layers, halved = base["hidden_size"], base["num_hidden_layers"], base["downsample"]

    def refusal(**settings):
        with pytest.raises(BuildConfigError) as raised:
            build_zoo(pack, tmp_path / "work", BuildConfig(**settings), echo=lambda line: None)
        return str(raised.value)

    switch = "--base-downsample" if halved else "--no-base-downsample"
    assert switch in refusal(init_dir=committed, base_downsample=not halved)
    assert f"--base-width {width} --base-layers {layers}" in refusal(
        init_dir=committed, base_width=width + 64, base_downsample=halved
    )
    assert "--size 64" in refusal(init_dir=committed, size=32, base_downsample=False)
    assert "zoo unshard" in refusal(init_dir=str(tmp_path))
    assert not (tmp_path / "work" / "world").exists()


@pytest.mark.e2e
def test_the_whole_rehearsal_probes_sizes_and_draws_samples_from_the_shards(tmp_path):
    """What the GPU call runs first: probes, sized schedules, the sample grid, a usable zoo."""
    out, stages = _rehearse(tmp_path, "--sample-prompts", "a penguin,the letter A")
    _check_returned_files(out, [
        "build_log.jsonl", "build_summary.json", "samples.png",
        "vq-00001-of-00001.safetensors", "zoo-00001-of-00001.safetensors",
    ])  # fmt: skip
    assert list(stages) == [
        "environment", "zoo_size", "render", "text_encoder", "text_retention", "vq_probe", "vq",
        "base_probe", "base", "assemble", "samples",
    ]  # fmt: skip
    assert stages["vq"]["steps"] <= 40 and stages["base"]["steps_done"] <= 30  # the caps
    assert stages["vq_probe"]["step_s"] > 0 and stages["base_probe"]["first_step_s"] > 0
    assert stages["samples"]["prompts"] == 2
    zoo = read_shards(out, tmp_path / "zoo")
    images = muse.load(zoo).generate("a penguin", num_images_per_prompt=1, num_steps=2)
    assert images.shape == (1, 32, 32, 3)


def test_a_zoo_above_the_size_limit_is_refused_before_anything_renders(tmp_path):
    pack = tmp_path / "pack.npz"
    write_pack(pack, TINY_SUBJECTS[:1])
    config = BuildConfig(max_zoo_bytes=20_000_000)  # the defaults make a zoo of about 29 MB
    with pytest.raises(BuildConfigError, match=r"would be 29\.\d MB .*--base-width"):
        build_zoo(pack, tmp_path / "work", config, echo=lambda line: None)
    assert not (tmp_path / "work" / "world").exists()
    logged = json.loads((tmp_path / "work" / "results" / "build_summary.json").read_text())
    assert logged["stages"]["zoo_size"]["bytes"] > 20_000_000


def test_the_default_build_fits_the_committed_zoo_limit():
    """What the GPU call builds by default can be committed (at most 32 MB)."""
    config = BuildConfig(base_position_embedding=True)
    zoo = embedded.EMBEDDED_ZOO
    size = planned_zoo_size(config, zoo, zoo)
    assert size.total <= config.max_zoo_bytes == COMMITTED_ZOO_LIMIT_BYTES
    assert size.transformer > size.vq > 0 and size.text > 0 and size.judge > 0


def test_switches_on_by_default_can_be_turned_off_on_the_command_line(tmp_path):
    from cli.zoo import build as cli_build

    parser = cli_build.build_parser()
    required = ["--data", "pack.npz", "--out", str(tmp_path)]
    defaults = cli_build.config_from_args(BuildConfig(), parser.parse_args(required),
                                          cli_build.OPTIONS)  # fmt: skip
    assert defaults.base_downsample is True and defaults.base_position_embedding is False
    args = parser.parse_args([*required, "--no-base-downsample", "--base-position-embedding"])
    changed = cli_build.config_from_args(BuildConfig(), args, cli_build.OPTIONS)
    assert changed.base_downsample is False and changed.base_position_embedding is True


def test_without_a_gpu_the_script_refuses_unless_rehearsing(tmp_path):
    result = _run([], tmp_path, OUT=str(tmp_path / "OUT"))
    assert result.returncode == 3
    assert "no GPU" in result.stderr and "--rehearse" in result.stderr


def test_any_backend_passes_the_gpu_check_and_runs_the_gpu_sequence(tmp_path):
    # Past the refusal, the first thing the GPU sequence checks is its pack: a missing one
    # stops it there, before any build, instead of the refusal's exit 3.
    result = _run(["--any-backend", "--pack", str(tmp_path / "none.npz")], tmp_path,
                  OUT=str(tmp_path / "OUT"))  # fmt: skip
    assert result.returncode == 2 and "no data pack" in result.stderr
    assert "no GPU" not in result.stderr


def test_a_missing_pack_is_named_with_the_command_that_writes_it(tmp_path):
    result = _run(["--rehearse", "--pack", str(tmp_path / "none.npz")], tmp_path)
    assert result.returncode == 2 and "styledrop zoo pack --out" in result.stderr


def test_step_counts_fill_the_time_left_within_their_bounds():
    assert _sized_steps(100.0, 0.5, floor=10, ceiling=1000) == 190  # 5 % slack
    assert _sized_steps(1.0, 0.5, floor=10, ceiling=1000) == 10
    assert _sized_steps(1e6, 0.5, floor=10, ceiling=1000) == 1000
    assert _sized_steps(1.0, 0.5, floor=10, ceiling=4) == 4  # the cap wins


def test_build_settings_that_cannot_work_are_refused():
    with pytest.raises(BuildConfigError, match="budget"):
        BuildConfig(time_budget_s=0)
    with pytest.raises(BuildConfigError, match="text_retention_steps"):
        BuildConfig(text_retention_steps=-1)
    with pytest.raises(BuildConfigError, match="divisible"):
        BuildConfig(size=62, vq_channels=(8, 16, 32))
