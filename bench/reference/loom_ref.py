"""PyTorch reference of loom's text-to-image DiT stage: the same modules, parameter names
and arithmetic as the C++ (models/, diffusion/gaussian_diffusion.cpp, stages/dit_stage.cpp),
so a `loom export` loads here by name and the training loss can be checked against it.

    model, config = load_export("runs/x/export")
    losses = model(x0, t, noise, tokens, mask)   # [B] per-sample weighted MSE

Only the training path (forward + loss) is mirrored; sampling stays in loom.
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn


# --- layers (models/layers/attention.cpp, models/layers/embeddings.cpp) ---------------------


class Attention(nn.Module):
    """Multi-head self- or cross-attention; `mask` [B, L] bool, true where a key is real."""

    def __init__(self, dim, heads, context_dim=0):
        super().__init__()
        assert dim % heads == 0, f"attention width {dim} is not divisible by {heads} heads"
        self.heads = heads
        kv_in = context_dim if context_dim > 0 else dim
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_in, dim)
        self.v = nn.Linear(kv_in, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None):
        src = x if context is None else context
        B, N, L, H = x.shape[0], x.shape[1], src.shape[1], self.heads
        Dh = self.q.out_features // H
        qh = self.q(x).view(B, N, H, Dh).transpose(1, 2)  # [B, H, N, Dh]
        kh = self.k(src).view(B, L, H, Dh).transpose(1, 2)  # [B, H, L, Dh]
        vh = self.v(src).view(B, L, H, Dh).transpose(1, 2)  # [B, H, L, Dh]
        # A bool mask: true = attend, per key [B, L] or per query and key [B, N, L]. Padded
        # keys get no weight; a query row always has at least the start token, so no row
        # is fully masked.
        attn_mask = None if mask is None else (mask.view(B, 1, N, L) if mask.dim() == 3 else mask.view(B, 1, 1, L))
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask)  # [B, H, N, Dh]
        return self.proj(out.transpose(1, 2).reshape(B, N, H * Dh))  # [B, N, D]


class Mlp(nn.Module):
    """Two linear layers with the tanh-approximated GELU between them, as the C++ uses."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def timestep_sinusoids(t, dim, max_period=10000.0):
    """[B] int timesteps -> [B, dim] float32 (cos | sin); the C++ order of operations."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], 1)  # [B, 2*half]
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(t.shape[0], 1, device=t.device)], 1)
    return emb


class TimestepEmbedder(nn.Module):
    def __init__(self, width, frequency_dim=256):
        super().__init__()
        self.frequency_dim = frequency_dim
        # Indices 0 and 2 hold the weights: "t_embedder.mlp.0.weight", as LibTorch's Sequential.
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t):
        return self.mlp(timestep_sinusoids(t, self.frequency_dim))  # [B, width]


def sincos_positions_2d(dim, grid):
    """[grid*grid, dim] fixed positions: sin|cos of the row, then sin|cos of the column."""
    assert dim % 4 == 0, f"2-D sin-cos positions need a width divisible by 4, got {dim}"
    coords = torch.arange(grid, dtype=torch.float32)
    yy = coords.view(grid, 1).expand(grid, grid).reshape(-1)  # [G*G]
    xx = coords.view(1, grid).expand(grid, grid).reshape(-1)  # [G*G]
    quarter = dim // 4
    omega = 1.0 / torch.pow(10000.0, torch.arange(quarter, dtype=torch.float32) / quarter)

    def axis(pos):
        a = pos.unsqueeze(1) * omega.unsqueeze(0)  # [G*G, dim/4]
        return torch.cat([torch.sin(a), torch.cos(a)], 1)  # [G*G, dim/2]

    return torch.cat([axis(yy), axis(xx)], 1)  # [G*G, dim]


class PatchEmbed(nn.Module):
    def __init__(self, channels, width, patch):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, N, width]


def unpatchify(tokens, channels, patch, height, width):
    """[B, N, p*p*C] -> [B, C, H, W]; row-major patches, channels fastest within a patch."""
    B, gh, gw = tokens.shape[0], height // patch, width // patch
    return (
        tokens.view(B, gh, gw, patch, patch, channels)  # [B, gh, gw, p, p, C]
        .permute(0, 5, 1, 3, 2, 4)  # [B, C, gh, p, gw, p]
        .reshape(B, channels, height, width)
    )


# --- text encoder (models/text_encoder.cpp) -----------------------------------------------


class TextBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)  # eps 1e-5, affine: LibTorch's defaults
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, 4 * width)

    def forward(self, x, mask):
        h = self.norm1(x)
        y = x + self.attn(h, h, mask)  # padded tokens are never attended to
        return y + self.mlp(self.norm2(y))  # [B, L, D]


class TextEncoder(nn.Module):
    def __init__(self, width, depth, heads, vocab, max_tokens):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positions = nn.Parameter(torch.randn(max_tokens, width) * 0.02)  # learned
        self.blocks = nn.ModuleList([TextBlock(width, heads) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width)

    def forward(self, tokens, mask):
        L = tokens.shape[1]
        assert L <= self.positions.shape[0], f"caption of {L} tokens is longer than the encoder's"
        x = self.token_embedding(tokens) + self.positions[:L].unsqueeze(0)  # [B, L, D]
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)  # [B, L, D]


# --- DiT (models/dit.cpp) ------------------------------------------------------------------


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # [B, N, D]


def plain_norm(width):
    return nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)


class DiTBlock(nn.Module):
    def __init__(self, width, heads, mlp_ratio, context_dim):
        super().__init__()
        self.norm1 = plain_norm(width)
        self.attn = Attention(width, heads)
        self.norm_cross = nn.LayerNorm(width)  # affine, eps 1e-5
        self.cross_attn = Attention(width, heads, context_dim)
        self.norm2 = plain_norm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))  # C++ truncates width * ratio the same way
        self.adaLN_modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.adaLN_modulation.weight)  # adaLN-Zero
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, c, context, mask):
        m = self.adaLN_modulation(F.silu(c)).chunk(6, 1)  # 6 x [B, D]
        h = x + m[2].unsqueeze(1) * self.attn(modulate(self.norm1(x), m[0], m[1]))  # [B, N, D]
        h = h + self.cross_attn(self.norm_cross(h), context, mask)  # image queries, text keys
        return h + m[5].unsqueeze(1) * self.mlp(modulate(self.norm2(h), m[3], m[4]))  # [B, N, D]


class DiT(nn.Module):
    def __init__(self, image_size, channels, patch, width, depth, heads, mlp_ratio, context_dim):
        super().__init__()
        self.channels, self.patch = channels, patch
        grid = image_size // patch
        self.x_embedder = PatchEmbed(channels, width, patch)
        self.t_embedder = TimestepEmbedder(width)
        self.register_buffer("pos_embed", sincos_positions_2d(width, grid))  # [N, D], exported
        # Registered one by one as "blocks_<i>" (the LibTorch names); the list only orders them.
        self.block_list = []
        for i in range(depth):
            block = DiTBlock(width, heads, mlp_ratio, context_dim)
            self.add_module(f"blocks_{i}", block)
            self.block_list.append(block)
        self.final_norm = plain_norm(width)
        self.final_adaLN = nn.Linear(width, 2 * width)
        self.final_linear = nn.Linear(width, patch * patch * channels)
        for layer in (self.final_adaLN, self.final_linear):  # the untrained model predicts 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x_t, t, context, mask):
        x = self.x_embedder(x_t) + self.pos_embed.unsqueeze(0)  # [B, N, D], N = H*W/p^2
        c = self.t_embedder(t)  # [B, D]
        for block in self.block_list:
            x = block(x, c, context, mask)
        shift, scale = self.final_adaLN(F.silu(c)).chunk(2, 1)  # [B, D] each
        x = self.final_linear(modulate(self.final_norm(x), shift, scale))  # [B, N, p*p*C]
        return unpatchify(x, self.channels, self.patch, x_t.shape[2], x_t.shape[3])  # [B, C, H, W]


# --- Gaussian diffusion, training objective only (diffusion/gaussian_diffusion.cpp) ---------


def alphas_cumprod(schedule, timesteps):
    """abar_t for t = 0..T-1, float64, computed as the C++ computes it."""
    if timesteps < 2:
        raise ValueError("diffusion needs at least 2 timesteps")
    if schedule == "linear":
        scale = 1000.0 / timesteps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64).clamp_max(0.999)
        return torch.cumprod(1.0 - betas, 0)
    if schedule == "cosine":
        s = 0.008

        def f(t):
            return math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2

        betas = torch.tensor([min(1.0 - f(i + 1) / f(i), 0.999) for i in range(timesteps)], dtype=torch.float64)
        return torch.cumprod(1.0 - betas, 0)
    raise ValueError(f"unknown noise schedule '{schedule}' (linear or cosine)")


class GaussianDiffusion:
    def __init__(self, schedule="cosine", timesteps=1000, prediction="v", loss_weight="min_snr", snr_gamma=5.0):
        if prediction not in ("eps", "v", "x0"):
            raise ValueError(f"unknown prediction '{prediction}' (eps, v or x0)")
        if loss_weight not in ("uniform", "min_snr"):
            raise ValueError(f"unknown loss weight '{loss_weight}'")
        self.timesteps, self.prediction = timesteps, prediction
        self.loss_weight, self.snr_gamma = loss_weight, snr_gamma
        self.abar = alphas_cumprod(schedule, timesteps)  # float64 [T], on the CPU

    def _at(self, t, x):
        """abar at t as float32 [B, 1, 1, ...] on x's device (cast before the sqrt, as in C++)."""
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        return self.abar.index_select(0, t.to("cpu", torch.long)).to(x.device, torch.float32).view(shape)

    def q_sample(self, x0, t, noise):
        a = self._at(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise  # [B, ...]

    def target(self, x0, t, noise):
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        a = self._at(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0  # v

    def weight(self, t):
        """1, or min(SNR, gamma) in x0 space divided by SNR (eps) or SNR + 1 (v); float64 math."""
        if self.loss_weight == "uniform":
            return torch.ones(t.shape[0], dtype=torch.float32, device=t.device)
        a = self.abar.index_select(0, t.to("cpu", torch.long))
        snr = a / (1 - a)
        w = torch.clamp_max(snr, self.snr_gamma)
        if self.prediction == "eps":
            w = w / snr
        if self.prediction == "v":
            w = w / (snr + 1)
        return w.to(t.device, torch.float32)

    def training_losses(self, model, x0, t, noise):
        """Per-sample weighted MSE [B], float32; `model(x_t, t)` is the bound network."""
        x_t = self.q_sample(x0, t, noise)
        prediction = model(x_t, t)  # [B, ...]
        mse = (prediction.to(torch.float32) - self.target(x0, t, noise)).pow(2).flatten(1).mean(1)  # [B]
        return mse * self.weight(t)


# --- the stage (stages/dit_stage.cpp) --------------------------------------------------------


class DiTStage(nn.Module):
    """Text encoder + DiT as one module ("text.*", "dit.*"), and the diffusion they train in.
    `model` and `diffusion` are the sections of an export's config.json."""

    def __init__(self, model, diffusion):
        super().__init__()
        text = model["text"]
        self.text = TextEncoder(text["width"], text["depth"], text["heads"], text["vocab"], model["max_tokens"])
        self.dit = DiT(model["image_size"], model["channels"], model["patch"], model["width"], model["depth"],
                       model["heads"], model["mlp_ratio"], model.get("context_dim", text["width"]))
        self.diffusion = GaussianDiffusion(diffusion["schedule"], diffusion["timesteps"], diffusion["prediction"],
                                           diffusion["loss_weight"], diffusion["snr_gamma"])

    def bind(self, tokens, mask):
        """The denoiser f(x_t, t) with the caption encoded once (DiTStage::Bind)."""
        context = self.text(tokens, mask)  # [B, L, Dc]
        return lambda x, t: self.dit(x, t, context, mask)

    def forward(self, x0, t, noise, tokens, mask):
        """Per-sample losses [B] for given timesteps and noise (what DiTStage::Loss computes
        after drawing them; caption dropout is the caller's, by passing empty captions)."""
        return self.diffusion.training_losses(self.bind(tokens, mask), x0, t, noise)


def empty_caption(tokens, mask, pad=0, start=2):
    """Turns rows into the empty caption in place: start token, then padding (train::EmptyCaption)."""
    tokens.fill_(pad)
    tokens[:, 0] = start
    mask.fill_(False)
    mask[:, 0] = True


def stage_from_config(config):
    """A DiTStage from an export's config.json dict ("model", with its "diffusion")."""
    if config.get("kind") != "dit":
        raise ValueError(f"kind '{config.get('kind')}' is not a dit export (vae_ref.py mirrors the vae)")
    m = config["model"]
    return DiTStage(m, m["diffusion"])


def load_export(directory, dtype=torch.float32):
    """Reads DIR/config.json and DIR/model.safetensors (a `loom export`); returns (model, config).

    Every parameter and buffer must be in the file under its LibTorch name, and nothing else
    (strict). Weights stored as bf16/fp16 are cast to `dtype`.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    if config.get("format") != "loom-export":
        raise ValueError(f"{directory}/config.json: format is {config.get('format')!r}, not 'loom-export'")
    path = os.path.join(directory, "model.safetensors")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != "loom-export":
        raise ValueError(f"{path}: __metadata__ format is {metadata.get('format')!r}, not 'loom-export'")
    model = stage_from_config(config)
    tensors = {k: v.to(dtype) for k, v in load_file(path).items()}
    model.load_state_dict(tensors, strict=True)
    return model.to(dtype), config
