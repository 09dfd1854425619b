"""Pretrained codecs from local paths, on tiny randomly initialised models the tests save: the SD VAE
through diffusers, MaskGIT's VQGAN through a strict state-dict load."""

import json

import numpy as np
import pytest
import torch

from elt import codecs
from elt.codecs import vae, vqgan
from elt.errors import UserError

from .conftest import tiny_cfg


def tiny_vae(folder, scaling_factor=0.18215):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    net = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
        scaling_factor=scaling_factor,
    )
    net.save_pretrained(folder)
    return net.eval()


def images(n=3, side=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 3, side, side), dtype=np.uint8)


def test_the_vae_codec_is_diffusers_latent_mean_times_the_configs_scale(tmp_path):
    reference = tiny_vae(tmp_path / "pipeline/vae", scaling_factor=0.5)
    codec = vae.VAECodec(str(tmp_path / "pipeline"), "vae", (1, 3, 16, 16), downsampling=2)
    assert (codec.kind, codec.channels, codec.spatial, codec.scale) == ("continuous", 4, (1, 8, 8), 0.5)
    data = images()
    latents = codec.encode(data)  # (N, 4, T, 8, 8)
    with torch.no_grad():
        expected = reference.encode(torch.from_numpy(data[:, 0]).float() / 127.5 - 1).latent_dist.mean * 0.5
    assert latents.shape == (3, 4, 1, 8, 8)
    torch.testing.assert_close(latents[:, :, 0], expected)
    decoded = codec.decode(latents)
    assert decoded.shape == data.shape and decoded.dtype == np.uint8
    assert codec.identity()["codec"] == "sd_vae"


def test_video_frames_are_coded_one_by_one(tmp_path):
    tiny_vae(tmp_path / "vae")
    clips = np.random.default_rng(1).integers(0, 256, (2, 3, 3, 16, 16), dtype=np.uint8)
    codec = vae.VAECodec(str(tmp_path / "vae"), None, (3, 3, 16, 16), downsampling=2)
    latents = codec.encode(clips)
    assert latents.shape == (2, 4, 3, 8, 8)
    torch.testing.assert_close(latents[:, :, 1], codec.encode(clips[:, 1:2])[:, :, 0])


def test_a_folder_that_is_not_a_diffusers_vae_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="does not exist: set codec.weights"):
        _ = vae.VAECodec(str(tmp_path / "absent"), None, (1, 3, 16, 16)).scale
    with pytest.raises(UserError, match="has no config.json.*AutoencoderKL folder"):
        vae.VAECodec(str(tmp_path), None, (1, 3, 16, 16))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(UserError, match="holds a UNet2DModel, not an AutoencoderKL"):
        vae.VAECodec(str(tmp_path), None, (1, 3, 16, 16))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "block_out_channels": [8, 16]}))
    with pytest.raises(UserError, match="cannot be loaded"):  # a config without weights
        vae.VAECodec(str(tmp_path), None, (1, 3, 16, 16), downsampling=2).encode(images())


def test_the_vae_geometry_is_known_before_the_weights_and_checked_against_them(tmp_path):
    before = vae.VAECodec(str(tmp_path / "not-yet"), None, (1, 3, 256, 256))  # SD's: 4 channels, 8x
    assert (before.channels, before.spatial) == (4, (1, 32, 32))
    tiny_vae(tmp_path / "vae")
    with pytest.raises(UserError, match="has downsampling 2, the run says 8: set codec.downsampling to 2"):
        vae.VAECodec(str(tmp_path / "vae"), None, (1, 3, 16, 16))
    with pytest.raises(UserError, match="sides divisible by 2"):
        vae.VAECodec(str(tmp_path / "vae"), None, (1, 3, 15, 15), downsampling=2)


