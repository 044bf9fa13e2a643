"""PyTorch reference of loom's latent-diffusion U-Net (models/unet.h), written from the
paper's UNetModel with loom's parameter names, so that a loom tensor file loads into it
by name. Used by unet_parity.py; importable on its own:

    from unet_ref import UNet
    net = UNet(config)   # config: the dict unet_parity.py reads (UNetConfig's fields)
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(channels, groups):
    return nn.GroupNorm(groups, channels, eps=1e-6)


def timestep_sinusoids(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(t.shape[0], 1)], dim=1)
    return emb


class Attention(nn.Module):
    def __init__(self, dim, heads, context_dim=0):
        super().__init__()
        self.heads = heads
        kv = context_dim or dim
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(kv, dim), nn.Linear(kv, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None):
        src = x if context is None else context
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, t.shape[1], h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(src)), split(self.v(src)),
                                             attn_mask=None if mask is None else mask[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TimestepResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, groups):
        super().__init__()
        self.in_norm, self.in_conv = group_norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, cout)
        self.out_norm, self.out_conv = group_norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.in_conv(F.silu(self.in_norm(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.out_conv(F.silu(self.out_norm(h)))
        return (x if self.skip is None else self.skip(x)) + h


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_in, self.ff_out = nn.Linear(dim, 8 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x, context, mask):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context, mask)
        a, gate = self.ff_in(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(a * F.gelu(gate))


class SpatialTransformer(nn.Module):
    def __init__(self, channels, heads, depth, context_dim, groups):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, heads, context_dim) for _ in range(depth)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, context, mask):
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            tokens = block(tokens, context, mask)
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w))


class Step(nn.Module):
    """A ResBlock with an optional transformer after it, or a 2x resampler."""

    def __init__(self):
        super().__init__()
        self.res = self.attn = self.down = self.up = None

    def forward(self, x, emb, context, mask):
        if self.res is not None:
            x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x, context, mask)
        if self.down is not None:
            x = self.down(x)
        if self.up is not None:
            x = self.up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class UNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        mc, emb_dim, groups = c["model_channels"], 4 * c["model_channels"], c["groups"]
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if c.get("aug_embed"):
            self.aug_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if c["embed_dim"] > 0:
            self.embed_proj = nn.Linear(c["embed_dim"], emb_dim)
            if c["embed_tokens"] > 0:
                self.embed_to_tokens = nn.Linear(c["embed_dim"], c["embed_tokens"] * c["context_dim"])
        self.conv_in = nn.Conv2d(c["in_channels"], mc, 3, padding=1)

        def transformer(ch):
            return SpatialTransformer(ch, c["heads"], c["transformer_depth"], c["context_dim"], groups)

        self.input_blocks, skips, ch, ds = nn.ModuleList(), [mc], mc, 1
        levels = len(c["channel_mult"])
        for level, mult in enumerate(c["channel_mult"]):
            for _ in range(c["num_res_blocks"]):
                step = Step()
                step.res, ch = TimestepResBlock(ch, mult * mc, emb_dim, groups), mult * mc
                if ds in c["attention_resolutions"]:
                    step.attn = transformer(ch)
                self.input_blocks.append(step)
                skips.append(ch)
            if level + 1 < levels:
                step = Step()
                step.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                self.input_blocks.append(step)
                skips.append(ch)
                ds *= 2
        self.middle_res1 = TimestepResBlock(ch, ch, emb_dim, groups)
        self.middle_attn = transformer(ch)
        self.middle_res2 = TimestepResBlock(ch, ch, emb_dim, groups)
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            mult = c["channel_mult"][level]
            for r in range(c["num_res_blocks"] + 1):
                step = Step()
                step.res, ch = TimestepResBlock(ch + skips.pop(), mult * mc, emb_dim, groups), mult * mc
                if ds in c["attention_resolutions"]:
                    step.attn = transformer(ch)
                if level > 0 and r == c["num_res_blocks"]:
                    step.up = nn.Conv2d(ch, ch, 3, padding=1)
                    ds //= 2
                self.output_blocks.append(step)
        self.out_norm = group_norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, c["out_channels"], 3, padding=1)

    def forward(self, x, t, context, mask, embed=None, aug_t=None):
        emb = self.time_embed(timestep_sinusoids(t, self.c["model_channels"]))
        if self.c.get("aug_embed"):
            emb = emb + self.aug_embed(timestep_sinusoids(aug_t, self.c["model_channels"]))
        if self.c["embed_dim"] > 0:
            emb = emb + self.embed_proj(embed)
            if self.c["embed_tokens"] > 0:
                extra = self.embed_to_tokens(embed).view(x.shape[0], self.c["embed_tokens"], self.c["context_dim"])
                context = torch.cat([context, extra], dim=1)
                mask = torch.cat([mask, torch.ones(x.shape[0], self.c["embed_tokens"], dtype=torch.bool)], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for step in self.input_blocks:
            h = step(h, emb, context, mask)
            skips.append(h)
        h = self.middle_res2(self.middle_attn(self.middle_res1(h, emb), context, mask), emb)
        for step in self.output_blocks:
            h = step(torch.cat([h, skips.pop()], dim=1), emb, context, mask)
        return self.conv_out(F.silu(self.out_norm(h)))
