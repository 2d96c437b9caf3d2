"""`styledrop convert REPO_ID`: the Hub cache, downloads of only what conversion reads, offline.

Nothing here reaches the network: repos are laid out in a hub cache made in tmp_path, the
Hub's endpoint points at a closed local port, and the one test of the download path
stands in for `huggingface_hub.snapshot_download` with a fake that serves a local folder
through huggingface_hub's own file filter.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects

from cli.main import main
from muse import checkpoint, hub
from muse.convert import ConversionError, convert_diffusers

REPO = "someone/tiny-amused"
REVISION = "ab" * 20
CLOSED_PORT_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens here


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache; downloads on (HF_HUB_OFFLINE unset) but the Hub unreachable."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT_ENDPOINT)
    return cache


def _cache_repo(cache: Path, source: Path, repo: str = REPO) -> Path:
    """Lays `source` out as huggingface_hub caches a repo: snapshots/<rev>/, refs/main."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / REVISION
    shutil.copytree(source, snapshot)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    return snapshot


def test_a_cached_repo_converts_offline_by_option_and_by_environment(
    tmp_path, hub_cache, tiny_diffusers_dir, monkeypatch
):
    _cache_repo(hub_cache, tiny_diffusers_dir)
    out = convert_diffusers(REPO, tmp_path / "by-option", offline=True)
    assert checkpoint.read_model_json(out)["config"]["source"] == REPO
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["convert", REPO, str(tmp_path / "by-environment")]) == 0
    assert (tmp_path / "by-environment" / "model.json").is_file()


def test_a_repo_missing_from_the_cache_is_refused_offline_with_what_to_do(
    tmp_path, hub_cache, capsys
):
    with pytest.raises(ConversionError) as caught:
        convert_diffusers("nobody/no-such-model", tmp_path / "out", offline=True)
    message = str(caught.value)
    assert "--offline" in message and "HF_HUB_OFFLINE" in message
    assert str(hub_cache) in message and "not in the local Hugging Face cache" in message
    assert main(["convert", "nobody/no-such-model", str(tmp_path / "out"), "--offline"]) == 2
    assert "--offline" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_hub_is_a_clear_error_naming_the_cache(tmp_path, hub_cache):
    with pytest.raises(ConversionError, match="Could not reach the Hugging Face Hub") as caught:
        convert_diffusers("nobody/no-such-model", tmp_path / "out")
    assert str(hub_cache) in str(caught.value)


def _fake_snapshot_download(source: Path, cache: Path, calls: list[dict]):
    """`snapshot_download` serving `source` as the Hub would: allow_patterns filter the files."""

    def fake(repo_id, *, revision=None, cache_dir=None, allow_patterns=None, **options):
        calls.append({"repo_id": repo_id, "allow_patterns": allow_patterns, **options})
        assert not options.get("local_files_only")
        files = [str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()]
        snapshot = cache / "snapshot"
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, snapshot / name)
        return str(snapshot)

    return fake


def test_a_repo_not_cached_is_downloaded_with_only_the_files_conversion_reads(
    tmp_path, hub_cache, tiny_diffusers_dir, monkeypatch
):
    source = tmp_path / "remote"
    shutil.copytree(tiny_diffusers_dir, source)
    (source / "transformer" / "diffusion_pytorch_model.bin").write_bytes(b"pickled")
    (source / "transformer" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"half")
    (source / "README.md").write_text("a model card")
    calls: list[dict] = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", _fake_snapshot_download(source, hub_cache, calls)
    )

    out = convert_diffusers(REPO, tmp_path / "native")

    assert [call["repo_id"] for call in calls] == [REPO]
    assert sorted(calls[0]["allow_patterns"]) == sorted([
        *hub.CONFIG_PATTERNS,
        "transformer/diffusion_pytorch_model.safetensors",
        "vqvae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    ])  # fmt: skip
    fetched = {p.name for p in (hub_cache / "snapshot").rglob("*") if p.is_file()}
    assert not fetched & {"diffusion_pytorch_model.bin", "README.md"}
    assert "diffusion_pytorch_model.fp16.safetensors" not in fetched
    assert checkpoint.read_model_json(out)["config"]["source"] == REPO


def test_a_repo_with_fp16_weights_only_fetches_them_in_a_second_pass(
    tmp_path, hub_cache, make_tiny_diffusers, monkeypatch
):
    source = make_tiny_diffusers(tmp_path / "remote", fp16=True)
    calls: list[dict] = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", _fake_snapshot_download(source, hub_cache, calls)
    )
    out = convert_diffusers(REPO, tmp_path / "native")
    assert len(calls) == 2
    assert calls[1]["allow_patterns"] == hub.weight_patterns(fp16=True)
    assert (out / "model.json").is_file()


def test_offline_means_the_option_or_a_true_hf_hub_offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not hub.downloads_disabled()
    assert hub.downloads_disabled(offline=True)
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.downloads_disabled() is expected, value
