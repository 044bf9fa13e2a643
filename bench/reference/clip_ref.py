"""PyTorch reference of loom's CLIP (models/clip.cpp) and its contrastive loss
(stages/clip_stage.cpp, ClipLoss in one process), and of DALL-E 2's diffusion prior
(models/prior.cpp): the same modules, parameter names and arithmetic, so loom's
parameters load here by name.

    model = Clip(config)                      # config: ClipConfig's fields
    image, text = model.embed(images, tokens, mask)
    loss = clip_loss(image, text, keys, model.logit_scale)
    prior = PriorNet(config)                  # config: PriorConfig's fields
    x0_hat = prior(x_t, t, text_embed, tokens, mask, dropped)
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from loom_ref import TextBlock, TextEncoder, TimestepEmbedder


class ImageTower(nn.Module):
    """A ViT: patches (a bias-free convolution), a class token, learned positions, a norm
    before and after the blocks, the class token projected."""

    def __init__(self, c):
        super().__init__()
        patches = (c["image_size"] // c["patch"]) ** 2
        self.patch_embed = nn.Conv2d(c["channels"], c["width"], c["patch"], stride=c["patch"], bias=False)
        scale = 1 / math.sqrt(c["width"])
        self.class_token = nn.Parameter(torch.randn(c["width"]) * scale)
        self.positions = nn.Parameter(torch.randn(1 + patches, c["width"]) * scale)
        self.pre_norm = nn.LayerNorm(c["width"])
        self.blocks = nn.ModuleList([TextBlock(c["width"], c["heads"]) for _ in range(c["depth"])])
        self.post_norm = nn.LayerNorm(c["width"])
        self.proj = nn.Parameter(torch.randn(c["width"], c["embed_dim"]) * scale)

    def forward(self, images):
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.class_token.view(1, 1, -1).expand(x.shape[0], 1, -1), x], 1) + self.positions
        x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x, None)
        return self.post_norm(x[:, 0]) @ self.proj


class TextTower(nn.Module):
    """The caption Transformer; the output at the last real token, projected."""

    def __init__(self, c):
        super().__init__()
        t = c["text"]
        self.encoder = TextEncoder(t["width"], t["depth"], t["heads"], t["vocab"], c["max_tokens"])
        self.proj = nn.Parameter(torch.randn(t["width"], c["embed_dim"]) / math.sqrt(t["width"]))

    def forward(self, tokens, mask):
        features = self.encoder(tokens, mask)  # [B, L, W]
        last = (mask.sum(1) - 1).clamp(min=0)
        return features[torch.arange(tokens.shape[0]), last] @ self.proj


class Clip(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.image = ImageTower(config)
        self.text = TextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed(self, images, tokens, mask):
        """L2-normalised image and text embeddings."""
        return F.normalize(self.image(images), dim=-1), F.normalize(self.text(tokens, mask), dim=-1)


def clip_loss(image, text, keys, logit_scale):
    """Both directions' cross-entropy, halved; pairs with equal keys are positives (each
    pair alone when keys is None), the target spread evenly over a row's positives."""
    if keys is None:
        positive = torch.eye(image.shape[0], dtype=torch.bool)
    else:
        positive = keys[:, None] == keys[None, :]
    target = positive.float() / positive.sum(1, keepdim=True).float()
    scale = logit_scale.clamp(max=math.log(100)).exp()
    by_image = scale * image @ text.t()
    by_text = scale * text @ image.t()
    ce = lambda logits: -(target * logits.log_softmax(1)).sum(1).mean()
    return (ce(by_image) + ce(by_text)) / 2


class PriorNet(nn.Module):
    """A causal Transformer over [caption tokens, text embedding, timestep, noised image
    embedding, query]; the query's output predicts the clean image embedding. Rows with
    `dropped` set read the learned null caption instead of theirs."""

    def __init__(self, c):
        super().__init__()
        D, W, L = c["embed_dim"], c["width"], c["max_tokens"]
        self.text_proj = nn.Linear(c["text_width"], W)
        self.embed_proj = nn.Linear(D, W)
        self.x_proj = nn.Linear(D, W)
        self.time = TimestepEmbedder(W)
        self.query = nn.Parameter(torch.randn(W) * 0.02)
        self.positions = nn.Parameter(torch.randn(L + 4, W) * 0.02)
        self.null_tokens = nn.Parameter(torch.randn(L, W) * 0.02)
        self.null_embed = nn.Parameter(torch.randn(W) * 0.02)
        self.blocks = nn.ModuleList([TextBlock(W, c["heads"]) for _ in range(c["depth"])])
        self.final_norm = nn.LayerNorm(W)
        self.out = nn.Linear(W, D)

    def forward(self, x_t, t, text_embed, tokens, mask, dropped):
        B, L = tokens.shape[0], tokens.shape[1]
        W = self.query.shape[0]
        drop = dropped.bool().view(B, 1)
        text = torch.where(drop[:, :, None], self.null_tokens[None].expand(B, L, W), self.text_proj(tokens))
        embed = torch.where(drop, self.null_embed[None].expand(B, W), self.embed_proj(text_embed))
        x = torch.cat([text, embed[:, None], self.time(t)[:, None].to(text.dtype), self.x_proj(x_t)[:, None],
                       self.query.view(1, 1, W).expand(B, 1, W)], 1) + self.positions
        N = L + 4
        real = torch.cat([mask.bool() | drop, torch.ones(B, 4, dtype=torch.bool)], 1)  # [B, N]
        allowed = torch.ones(N, N, dtype=torch.bool).tril()[None] & real[:, None, :]  # causal, no padding
        for block in self.blocks:
            x = block(x, allowed)
        return self.out(self.final_norm(x[:, N - 1]))