def test_a_run_config_with_the_vae_gives_the_dit_latent_inputs(tmp_path):
    tiny_vae(tmp_path / "vae")
    cfg = tiny_cfg(
        data={"dataset": "folder", "path": str(tmp_path), "channels": 3, "image_size": 16},
        model={"generator": "diffusion", "patch_size": 2},
        codec={"pretrained": "sd_vae", "weights": str(tmp_path / "vae"), "downsampling": 2},
    )
    from elt.runs import assemble

    parts = assemble(cfg, (1, 3, 16, 16), 3)
    assert isinstance(parts.codec, vae.VAECodec) and parts.net_cfg.in_channels == 4 and parts.net_cfg.seq_len == 16


@pytest.mark.parametrize(
    "codec, fix",
    [
        ({"pretrained": "sd_vae"}, "codec.weights is empty"),
        ({"pretrained": "maskgit_vqgan", "weights": "w.pt"}, "serves the masked generator, not diffusion"),
        ({"pretrained": "vae", "weights": "w"}, "use one of sd_vae, maskgit_vqgan"),
        ({"weights": "w"}, "codec.pretrained is not"),
    ],
)
def test_codec_settings_are_checked(codec, fix):
    with pytest.raises(UserError, match=fix):
        tiny_cfg(model={"generator": "diffusion"}, codec=codec)


# --- MaskGIT's VQGAN --------------------------------------------------------------------------------
# Names of the public PyTorch conversion of MaskGIT's checkpoint (open-muse's MaskGitVQGAN), for a
# two-resolution layout: what a state dict in that layout holds.
CONVERSION_KEYS = {
    "encoder.conv_in.weight",
    "encoder.down.0.block.0.norm1.weight",
    "encoder.down.0.block.0.conv1.weight",
    "encoder.down.1.block.0.conv2.weight",
    "encoder.down.1.block.0.nin_shortcut.weight",
    "encoder.mid.0.norm2.bias",
    "encoder.norm_out.weight",
    "encoder.conv_out.weight",
    "encoder.conv_out.bias",
    "decoder.conv_in.weight",
    "decoder.conv_in.bias",
    "decoder.mid.0.conv1.weight",
    "decoder.up.0.block.0.nin_shortcut.weight",
    "decoder.up.1.block.0.norm1.weight",
    "decoder.up.1.upsample_conv.weight",
    "decoder.up.1.upsample_conv.bias",
    "decoder.norm_out.bias",
    "decoder.conv_out.weight",
    "decoder.conv_out.bias",
    "quantize.embedding.weight",
}


def saved_vqgan(path, layout="T"):
    torch.manual_seed(0)
    net = vqgan.VQGAN(vqgan.LAYOUTS[layout])
    torch.save(net.state_dict(), path)
    return net.eval()


def test_the_vqgan_has_the_conversions_parameter_names():
    keys = set(vqgan.VQGAN(vqgan.LAYOUTS["T"]).state_dict())
    assert keys >= CONVERSION_KEYS
    assert not {
        k for k in keys if k.endswith(("conv1.bias", "conv2.bias", "nin_shortcut.bias", "encoder.conv_in.bias"))
    }
    assert "decoder.up.0.upsample_conv.weight" not in keys and "encoder.down.1.downsample" not in " ".join(keys)


