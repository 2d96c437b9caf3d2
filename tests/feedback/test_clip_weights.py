"""Published open_clip weights by tag: the cache, downloads, `--offline`, the CLI's options.

A tiny architecture and a tag of it are registered with open_clip for the test, its weights
saved where huggingface_hub caches them (in tmp_path). Nothing reaches the network: the
Hub's endpoint points at a closed local port, and the download test stands in for
`hf_hub_download` with a fake that records its arguments.
"""

from __future__ import annotations

import copy
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub import constants

from cli.clip_options import load_scorer
from cli.errors import UserError
from cli.main import build_parser
from feedback import clip_weights
from feedback.scorer import ClipScorer, ScorerLoadError

ARCH = "Tiny-Test-CLIP"
TAG = "test_tag"
REPO = "someone/tiny-clip"
REVISION = "cd" * 20
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TAG_MEAN = (0.5, 0.4, 0.3)
CLOSED_PORT_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens here


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache; downloads on (HF_HUB_OFFLINE unset) but the Hub unreachable."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT_ENDPOINT)
    return cache


@pytest.fixture
def tiny_tag(monkeypatch):
    """Registers ARCH with the pretrained tag TAG (QuickGELU, its own mean) on the Hub's REPO."""
    from open_clip import factory, pretrained

    monkeypatch.setitem(factory._MODEL_CONFIGS, ARCH, copy.deepcopy(TINY_CONFIG))
    tag = pretrained._pcfg(hf_hub=f"{REPO}/", quick_gelu=True, mean=TAG_MEAN)
    monkeypatch.setitem(pretrained._PRETRAINED, ARCH, {TAG: tag})


def _cache_weights(cache: Path) -> dict[str, torch.Tensor]:
    """Random tiny weights saved as the Hub caches REPO's open_clip_model.safetensors."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = open_clip.create_model(ARCH, force_quick_gelu=True).state_dict()
    folder = cache / f"models--{REPO.replace('/', '--')}"
    (folder / "snapshots" / REVISION).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    save_file(state, str(folder / "snapshots" / REVISION / clip_weights.SAFETENSORS_FILE))
    return state


def test_a_cached_tag_loads_offline_as_open_clip_loads_the_tag_with_its_quickgelu(
    hub_cache, tiny_tag, monkeypatch
):
    import open_clip
    from open_clip.transformer import QuickGELU

    _cache_weights(hub_cache)
    scorer = ClipScorer.load(ARCH, TAG, offline=True, device="cpu")
    assert scorer.name == f"{ARCH}:{TAG}" and scorer.device == torch.device("cpu")
    assert scorer.image_size == (32, 32)
    np.testing.assert_allclose(scorer.mean.numpy(), TAG_MEAN)
    # open_clip given the tag only warns that the weights want QuickGELU; we apply it.
    assert isinstance(scorer.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # open_clip's own lookup, cached
    reference = open_clip.create_model(ARCH, pretrained=TAG, force_quick_gelu=True).eval()
    image = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = reference.encode_image(scorer.pixels(image), normalize=True).numpy()
    np.testing.assert_allclose(scorer.image_embeddings(image), expected, atol=1e-6)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the environment alone keeps it offline too
    assert ClipScorer.load(ARCH, TAG).name == f"{ARCH}:{TAG}"


def test_a_tag_missing_from_the_cache_is_refused_offline_with_what_to_do(hub_cache, tiny_tag):
    with pytest.raises(ScorerLoadError) as caught:
        ClipScorer.load(ARCH, TAG, offline=True)
    message = str(caught.value)
    assert "--offline" in message and "HF_HUB_OFFLINE" in message
    assert REPO in message and str(hub_cache) in message and "--clip-weights" in message


def test_an_unreachable_hub_is_a_clear_error_and_asked_once(hub_cache, tiny_tag, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def unreachable(repo_id, filename, *, local_files_only=False, **options):
        calls.append((filename, local_files_only))
        raise LocalEntryNotFoundError("Connection refused")  # what huggingface_hub raises

    # huggingface_hub retries an unanswered request for about 20 s: not in a test.
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ScorerLoadError, match="is the Hub reachable") as caught:
        ClipScorer.load(ARCH, TAG)
    assert str(hub_cache) in str(caught.value)
    assert calls == [(clip_weights.SAFETENSORS_FILE, False), (clip_weights.PYTORCH_FILE, True)]


def test_without_offline_the_tag_is_downloaded_into_the_cache(
    tmp_path, hub_cache, tiny_tag, monkeypatch
):
    state = _cache_weights(tmp_path / "remote")
    remote = next((tmp_path / "remote").rglob(clip_weights.SAFETENSORS_FILE))
    calls = []

    def fake_download(repo_id, filename, *, cache_dir=None, local_files_only=False, **options):
        calls.append((repo_id, filename, cache_dir, local_files_only))
        target = hub_cache / "downloaded" / filename
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(remote.read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    scorer = ClipScorer.load(ARCH, TAG, device="cpu")
    assert calls == [(REPO, clip_weights.SAFETENSORS_FILE, None, False)]
    loaded = scorer.model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_a_url_only_tag_is_refused_offline_when_not_in_its_cache(tmp_path, monkeypatch):
    from open_clip import pretrained

    url = "https://example.invalid/weights/tiny.pt"
    monkeypatch.setitem(pretrained._PRETRAINED, ARCH, {TAG: pretrained._pcfg(url=url)})
    with pytest.raises(clip_weights.ClipWeightsError, match="--offline"):
        clip_weights.pretrained_file(ARCH, TAG, offline=True, cache_dir=tmp_path)
    (tmp_path / "tiny.pt").write_bytes(b"cached")
    assert clip_weights.pretrained_file(ARCH, TAG, offline=True, cache_dir=tmp_path) == (
        tmp_path / "tiny.pt"
    )


def test_an_unknown_tag_names_the_architectures_tags(tiny_tag):
    with pytest.raises(clip_weights.ClipWeightsError, match=TAG):
        clip_weights.tag_config(ARCH, "nonesuch")


@pytest.mark.parametrize("command", ["evaluate", "rounds"])
def test_the_commands_pass_clip_weights_and_offline_to_the_loader(command, tmp_path, monkeypatch):
    required = {
        "evaluate": ["--adapter", "a.safetensors", "--reference", "r.png", "--json", "e.json",
                     "--html", "e.html"],
        "rounds": ["style.png", "--descriptor", "in a style", "--out", "runs/x"],
    }[command]  # fmt: skip
    clip = ["--clip", "ViT-B-32", "--clip-weights", "openai"]
    args = build_parser().parse_args([command, *required, *clip, "--offline"])
    assert (args.clip, args.clip_weights, args.offline) == ("ViT-B-32", "openai", True)
    assert build_parser().parse_args([command, *required]).offline is False
    calls = []
    monkeypatch.setattr(ClipScorer, "load", lambda *a, **k: calls.append((a, k)) or "scorer")
    assert load_scorer(args, tmp_path) == "scorer"
    assert calls == [(("ViT-B-32", "openai"), {"offline": True})]


def test_a_published_tag_missing_offline_is_a_user_error(hub_cache):
    args = build_parser().parse_args(
        ["rounds", "s.png", "--descriptor", "d", "--out", "o", "--clip", "ViT-B-32",
         "--clip-weights", "openai", "--offline"]
    )  # fmt: skip
    with pytest.raises(UserError, match="downloads are off"):
        load_scorer(args, hub_cache)
