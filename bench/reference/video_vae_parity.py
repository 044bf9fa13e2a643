"""Recomputes loom's causal video VAE in PyTorch (video_vae_ref.py) on loom's weights and
inputs, for tests/models/video_vae_test.cpp to compare: the posterior moments, the
reconstruction, the loss and every parameter's gradient; and counts the FLOPs of one
encode + decode of one clip with torch's flop counter.

    python bench/reference/video_vae_parity.py --dir DIR [--dtype float64]

DIR holds config.json (VideoVaeOptions' fields and "channels"), weights.safetensors
(loom's parameters by name; they must match the reference's names exactly) and
inputs.safetensors (x [B, C, T, H, W], eps [B, z, t, h, w]). With
mean, logvar = moments split in two, logvar clamped to [-30, 20]:

    loss = |x - decode(mean + exp(logvar / 2) eps)|.sum() / (B T)
           + 1e-6 * 0.5 (mean^2 + exp(logvar) - 1 - logvar).sum() / (B T)

Writes DIR/outputs.safetensors ("moments", "recon", "loss" [1], "grad.<name>"), in the
dtype computed in. Prints the names that differ, if any, then a JSON object as the last
line ("forward_flops": the first clip of x, encode + decode); exits 1 when names differ.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from torch.utils.flop_counter import FlopCounterMode

from video_vae_ref import VideoAutoencoder

KL_WEIGHT = 1e-6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    with open(os.path.join(args.dir, "config.json")) as f:
        c = json.load(f)
    model = VideoAutoencoder(c["ch"], c["ch_mult"], c["num_res_blocks"], c["z_channels"], c["temporal_down"],
                             c["groups"], c["channels"]).to(dtype)
    weights = load_file(os.path.join(args.dir, "weights.safetensors"))
    wanted = dict(model.named_parameters())
    missing, unexpected = sorted(set(wanted) - set(weights)), sorted(set(weights) - set(wanted))
    if missing or unexpected:
        for name in missing:
            print(f"missing from loom's weights: {name}")
        for name in unexpected:
            print(f"not in the reference: {name}")
        print(json.dumps({"ok": False, "names_match": False, "missing": missing, "unexpected": unexpected}))
        return 1
    model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=True)

    inputs = load_file(os.path.join(args.dir, "inputs.safetensors"))
    x, eps = inputs["x"].to(dtype), inputs["eps"].to(dtype)
    B, T = x.shape[0], x.shape[2]
    z = c["z_channels"]
    moments = model.encode(x)
    mean, logvar = moments[:, :z], moments[:, z:].clamp(-30.0, 20.0)
    recon = model.decode(mean + torch.exp(0.5 * logvar) * eps)
    rec = (x - recon).abs().sum() / (B * T)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / (B * T)
    loss = rec + KL_WEIGHT * kl
    loss.backward()

    outputs = {"moments": moments.detach(), "recon": recon.detach(), "loss": loss.detach().reshape(1)}
    no_grad = [name for name, p in wanted.items() if p.grad is None]
    for name, p in wanted.items():
        if p.grad is not None:
            outputs["grad." + name] = p.grad
    save_file({k: v.contiguous() for k, v in outputs.items()}, os.path.join(args.dir, "outputs.safetensors"))

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(model.encode(x[:1])[:, :z])
    for name in no_grad:
        print(f"no gradient in the reference: {name}")
    print(json.dumps({"ok": not no_grad, "names_match": True, "dtype": args.dtype, "params": len(wanted),
                      "grads": len(wanted) - len(no_grad), "loss": loss.item(), "rec": rec.item(), "kl": kl.item(),
                      "forward_flops": counter.get_total_flops()}))
    return 0 if not no_grad else 1


if __name__ == "__main__":
    sys.exit(main())