def test_maskgits_layout_makes_16x16_tokens_of_1024_codes_at_256():
    cfg = vqgan.LAYOUTS["maskgit"]
    assert (cfg.codebook, 256 // cfg.downsampling, cfg.z_channels, cfg.code_dim) == (1024, 16, 256, 256)


def test_the_vqgan_codec_round_trips_tokens_and_loads_strictly(tmp_path):
    net = saved_vqgan(tmp_path / "vqgan.pt")
    codec = vqgan.VQGANCodec(str(tmp_path / "vqgan.pt"), "T", (1, 3, 16, 16))
    assert (codec.kind, codec.grid, codec.vocab_size) == ("tokens", (1, 8, 8), 64)
    data = images()
    tokens = codec.encode(data)
    assert tokens.shape == (3, 64) and tokens.dtype == torch.long and tokens.min() >= 0 and tokens.max() < 64
    assert torch.equal(tokens, net.encode(torch.from_numpy(data[:, 0]).float() / 255))
    decoded = codec.decode(tokens)
    assert decoded.shape == data.shape and decoded.dtype == np.uint8
    torch.testing.assert_close(
        torch.from_numpy(decoded[:, 0]).float() / 255, net.decode(tokens, (8, 8)), atol=1 / 255, rtol=0
    )


def test_a_state_dict_that_does_not_match_fails_loudly(tmp_path):
    net = saved_vqgan(tmp_path / "tiny.pt")
    with pytest.raises(UserError, match=r"do not match the 'maskgit' layout \(.*wrong shape"):
        vqgan.load(tmp_path / "tiny.pt", "maskgit")
    state = net.state_dict()
    state.pop("decoder.conv_out.bias")
    state["decoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(
        UserError, match=r"missing 1 \(e.g. decoder.conv_out.bias\); unexpected 1 \(e.g. decoder.extra.weight\)"
    ):
        vqgan.load(tmp_path / "broken.pt", "T")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot be read"):
        vqgan.load(tmp_path / "junk.pt", "T")
    with pytest.raises(UserError, match="use one of maskgit, T"):
        vqgan.load(tmp_path / "tiny.pt", "XL")


def test_safetensors_weights_load_too(tmp_path):
    from safetensors.torch import save_file

    net = saved_vqgan(tmp_path / "vqgan.pt")
    save_file(net.state_dict(), tmp_path / "vqgan.safetensors")
    loaded = vqgan.load(tmp_path / "vqgan.safetensors", "T")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())


def test_a_masked_run_with_the_vqgan_models_its_tokens(tmp_path):
    saved_vqgan(tmp_path / "vqgan.pt")
    cfg = tiny_cfg(
        data={"dataset": "folder", "path": str(tmp_path), "channels": 3, "image_size": 16},
        codec={"pretrained": "maskgit_vqgan", "weights": str(tmp_path / "vqgan.pt"), "vqgan": "T"},
    )
    codec = codecs.for_run(cfg, (1, 3, 16, 16))
    assert isinstance(codec, vqgan.VQGANCodec) and codec.identity()["codec"] == "maskgit_vqgan"


def test_every_codec_implements_the_codec_interface():
    """elt.codecs.base.Codec: the pipeline calls encode, decode, identity and to(device) on any codec."""
    import typing

    from elt.codecs import Codec, Pixels, PixelTokens, VAECodec, VQCodec, VQGANCodec

    members = {"encode", "decode", "identity", "to"}
    assert members <= set(dir(Codec))
    for cls in (PixelTokens, Pixels, VQCodec, VAECodec, VQGANCodec):
        assert all(callable(getattr(cls, name, None)) for name in members), cls
        assert cls.kind in typing.get_args(typing.get_type_hints(Codec)["kind"]), cls
    levels = PixelTokens(17, (1, 1, 8, 8))
    levels.to("meta")  # a codec without a network stays on the CPU: its tokens are CPU tensors
    assert levels.encode(np.zeros((1, 1, 1, 8, 8), np.uint8)).device.type == "cpu"


def test_pretrained_codecs_decode_a_few_examples_per_network_call(tmp_path):
    """A sampling batch (256 at the paper's size) goes through the VAE or VQGAN decoder decode_batch examples
    at a time, in order: the same images as one call, without one call's memory."""
    tiny_vae(tmp_path / "vae")
    codec = vae.VAECodec(str(tmp_path / "vae"), None, (1, 3, 16, 16), downsampling=2)
    latents = codec.encode(images(n=5))
    whole = codec.decode(latents)
    sizes, real = [], codec.net.decode
    codec.net.decode = lambda z: sizes.append(len(z)) or real(z)
    codec.decode_batch = 2
    assert np.array_equal(codec.decode(latents), whole) and sizes == [2, 2, 1]
    saved_vqgan(tmp_path / "vqgan.pt")
    tokens_codec = vqgan.VQGANCodec(str(tmp_path / "vqgan.pt"), "T", (1, 3, 16, 16))
    tokens = tokens_codec.encode(images(n=5))
    whole = tokens_codec.decode(tokens)
    tokens_codec.decode_batch = 3
    assert np.array_equal(tokens_codec.decode(tokens), whole)
