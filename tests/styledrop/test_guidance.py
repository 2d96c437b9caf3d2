"""StyleDrop guidance (Eq. 4) and style + subject mixing (Eqs. 5-6) on a tiny converted base."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

import muse
from adapters import AdapterParam, AdapterSpec, inject_adapter
from muse.config import SamplingConfig
from muse.pipeline import Branch, cfg_branches
from muse.transformer import current_adapter_gate
from styledrop.guidance import (
    GuidanceScales,
    model_guidance,
    style_subject_branches,
    styledrop_branches,
)
from styledrop.terms import with_descriptor, without_descriptor


def _randomise_adapters(model, seed: int) -> None:
    state = nnx.state(model, AdapterParam)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [jax.random.normal(k, leaf.shape) * 0.3 for k, leaf in zip(keys, leaves, strict=True)]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))


@pytest.fixture(scope="module")
def two_adapter_pipe(tiny_model_dir):
    pipe = muse.load(tiny_model_dir)
    for kind, seed in (("r2", 1), ("lora", 2)):
        inject_adapter(
            pipe.transformer,
            AdapterSpec(kind=kind),
            rngs=nnx.Rngs(seed),
            gate_source=current_adapter_gate,
        )
    _randomise_adapters(pipe.transformer, 0)
    return pipe


def _ids(pipe, batch=2, seed=0):
    side = pipe.config.transformer.sample_size
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, pipe.config.transformer.codebook_size, (batch, side, side))
    ids[:, ::2] = pipe.config.sampling.mask_token_id
    return ids


def test_eq4_with_zero_lambdas_is_the_adapted_model(two_adapter_pipe):
    pipe = two_adapter_pipe
    prompts = ["a cat in pastel style", "a bus in pastel style"]
    ids = _ids(pipe)
    guided = pipe.guided_logits(
        styledrop_branches(prompts, ["", ""], GuidanceScales(0.0, 0.0), num_adapters=2), ids
    )
    adapted = pipe.guided_logits([Branch(tuple(prompts), 1.0, (1.0, 0.0))], ids)
    base = pipe.guided_logits([Branch(tuple(prompts), 1.0, (0.0, 0.0))], ids)
    np.testing.assert_allclose(guided, adapted, atol=1e-5)
    assert np.abs(adapted - base).max() > 1e-2  # the adapter does change the model


def test_eq4_matches_its_formula(two_adapter_pipe):
    pipe = two_adapter_pipe
    prompts, negatives = ["a cat", "a bus"], ["blurry", "blurry"]
    ids = _ids(pipe, seed=1)
    a, b = 1.5, 5.0
    guided = pipe.guided_logits(
        styledrop_branches(prompts, negatives, GuidanceScales(a, b), num_adapters=2), ids
    )
    g_a = pipe.guided_logits([Branch(tuple(prompts), 1.0, (1.0, 0.0))], ids)
    g_t = pipe.guided_logits([Branch(tuple(prompts), 1.0, (0.0, 0.0))], ids)
    g_n = pipe.guided_logits([Branch(tuple(negatives), 1.0, (0.0, 0.0))], ids)
    expected = g_a + a * (g_a - g_t) + b * (g_t - g_n)
    np.testing.assert_allclose(guided, expected, atol=1e-3, rtol=1e-4)


def test_guidance_takes_the_given_lambdas_then_the_models_then_the_papers():
    zoo_like = SamplingConfig(guidance_scale=1.5, styledrop_lambda_b=0.5)
    assert model_guidance(zoo_like) == GuidanceScales(1.0, 0.5)
    assert model_guidance(zoo_like, lambda_a=0.0, lambda_b=3.0) == GuidanceScales(0.0, 3.0)
    assert model_guidance(SamplingConfig()) == GuidanceScales(1.0, 5.0)  # stores none


def test_at_the_models_lambda_b_an_unchanged_adapter_gives_plain_sampling_logits(tiny_model_dir):
    pipe = muse.load(tiny_model_dir)
    inject_adapter(  # round 1's adapter as fitting starts: W_up is zero
        pipe.transformer, AdapterSpec(kind="r1"), rngs=nnx.Rngs(0),
        gate_source=current_adapter_gate,
    )  # fmt: skip
    prompts, negatives = ["a cat in pastel style", "a bus in pastel style"], ["", ""]
    ids = _ids(pipe, seed=4)
    scale = 1.5
    scales = model_guidance(SamplingConfig(guidance_scale=scale, styledrop_lambda_b=scale - 1))
    styled = pipe.guided_logits(styledrop_branches(prompts, negatives, scales), ids)
    plain = pipe.guided_logits(cfg_branches(prompts, negatives, scale), ids)
    np.testing.assert_allclose(styled, plain, atol=1e-4, rtol=1e-5)
    paper = pipe.guided_logits(styledrop_branches(prompts, negatives, GuidanceScales()), ids)
    assert np.abs(paper - plain).max() > 1e-2  # lambda_B 5 is another, stronger guidance


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_gamma_endpoints_equal_single_adapters(two_adapter_pipe, gamma):
    pipe = two_adapter_pipe
    styled, content = ["a cat in pastel style"] * 2, ["a cat"] * 2
    ids = _ids(pipe, seed=2)
    scales = GuidanceScales(1.0, 5.0)
    mixed = pipe.guided_logits(
        style_subject_branches(styled, content, ["", ""], gamma, scales), ids
    )
    if gamma == 0.0:
        single = styledrop_branches(styled, ["", ""], scales, adapter_index=0, num_adapters=2)
    else:
        single = styledrop_branches(content, ["", ""], scales, adapter_index=1, num_adapters=2)
    np.testing.assert_allclose(mixed, pipe.guided_logits(single, ids), atol=1e-4, rtol=1e-5)


def test_batched_gated_rows_equal_separate_forwards(two_adapter_pipe):
    """Rows with gates (1,0), (0,1), (0,0) in one batch equal each run alone."""
    pipe = two_adapter_pipe
    ids = _ids(pipe, batch=1, seed=3)
    gates = [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)]
    prompts = [("a cat",), ("a dog",), ("a bus",)]
    rows = [Branch(p, 1.0, g) for p, g in zip(prompts, gates, strict=True)]
    inputs = pipe.branch_inputs(rows, np.arange(1))
    batched = np.asarray(pipe.transformer(np.tile(ids, (3, 1, 1)), *inputs))
    for i, row in enumerate(rows):
        alone = pipe.guided_logits([row], ids)  # jitted: fusion moves the last bits (~2e-5)
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-4)


def test_content_first_is_given_then_the_models_then_the_papers_and_is_a_fraction():
    assert model_guidance(SamplingConfig()).content_first == 0.0  # the paper's rule
    stored = SamplingConfig(styledrop_content_first=0.75)
    assert model_guidance(stored) == GuidanceScales(1.0, 5.0, 0.75)
    assert model_guidance(stored, content_first=0.0).content_first == 0.0
    assert GuidanceScales(content_first=0.75).layout_steps(36) == 27
    assert GuidanceScales().layout_steps(36) == 0
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="Content first is the fraction"):
            GuidanceScales(content_first=bad)


def test_layout_steps_decode_the_layout_branches_then_the_main_ones(tiny_model_dir):
    pipe = muse.load(tiny_model_dir)
    steps = pipe.config.sampling.num_steps
    main = cfg_branches(["a cat", "a bus"], ["", ""], 3.0)
    layout = cfg_branches(["a dog", "a tree"], ["", ""], 2.0)
    alone_main = pipe.sample_tokens(main, seed=1)
    alone_layout = pipe.sample_tokens(layout, seed=1)
    assert (alone_main != alone_layout).any()
    # No layout steps: the main branches alone; all of them: the layout branches alone.
    none = pipe.sample_tokens(main, seed=1, layout=layout, layout_steps=0)
    np.testing.assert_array_equal(none, alone_main)
    every = pipe.sample_tokens(main, seed=1, layout=layout, layout_steps=steps)
    np.testing.assert_array_equal(every, alone_layout)
    half = pipe.sample_tokens(main, seed=1, layout=layout, layout_steps=steps // 2)
    assert (half != pipe.config.sampling.mask_token_id).all()  # every token decoded
    assert (half != alone_main).any() and (half != alone_layout).any()
    with pytest.raises(ValueError, match="layout_steps"):
        pipe.sample_tokens(main, layout=(), layout_steps=1)
    with pytest.raises(ValueError, match="layout_steps"):
        pipe.sample_tokens(main, layout=layout, layout_steps=steps + 1)


def test_content_first_steps_draw_the_content_prompt_with_the_base_or_the_subject(
    two_adapter_pipe,
):
    from styledrop.adapted import AttachedAdapter, content_branches

    pipe = two_adapter_pipe
    styled = ["a cat in pastel style", "a bus in pastel style"]
    scales = GuidanceScales(1.0, 5.0, 0.5)
    base_only = content_branches(pipe, styled, "in pastel style", ["", ""], scales, None, 2)
    scale = pipe.config.sampling.guidance_scale
    assert base_only == [
        Branch(("", ""), 1.0 - scale, (0.0, 0.0)),
        Branch(("a cat", "a bus"), scale, (0.0, 0.0)),
    ]
    subject = AttachedAdapter(1, None)  # only its gate index is read
    with_subject = content_branches(pipe, styled, "in pastel style", ["", ""], scales, subject, 2)
    assert with_subject == styledrop_branches(
        ["a cat", "a bus"], ["", ""], scales, adapter_index=1, num_adapters=2
    )


def test_descriptor_helpers():
    assert with_descriptor("a cat", "in pastel style") == "a cat in pastel style"
    assert with_descriptor("a cat in Pastel Style", "in pastel style") == "a cat in Pastel Style"
    assert without_descriptor("a cat in pastel style", "in pastel style") == "a cat"
    with pytest.raises(ValueError, match="gamma"):
        style_subject_branches(["a"], ["a"], [""], 1.5, GuidanceScales())
