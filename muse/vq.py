"""The aMUSEd VQ-GAN tokenizer (diffusers `VQModel`) in Flax NNX, and its loader.

Images go in as [batch, height, width, 3] floats in [0, 1] (the aMUSEd pipelines
feed pixels without the usual [-1, 1] rescaling) and come back the same way.
Every tensor inside is NHWC. Attribute names mirror the diffusers modules, so
`muse.weights` derives each PyTorch state-dict key from the NNX parameter path,
e.g. `encoder.down_blocks.0.resnets.1.conv1.weight`.

Only the configuration aMUSEd uses is supported: GroupNorm everywhere, SiLU, and
a mid block without attention.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from muse import weights
from muse.config import VQConfig
from muse.layers import Conv

# diffusers builds every norm of the VQ with this epsilon (torch's default is 1e-5).
_NORM_EPS = 1e-6


def _conv3x3(in_ch: int, out_ch: int, dtype, rngs: nnx.Rngs) -> Conv:
    """3x3 convolution with one pixel of zero padding on every side (PyTorch padding=1)."""
    return Conv(in_ch, out_ch, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)


def _conv1x1(in_ch: int, out_ch: int, dtype, rngs: nnx.Rngs) -> Conv:
    """Pointwise convolution."""
    return Conv(in_ch, out_ch, (1, 1), padding="VALID", dtype=dtype, rngs=rngs)


def _group_norm(channels: int, groups: int, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm with torch numerics: statistics over (H, W, channels of the group).

    The two-pass variance E[(x - mean)^2] is used instead of E[x^2] - mean^2, which
    loses precision when activations have a large mean.
    """
    return nnx.GroupNorm(
        num_features=channels,
        num_groups=groups,
        epsilon=_NORM_EPS,
        use_fast_variance=False,
        dtype=dtype,
        rngs=rngs,
    )


class ResnetBlock2D(nnx.Module):
    """GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, plus a (projected) skip."""

    def __init__(self, in_ch: int, out_ch: int, groups: int, *, dtype, rngs: nnx.Rngs):
        self.norm1 = _group_norm(in_ch, groups, dtype, rngs)
        self.conv1 = _conv3x3(in_ch, out_ch, dtype, rngs)
        self.norm2 = _group_norm(out_ch, groups, dtype, rngs)
        self.conv2 = _conv3x3(out_ch, out_ch, dtype, rngs)
        # A 1x1 projection only where the width changes, as in diffusers.
        self.conv_shortcut = _conv1x1(in_ch, out_ch, dtype, rngs) if in_ch != out_ch else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to `x` [batch, height, width, in_ch] -> [..., out_ch]."""
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = self.conv2(nnx.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Downsample2D(nnx.Module):
    """Halves height and width with a stride-2 3x3 convolution."""

    def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs):
        # diffusers pads right and bottom by one pixel, then convolves without
        # padding; an asymmetric padding on the conv itself is the same operation.
        self.conv = Conv(
            channels,
            channels,
            (3, 3),
            strides=2,
            padding=((0, 1), (0, 1)),
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, height, width, ch] -> [batch, height / 2, width / 2, ch]."""
        return self.conv(x)


