"""Codecs turn data (uint8 (N, T, C, H, W)) into what a generator models, and back.

- PixelTokens: each channel value quantised to `levels` tokens; exact for digits (17 levels).
  Channels fold into the grid's time axis, so the token grid is (T*C, H, W).
- Pixels: identity to continuous values in [-1, 1], laid out (N, C, T, H, W) for the DiT.
- VQCodec (elt.codecs.tokenizer): codes of this harness's 3D VQ tokenizer.
- VQGANCodec (elt.codecs.vqgan): MaskGIT's ImageNet VQGAN tokens; VAECodec (elt.codecs.vae): SD VAE latents.
Every codec implements elt.codecs.base.Codec: `kind` (tokens | continuous), encode, decode, `to(device)`,
and `identity()`: what pre-encoded shards record, so data another codec made is refused.
"""

from __future__ import annotations

from elt.codecs.base import Codec
from elt.codecs.pixels import Pixels, PixelTokens
from elt.codecs.tokenizer import VQCodec, load
from elt.codecs.vae import VAECodec
from elt.codecs.vqgan import VQGANCodec


def for_run(cfg, shape: tuple[int, int, int, int]) -> Codec:
    """The codec a run config asks for: pixels or SD VAE latents for diffusion; pixel levels, VQ codes
    or MaskGIT VQGAN tokens for masked."""
    c = cfg.codec
    if c.pretrained == "sd_vae":
        return VAECodec(c.weights, c.subfolder, shape, c.latent_channels, c.downsampling, c.latents)
    if c.pretrained == "maskgit_vqgan":
        return VQGANCodec(c.weights, c.vqgan, shape)
    if cfg.model.generator != "masked":
        return Pixels(shape)
    if c.tokenizer:
        return VQCodec(load(c.tokenizer), shape, c.tokenizer)
    return PixelTokens(cfg.data.levels, shape)
