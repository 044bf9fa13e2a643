"""Checks the PyTorch reference U-Net (unet_ref.py) against loom's: loads loom's weights
and inputs, recomputes the output, a loss sum(out * w) and every parameter's gradient,
and counts the forward FLOPs with torch's flop counter; then the ldm stage's objective
(loom_ref's GaussianDiffusion: cosine schedule, v-prediction, min-SNR weighting) on a
second network of the same config whose embedding is the masked mean of the text tokens
(params "pooled/<name>"), the low-resolution channel x[:, 4:] noised to the augmentation
level aug_t and concatenated to x_t, and its gradients.

    python bench/reference/unet_parity.py --dir DIR [--tolerance 1e-5]

DIR holds config.json (UNetConfig's fields), params.safetensors (loom's parameters by
name), inputs.safetensors (x, t, context, mask, embed, aug_t, w, x0, noise, low_noise) and expected.safetensors
("out", "loss", "grad/<name>", "objective", "objective_grad/<name>"). Errors are ||a - b|| / ||b|| (b = loom's); for
attention key biases (zero gradient in exact arithmetic) ||a - b|| / ||whole gradient||.
Prints one line per failure, then a JSON object as the last line; exits 1 on a failure.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from loom_ref import GaussianDiffusion
from unet_ref import UNet


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def compare_grads(net, expected, prefix, errors, failures):
    """Relative errors of every parameter's gradient against loom's under `prefix`."""
    grads = {n[len(prefix):]: g for n, g in expected.items() if n.startswith(prefix)}
    whole = sum(g.double().pow(2).sum().item() for g in grads.values()) ** 0.5
    for name, p in net.named_parameters():
        if name not in grads:
            failures.append(f"{prefix}{name}: loom sent none")
        elif name.endswith(".k.bias"):
            errors[prefix + name] = (p.grad.double() - grads[name].double()).norm().item() / max(whole, 1e-12)
        else:
            errors[prefix + name] = rel_err(p.grad, grads[name])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    with open(os.path.join(args.dir, "config.json")) as f:
        config = json.load(f)
    net = UNet(config)
    params = load_file(os.path.join(args.dir, "params.safetensors"))
    failures = []
    own = {n: p for n, p in params.items() if not n.startswith("pooled/")}
    missing, unexpected = net.load_state_dict(own, strict=False)
    if missing or unexpected:
        failures.append(f"names differ: missing {missing}, unexpected {unexpected}")
    pooled_net = UNet(dict(config, embed_dim=config["context_dim"], embed_tokens=0))
    pooled = {n[len("pooled/"):]: p for n, p in params.items() if n.startswith("pooled/")}
    missing, unexpected = pooled_net.load_state_dict(pooled, strict=False)
    if missing or unexpected:
        failures.append(f"pooled network's names differ: missing {missing}, unexpected {unexpected}")
    inputs = load_file(os.path.join(args.dir, "inputs.safetensors"))
    expected = load_file(os.path.join(args.dir, "expected.safetensors"))
    x, t, context, mask, w = inputs["x"], inputs["t"], inputs["context"], inputs["mask"].bool(), inputs["w"]
    embed, aug_t = inputs.get("embed"), inputs.get("aug_t")
    out = net(x, t, context, mask, embed, aug_t)
    loss = (out * w).sum()
    loss.backward()
    errors = {"out": rel_err(out, expected["out"]), "loss": rel_err(loss.reshape(1), expected["loss"])}
    compare_grads(net, expected, "grad/", errors, failures)
    process = GaussianDiffusion("cosine", 1000, "v", "min_snr", 5.0)
    low = process.q_sample(x[:, 4:], aug_t, inputs["low_noise"])
    keep = mask.float().unsqueeze(-1)
    text = (context * keep).sum(1) / keep.sum(1).clamp(min=1)
    objective = process.training_losses(
        lambda x_t, step: pooled_net(torch.cat([x_t, low], 1), step, context, mask, text, aug_t),
        inputs["x0"], t, inputs["noise"]).mean()
    objective.backward()
    errors["objective"] = rel_err(objective.reshape(1), expected["objective"])
    compare_grads(pooled_net, expected, "objective_grad/", errors, failures)
    for name, err in errors.items():
        if not err <= args.tolerance:
            failures.append(f"{name}: relative error {err:.3e} > {args.tolerance:.0e}")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x[:1], t[:1], context[:1], mask[:1], None if embed is None else embed[:1],
            None if aug_t is None else aug_t[:1])
    grad_errors = {k: v for k, v in errors.items() if k.startswith("grad/")}
    worst = max(grad_errors, key=grad_errors.get) if grad_errors else ""
    objective_errors = {k: v for k, v in errors.items() if k.startswith("objective_grad/")}
    worst_objective = max(objective_errors, key=objective_errors.get) if objective_errors else ""
    for line in failures:
        print("FAIL " + line)
    print(json.dumps({"ok": not failures, "out_rel_err": errors["out"], "loss_rel_err": errors["loss"],
                      "grads_checked": len(grad_errors), "max_grad_rel_err": grad_errors.get(worst),
                      "worst_grad": worst[len("grad/"):], "objective_rel_err": errors["objective"],
                      "objective_grads_checked": len(objective_errors),
                      "max_objective_grad_rel_err": objective_errors.get(worst_objective),
                      "worst_objective_grad": worst_objective[len("objective_grad/"):], "forward_flops": counter.get_total_flops(),
                      "parameters": sum(p.numel() for p in net.parameters())}))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