class Upsample2D(nnx.Module):
    """Doubles height and width: nearest-neighbour repeat, then a 3x3 convolution."""

    def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs):
        self.conv = _conv3x3(channels, channels, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, height, width, ch] -> [batch, 2 * height, 2 * width, ch]."""
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


class DownEncoderBlock2D(nnx.Module):
    """ResNet blocks at one resolution, optionally followed by a downsampler."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        num_layers: int,
        groups: int,
        add_downsample: bool,
        *,
        dtype,
        rngs: nnx.Rngs,
    ):
        self.resnets = nnx.List(
            ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, groups, dtype=dtype, rngs=rngs)
            for i in range(num_layers)
        )
        # A list of one, so the PyTorch key `downsamplers.0.conv` falls out of the path.
        self.downsamplers = (
            nnx.List([Downsample2D(out_ch, dtype=dtype, rngs=rngs)]) if add_downsample else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the resnets, then the downsampler if any."""
        for resnet in self.resnets:
            x = resnet(x)
        for down in self.downsamplers or ():
            x = down(x)
        return x


class UpDecoderBlock2D(nnx.Module):
    """ResNet blocks at one resolution, optionally followed by an upsampler."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        num_layers: int,
        groups: int,
        add_upsample: bool,
        *,
        dtype,
        rngs: nnx.Rngs,
    ):
        self.resnets = nnx.List(
            ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, groups, dtype=dtype, rngs=rngs)
            for i in range(num_layers)
        )
        self.upsamplers = (
            nnx.List([Upsample2D(out_ch, dtype=dtype, rngs=rngs)]) if add_upsample else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the resnets, then the upsampler if any."""
        for resnet in self.resnets:
            x = resnet(x)
        for up in self.upsamplers or ():
            x = up(x)
        return x


class UNetMidBlock2D(nnx.Module):
    """Two ResNet blocks at the lowest resolution (the attention between them is off)."""

    def __init__(self, channels: int, groups: int, *, dtype, rngs: nnx.Rngs):
        self.resnets = nnx.List(
            ResnetBlock2D(channels, channels, groups, dtype=dtype, rngs=rngs) for _ in range(2)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies both resnets."""
        for resnet in self.resnets:
            x = resnet(x)
        return x


class Encoder(nnx.Module):
    """Pixels -> latent grid: conv_in, down blocks, mid block, GN -> SiLU -> conv_out."""

    def __init__(self, config: VQConfig, *, dtype, rngs: nnx.Rngs):
        widths = config.block_out_channels
        groups = config.norm_num_groups
        self.conv_in = _conv3x3(config.in_channels, widths[0], dtype, rngs)
        blocks = []
        for i, width in enumerate(widths):
            previous = widths[max(i - 1, 0)]
            is_last = i == len(widths) - 1
            blocks.append(
                DownEncoderBlock2D(
                    previous,
                    width,
                    config.layers_per_block,
                    groups,
                    not is_last,
                    dtype=dtype,
                    rngs=rngs,
                )
            )
        self.down_blocks = nnx.List(blocks)
        self.mid_block = UNetMidBlock2D(widths[-1], groups, dtype=dtype, rngs=rngs)
        self.conv_norm_out = _group_norm(widths[-1], groups, dtype, rngs)
        self.conv_out = _conv3x3(widths[-1], config.latent_channels, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, H, W, in_channels] -> [batch, H / f, W / f, latent_channels]."""
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(nnx.silu(self.conv_norm_out(x)))


class Decoder(nnx.Module):
    """Latent grid -> pixels: conv_in, mid block, up blocks, GN -> SiLU -> conv_out."""

    def __init__(self, config: VQConfig, *, dtype, rngs: nnx.Rngs):
        widths = tuple(reversed(config.block_out_channels))
        groups = config.norm_num_groups
        self.conv_in = _conv3x3(config.latent_channels, widths[0], dtype, rngs)
        self.mid_block = UNetMidBlock2D(widths[0], groups, dtype=dtype, rngs=rngs)
        blocks = []
        for i, width in enumerate(widths):
            previous = widths[max(i - 1, 0)]
            is_last = i == len(widths) - 1
            # The decoder has one more resnet per level than the encoder.
            blocks.append(
                UpDecoderBlock2D(
                    previous,
                    width,
                    config.layers_per_block + 1,
                    groups,
                    not is_last,
                    dtype=dtype,
                    rngs=rngs,
                )
            )
        self.up_blocks = nnx.List(blocks)
        self.conv_norm_out = _group_norm(widths[-1], groups, dtype, rngs)
        self.conv_out = _conv3x3(widths[-1], config.out_channels, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, h, w, latent_channels] -> [batch, h * f, w * f, out_channels]."""
        x = self.conv_in(x)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(nnx.silu(self.conv_norm_out(x)))


class VectorQuantizer(nnx.Module):
    """Nearest-neighbour codebook (Euclidean, no l2-normalisation)."""

    def __init__(self, num_codes: int, dim: int, *, rngs: nnx.Rngs):
        self.embedding = nnx.Embed(num_codes, dim, rngs=rngs)

    @property
    def codebook(self) -> jax.Array:
        """The code vectors, [num_codes, dim], in float32."""
        return self.embedding.embedding[...].astype(jnp.float32)

    def __call__(self, z: jax.Array) -> jax.Array:
        """Returns the id of the nearest code: [..., dim] -> [...] int32.

        Distances are taken the way `torch.cdist` takes them for more than 25
        points, |z|^2 - 2 z.e + |e|^2, then clamped and square-rooted, so rounding
        and ties behave like the reference. Everything is float32 with the matmul
        forced to full precision (no TF32 or bfloat16 passes on accelerators),
        whatever the model's compute dtype; `argmin` keeps the first minimum, as
        torch does.
        """
        codes = self.codebook  # [num_codes, dim]
        z = z.astype(jnp.float32)  # [..., dim]
        z_sq = jnp.sum(z * z, axis=-1, keepdims=True)  # [..., 1]
        e_sq = jnp.sum(codes * codes, axis=-1)  # [num_codes]
        cross = jnp.einsum("...d,nd->...n", z, codes, precision=jax.lax.Precision.HIGHEST)
        dist = jnp.sqrt(jnp.maximum(z_sq - 2.0 * cross + e_sq, 1e-30))  # [..., num_codes]
        return jnp.argmin(dist, axis=-1).astype(jnp.int32)

    def lookup(self, ids: jax.Array) -> jax.Array:
        """Code vectors for `ids`: [...] int -> [..., dim] float32."""
        return jnp.take(self.codebook, ids, axis=0)


class VQModel(nnx.Module):
    """The VQ-GAN tokenizer: images in [0, 1] <-> grids of codebook ids.

    `model.quantize` is the codebook submodule (named as in diffusers, so the
    checkpoint key `quantize.embedding.weight` maps onto it); calling it maps
    latents [batch, h, w, embed_dim] to ids [batch, h, w] int32.

    Args:
        config: Model sizes (diffusers `VQModel` field names).
        rngs: Random streams for parameter initialisation.
        dtype: Compute dtype of the convolutions and norms (parameters stay
            float32; codebook distances are always float32).

    Raises:
        NotImplementedError: if the config asks for attention in the mid block.
    """

    def __init__(self, config: VQConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        if config.mid_block_add_attention:
            raise NotImplementedError(
                "VQModel supports mid_block_add_attention=False only (as in aMUSEd);"
                " the attention variant of the diffusers mid block is not ported."
            )
        self.config = config
        self.dtype = dtype
        self.encoder = Encoder(config, dtype=dtype, rngs=rngs)
        self.quant_conv = _conv1x1(config.latent_channels, config.embed_dim, dtype, rngs)
        self.quantize = VectorQuantizer(config.num_vq_embeddings, config.embed_dim, rngs=rngs)
        self.post_quant_conv = _conv1x1(config.embed_dim, config.latent_channels, dtype, rngs)
        self.decoder = Decoder(config, dtype=dtype, rngs=rngs)

    def encode(self, images: jax.Array) -> jax.Array:
        """Encodes images to continuous latents (after quant_conv, before quantization).

        Args:
            images: [batch, height, width, 3] floats in [0, 1]; height and width
                divisible by `config.downscale_factor`.

        Returns:
            [batch, height / f, width / f, embed_dim] float32 latents.
        """
        x = jnp.asarray(images, self.dtype)  # [batch, height, width, 3]
        h = self.encoder(x)  # [batch, h, w, latent_channels]
        return self.quant_conv(h).astype(jnp.float32)  # [batch, h, w, embed_dim]

    def tokenize(self, images: jax.Array) -> jax.Array:
        """Images [batch, height, width, 3] in [0, 1] -> ids [batch, h, w] int32."""
        return self.quantize(self.encode(images))

    def decode(self, ids: jax.Array) -> jax.Array:
        """Decodes a grid of codebook ids to images.

        Args:
            ids: [batch, h, w] integer codebook ids.

        Returns:
            [batch, h * f, w * f, 3] float32 images clipped to [0, 1].
        """
        z = self.quantize.lookup(ids).astype(self.dtype)  # [batch, h, w, embed_dim]
        z = self.post_quant_conv(z)  # [batch, h, w, latent_channels]
        pixels = self.decoder(z)  # [batch, H, W, 3]
        return jnp.clip(pixels.astype(jnp.float32), 0.0, 1.0)


def vq_from_diffusers(
    config: VQConfig, tensors: Mapping[str, np.ndarray], *, dtype=jnp.float32
) -> VQModel:
    """Builds a `VQModel` from a diffusers `VQModel` state dict, strictly.

    The model is first built abstractly (no random initialisation), the tensors
    are converted and checked by `muse.weights`, then written into it.

    Args:
        config: Sizes matching the checkpoint's `config.json`.
        tensors: PyTorch key -> array, e.g. from `safetensors.numpy.load_file`.
        dtype: Compute dtype of the model (parameters are float32 either way).

    Returns:
        The loaded model.

    Raises:
        WeightsError: naming every missing, unexpected or misshapen tensor.
    """
    return weights.build_from_torch_state(
        lambda: VQModel(config, rngs=nnx.Rngs(0), dtype=dtype), tensors, "VQ"
    )
