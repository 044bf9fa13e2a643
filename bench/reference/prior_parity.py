"""Checks the PyTorch reference diffusion prior (clip_ref.PriorNet) against loom's: loads
loom's weights and inputs, recomputes the network's output and the prior's training loss
(loom_ref's GaussianDiffusion: cosine schedule, x0 prediction, uniform weight), every
parameter's gradient, and the forward FLOPs with torch's flop counter.

    python bench/reference/prior_parity.py --dir DIR [--tolerance 1e-5]

DIR holds config.json (PriorConfig's fields), params.safetensors, inputs.safetensors
(x_t, t, text_embed, tokens, mask, dropped, x0, noise) and expected.safetensors ("out",
"loss", "grad/<name>"). Errors are ||a - b|| / ||b|| (b = loom's); for attention key
biases (zero gradient in exact arithmetic) ||a - b|| / ||whole gradient||. Prints one line
per failure, then a JSON object as the last line; exits 1 on a failure.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from clip_ref import PriorNet
from loom_ref import GaussianDiffusion
from parity_util import check_grads, rel_err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    with open(os.path.join(args.dir, "config.json")) as f:
        config = json.load(f)
    params = load_file(os.path.join(args.dir, "params.safetensors"))
    inputs = load_file(os.path.join(args.dir, "inputs.safetensors"))
    expected = load_file(os.path.join(args.dir, "expected.safetensors"))
    net = PriorNet(config)
    names = dict(net.named_parameters())
    differ = sorted(set(names) ^ set(params))
    if differ:
        print(f"parameter names differ between loom and the reference: {differ}")
        print(json.dumps({"ok": False, "names_differ": differ}))
        return 1
    net.load_state_dict(params)  # float32, as loom computes
    i = inputs
    mask, dropped = i["mask"].bool(), i["dropped"].bool()
    out = net(i["x_t"], i["t"], i["text_embed"], i["tokens"], mask, dropped)
    diffusion = GaussianDiffusion("cosine", 1000, "x0", "uniform")
    model = lambda x, t: net(x, t, i["text_embed"], i["tokens"], mask, dropped)
    loss = diffusion.training_losses(model, i["x0"], i["t"], i["noise"]).mean()
    loss.backward()
    failures = []
    report = {"out_rel_err": rel_err(out, expected["out"]), "loss_rel_err": rel_err(loss.reshape(1), expected["loss"])}
    for key in ("out_rel_err", "loss_rel_err"):
        if report[key] > args.tolerance:
            failures.append(f"{key} {report[key]:.3g} > {args.tolerance}")
    report.update(check_grads(net, expected, args.tolerance, failures))
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            net(i["x_t"], i["t"], i["text_embed"], i["tokens"], mask, dropped)
    report["forward_flops"] = counter.get_total_flops()
    report["ok"] = not failures
    for line in failures:
        print(line)
    print(json.dumps(report))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
