"""PyTorch reference of loom's causal video VAE (models/video_vae.cpp): the same modules,
parameter names and arithmetic, so loom's weights load here by name and its moments,
reconstructions and gradients can be checked.

    model = VideoAutoencoder(ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=2,
                             temporal_down=1, groups=4, channels=1)
    moments = model.encode(x)          # x [B, C, T, H, W] -> [B, 2z, 1 + (T - 1) / s, H / f, W / f]
    clips = model.decode(moments[:, :2])

Causal in time: every 3x3x3 convolution pads time on the past side only, with copies of
the first frame, and GroupNorm (eps 1e-6) takes its statistics per frame, so output frame
t depends on input frames 0..t. Names as loom's ("encoder.down.0.block.0.norm1.norm.weight",
"encoder.down.0.downsample.conv.weight", "decoder.up.1.upsample.conv.conv.weight").
"""
import torch
import torch.nn.functional as F
from torch import nn


class CausalConv3d(nn.Module):
    """A kt x k x k convolution: zero padding k // 2 in space, kt - 1 copies of the first
    frame before it in time (frame t sees frames t - kt + 1 .. t)."""

    def __init__(self, cin, cout, kt, k):
        super().__init__()
        self.kt = kt
        self.conv = nn.Conv3d(cin, cout, (kt, k, k), padding=(0, k // 2, k // 2))

    def forward(self, x):  # [B, Cin, T, H, W] -> [B, Cout, T, H, W]
        if self.kt == 1:
            return self.conv(x)
        past = x[:, :, :1].expand(-1, -1, self.kt - 1, -1, -1)
        return self.conv(torch.cat([past, x], dim=2))


class FrameGroupNorm(nn.Module):
    """GroupNorm of each frame on its own: the frames are folded into the batch."""

    def __init__(self, channels, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)

    def forward(self, x):  # [B, C, T, H, W]
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        return self.norm(frames).view(B, T, C, H, W).transpose(1, 2)


class CausalResBlock(nn.Module):
    """norm-swish-conv twice, plus the input (through a 1x1x1 convolution when the width changes)."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = FrameGroupNorm(cin, groups)
        self.conv1 = CausalConv3d(cin, cout, 3, 3)
        self.norm2 = FrameGroupNorm(cout, groups)
        self.conv2 = CausalConv3d(cout, cout, 3, 3)
        self.nin_shortcut = nn.Conv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class CausalDownsample(nn.Module):
    """Pad bottom and right by one, a (1, 3, 3) convolution of stride (1, 2, 2); then, when
    `time` and there is more than one frame, frame 0 kept and frames (1, 2), (3, 4), ... averaged."""

    def __init__(self, channels, time):
        super().__init__()
        self.time = time
        self.conv = nn.Conv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2))

    def forward(self, x):  # [B, C, T, H, W] -> [B, C, 1 + (T - 1) / 2 or T, H / 2, W / 2]
        h = self.conv(F.pad(x, (0, 1, 0, 1, 0, 0)))
        B, C, T, H, W = h.shape
        if not self.time or T == 1:
            return h
        if (T - 1) % 2 != 0:
            raise ValueError(f"a temporal downsampling needs 1 + 2k frames, got {T}")
        rest = h[:, :, 1:].reshape(B, C, (T - 1) // 2, 2, H, W).mean(dim=3)
        return torch.cat([h[:, :, :1], rest], dim=2)


class CausalUpsample(nn.Module):
    """Nearest x2 in H and W; when `time` and there is more than one frame, frame 0 kept and
    every later frame repeated; then a causal 3x3x3 convolution."""

    def __init__(self, channels, time):
        super().__init__()
        self.time = time
        self.conv = CausalConv3d(channels, channels, 3, 3)

    def forward(self, x):  # [B, C, T, H, W] -> [B, C, 1 + 2 (T - 1) or T, 2H, 2W]
        h = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        T = h.shape[2]
        if self.time and T > 1:
            h = torch.cat([h[:, :, :1], h[:, :, 1:].repeat_interleave(2, dim=2)], dim=2)
        return self.conv(h)


class Level(nn.Module):
    """One resolution: its ResNet blocks ("block.N"), then its resampling ("downsample" or
    "upsample"), absent at the last level of the encoder and the first of the decoder."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.resample_name = None

    def set_resample(self, name, module):
        self.resample_name = name
        setattr(self, name, module)

    def forward(self, x):
        for b in self.block:
            x = b(x)
        return x if self.resample_name is None else getattr(self, self.resample_name)(x)


class VideoEncoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, temporal_down, groups, in_channels):
        super().__init__()
        self.conv_in = CausalConv3d(in_channels, ch, 3, 3)
        self.down = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(ch_mult):
            level = Level()
            for _ in range(num_res_blocks):
                level.block.append(CausalResBlock(block_in, ch * mult, groups))
                block_in = ch * mult
            if i != len(ch_mult) - 1:
                level.set_resample("downsample", CausalDownsample(block_in, i < temporal_down))
            self.down.append(level)
        self.mid_1 = CausalResBlock(block_in, block_in, groups)
        self.mid_2 = CausalResBlock(block_in, block_in, groups)
        self.norm_out = FrameGroupNorm(block_in, groups)
        self.conv_out = CausalConv3d(block_in, 2 * z_channels, 3, 3)

    def forward(self, x):  # [B, C, T, H, W] -> [B, 2z, t, h, w]
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid_2(self.mid_1(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class VideoDecoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, temporal_down, groups, out_channels):
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = CausalConv3d(z_channels, block_in, 3, 3)
        self.mid_1 = CausalResBlock(block_in, block_in, groups)
        self.mid_2 = CausalResBlock(block_in, block_in, groups)
        # Built from the lowest resolution up; up[0] is at full resolution. The upsampling
        # out of level i undoes the encoder's downsampling into it (out of level i - 1).
        levels = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            level = Level()
            for _ in range(num_res_blocks + 1):
                level.block.append(CausalResBlock(block_in, ch * ch_mult[i], groups))
                block_in = ch * ch_mult[i]
            if i != 0:
                level.set_resample("upsample", CausalUpsample(block_in, i - 1 < temporal_down))
            levels[i] = level
        self.up = nn.ModuleList(levels)
        self.norm_out = FrameGroupNorm(block_in, groups)
        self.conv_out = CausalConv3d(block_in, out_channels, 3, 3)

    def forward(self, z):  # [B, z, t, h, w] -> [B, C, T, H, W]
        h = self.mid_2(self.mid_1(self.conv_in(z)))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VideoAutoencoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, temporal_down, groups, channels):
        super().__init__()
        args = (ch, list(ch_mult), num_res_blocks, z_channels, temporal_down, groups)
        self.encoder = VideoEncoder(*args, channels)
        self.decoder = VideoDecoder(*args, channels)
        self.quant_conv = nn.Conv3d(2 * z_channels, 2 * z_channels, 1)
        self.post_quant_conv = nn.Conv3d(z_channels, z_channels, 1)

    def encode(self, x):  # posterior moments [B, 2z, t, h, w] (mean | logvar)
        return self.quant_conv(self.encoder(x))

    def decode(self, z):  # clips [B, C, T, H, W], not clamped
        return self.decoder(self.post_quant_conv(z))
