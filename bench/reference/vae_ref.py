"""PyTorch reference of loom's KL-VAE stage: the same modules, parameter names and
arithmetic as the C++ (models/layers/resnet.cpp, models/vae.cpp, stages/vae_stage.cpp), so
a `loom export` of a vae stage loads here by name and its training loss can be checked.

    model, config = load_export("exports/vae")
    loss, parts = model.autoencoder_loss(x, eps)   # eps: the posterior draw [B, z, h, w]

The names follow latent diffusion's AutoencoderKL ("vae.encoder.down.0.block.0.conv1.weight").
"""
import json
import os

import torch
import torch.nn.functional as F
from torch import nn


def normalize(channels, groups):
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout, groups, dropout=0.0):
        super().__init__()
        self.norm1 = normalize(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = normalize(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """One head of width C over the H*W positions (scaled_dot_product_attention, as the C++)."""

    def __init__(self, c, groups):
        super().__init__()
        self.norm = normalize(c, groups)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        tokens = lambda t: t.reshape(B, 1, C, H * W).transpose(2, 3)  # [B, 1, HW, C]
        out = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        return x + self.proj_out(out.transpose(2, 3).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    def __init__(self, c, groups, dropout, attention):
        super().__init__()
        self.block_1 = ResnetBlock(c, c, groups, dropout)
        self.attn_1 = AttnBlock(c, groups) if attention else None
        self.block_2 = ResnetBlock(c, c, groups, dropout)

    def forward(self, x):
        h = self.block_1(x)
        if self.attn_1 is not None:
            h = self.attn_1(h)
        return self.block_2(h)


class Level(nn.Module):
    """One resolution: its ResNet blocks ("block.N") and its resampling, if any."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()

    def forward(self, x):
        for b in self.block:
            x = b(x)
        for name in ("downsample", "upsample"):
            if hasattr(self, name):
                x = getattr(self, name)(x)
        return x


class Encoder(nn.Module):
    def __init__(self, m, in_channels):
        super().__init__()
        ch, mult, groups, drop = m["ch"], m["ch_mult"], m["groups"], m.get("dropout", 0.0)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for i, k in enumerate(mult):
            level = Level()
            for _ in range(m["num_res_blocks"]):
                level.block.append(ResnetBlock(block_in, ch * k, groups, drop))
                block_in = ch * k
            if i != len(mult) - 1:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = MidBlock(block_in, groups, drop, m["attention"])
        self.norm_out = normalize(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, 2 * m["z_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, m, out_channels):
        super().__init__()
        ch, mult, groups, drop = m["ch"], m["ch_mult"], m["groups"], m.get("dropout", 0.0)
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(m["z_channels"], block_in, 3, padding=1)
        self.mid = MidBlock(block_in, groups, drop, m["attention"])
        levels = [None] * len(mult)
        for i in reversed(range(len(mult))):
            level = Level()
            for _ in range(m["num_res_blocks"] + 1):
                level.block.append(ResnetBlock(block_in, ch * mult[i], groups, drop))
                block_in = ch * mult[i]
            if i != 0:
                level.upsample = Upsample(block_in)
            levels[i] = level
        self.up = nn.ModuleList(levels)  # up[0] at full resolution
        self.norm_out = normalize(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, m, channels):
        super().__init__()
        z = m["z_channels"]
        self.encoder = Encoder(m, channels)
        self.decoder = Decoder(m, channels)
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1)
        self.post_quant_conv = nn.Conv2d(z, z, 1)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))  # [B, 2z, h, w]

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


class VaeStage(nn.Module):
    """The stage's trainable autoencoder ("vae.*") and its loss without the discriminator:
    reconstruction summed per image and averaged over the batch, plus kl_weight x KL."""

    def __init__(self, model, loss):
        super().__init__()
        self.z = model["z_channels"]
        self.vae = AutoencoderKL(model, model["channels"])
        self.recon, self.kl_weight = loss["recon"], loss["kl_weight"]

    def autoencoder_loss(self, x, eps):
        B = x.shape[0]
        moments = self.vae.encode(x)
        mean, logvar = moments[:, : self.z], moments[:, self.z :].clamp(-30.0, 20.0)
        recon = self.vae.decode(mean + torch.exp(0.5 * logvar) * eps)
        err = (x - recon).abs() if self.recon == "l1" else (x - recon).pow(2)
        rec = err.sum() / B
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / B
        return rec + self.kl_weight * kl, {"rec": rec, "kl": kl}


def load_export(directory, dtype=torch.float32):
    """Reads a vae export (config.json + model.safetensors + config.yaml); strict by name.
    Returns (stage, config). The loss options come from config.yaml's stage.loss."""
    import yaml
    from safetensors.torch import load_file

    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    if config.get("format") != "loom-export" or config.get("kind") != "vae":
        raise ValueError(f"{directory} is not a loom vae export")
    with open(os.path.join(directory, "config.yaml")) as f:
        experiment = yaml.safe_load(f)
    stage = VaeStage(config["model"], experiment["stage"]["loss"])
    tensors = {k: v.to(dtype) for k, v in load_file(os.path.join(directory, "model.safetensors")).items()}
    tensors = {k: v for k, v in tensors.items() if k.startswith("vae.")}  # the discriminator is not mirrored
    stage.load_state_dict(tensors, strict=True)
    return stage.to(dtype), config
