"""Training-step throughput of the PyTorch reference (loom_ref.py) on synthetic batches: the
baseline `loom bench step` is compared with (bench/compare_pytorch.sh). One process, or
several ranks with DDP over gloo under torchrun, the global batch split over the ranks.

    build/loom train configs/fashion/dit.yaml --print-config > /tmp/resolved.yaml
    python bench/reference/train_step.py --config /tmp/resolved.yaml --threads 2
    torchrun --standalone --nproc_per_node 2 bench/reference/train_step.py \
        --config /tmp/resolved.yaml --threads 1

The config is a resolved one (every key present, as `--print-config` writes it), so the
defaults live only in loom. Each step: fresh timesteps, noise and caption dropout, the
per-sample loss averaged, backward, gradient clipping, AdamW with the config's settings.
The last stdout line (rank 0) is JSON with "samples_per_s".
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import yaml

import loom_ref

# models/dit.cpp: registered sizes (width, depth, heads); "S/4" adds the patch.
DIT_SIZES = {"XS": (192, 6, 3), "S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}


def load_config(path):
    """A resolved experiment config (every key present, as `--print-config` writes it)."""
    with open(path) as f:
        return yaml.safe_load(f)


def stage_config(experiment):
    """The export-style "model" section (numbers resolved as models::ResolveDiT does)."""
    data, m = experiment["data"], dict(experiment["stage"]["model"])
    if m.get("size"):
        name, patch = m["size"].split("/")
        m["width"], m["depth"], m["heads"] = DIT_SIZES[name]
        m["patch"] = int(patch)
    return {**m, "image_size": data["image_size"], "channels": data["channels"], "max_tokens": data["max_tokens"],
            "context_dim": m["text"]["width"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="resolved experiment YAML (loom train ... --print-config)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (loom bench step: 1)")
    parser.add_argument("--batch", type=int, default=0, help="global batch per step (0: data.batch_size)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads per process (0: LOOM_THREADS, "
                        "else cores / processes)")
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    threads = args.threads or int(os.environ.get("LOOM_THREADS", "0")) or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)

    try:
        experiment = load_config(args.config)
        model_config = stage_config(experiment)
        diffusion, optim = experiment["stage"]["diffusion"], experiment["optim"]
        caption_dropout = experiment["data"]["caption_dropout"]
        bf16 = experiment["train"]["precision"] == "bf16"
        batch = args.batch or experiment["data"]["batch_size"]
    except KeyError as e:
        sys.exit(f"error: {args.config}: no key {e}; pass a resolved config "
                 "(build/loom train CONFIG --print-config > resolved.yaml)")
    if experiment["stage"]["kind"] != "dit":
        sys.exit(f"error: stage.kind {experiment['stage']['kind']!r}: this reference times the DiT stage only")
    if batch % world:
        sys.exit(f"error: batch {batch} does not divide by the world size {world}")
    local = batch // world

    torch.manual_seed(experiment["run"]["seed"] + rank)
    model = loom_ref.DiTStage(model_config, diffusion)
    if world > 1:
        # Same start on every rank (DDP broadcasts rank 0's weights); buckets as loom's.
        model = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=experiment["dist"]["bucket_mb"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim["lr"], betas=tuple(optim["betas"]), eps=optim["eps"],
                                  weight_decay=optim["weight_decay"])

    # A fixed synthetic batch (loom's bench reuses one real batch; the cost is the same): pixels in [-1, 1], real token ids
    # (ids 0..2 are padding, unknown and start), full masks.
    C, S, L = model_config["channels"], model_config["image_size"], model_config["max_tokens"]
    pixels = torch.rand(local, C, S, S) * 2 - 1
    tokens = torch.randint(3, model_config["text"]["vocab"], (local, L))
    mask = torch.ones(local, L, dtype=torch.bool)

    def step():
        # Per step, as DiTStage::Loss draws them: timesteps, noise, caption dropout.
        t = torch.randint(0, diffusion["timesteps"], (local,))
        noise = torch.randn_like(pixels)
        tok, msk = tokens.clone(), mask.clone()
        drop = torch.rand(local) < caption_dropout
        if drop.any():
            sub_tok, sub_msk = tok[drop], msk[drop]  # copies (boolean indexing), written back
            loom_ref.empty_caption(sub_tok, sub_msk)
            tok[drop], msk[drop] = sub_tok, sub_msk
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses = model(pixels, t, noise, tok, msk)  # [local]
        losses.float().mean().backward()
        if optim["clip_grad"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim["clip_grad"])
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if world > 1:
        dist.barrier()
    seconds = (time.perf_counter() - start) / args.steps

    if rank == 0:
        parameters = sum(p.numel() for p in model.parameters())
        print(f"step {seconds * 1000:.1f} ms, {batch / seconds:.1f} samples/s, {parameters} parameters, "
              f"{world} process(es) x {threads} thread(s), torch {torch.__version__}", file=sys.stderr)
        print(json.dumps({
            "impl": "pytorch",
            "config": args.config,
            "batch": batch,
            "world": world,
            "threads": threads,
            "precision": experiment["train"]["precision"],
            "step_ms": seconds * 1000,
            "samples_per_s": batch / seconds,
            "torch": torch.__version__,
        }))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
