"""Checks the PyTorch reference against loom: loads a `loom export`, recomputes the loss and
every parameter's gradient on the inputs loom used, and compares them with loom's values.

    python bench/reference/parity.py --export DIR --inputs inputs.safetensors \
        --expected expected.safetensors [--tolerance 1e-5]

inputs.safetensors: x0 [B, C, H, W], t int64 [B], noise like x0, tokens int64 [B, L],
mask bool [B, L]. expected.safetensors: "loss" [1] (the batch mean), optionally "losses"
[B], and "grad/<name>" for every parameter. The error of a tensor is ||a - b|| / ||b||
(L2, b = loom's); for attention key biases, whose gradient is 0 in exact arithmetic,
||a - b|| / ||whole gradient||. Prints one line per failure, then a JSON object as the
last line; exits 1 when a name or a tensor disagrees.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

import loom_ref


def rel_err(actual, expected):
    a, b = actual.detach().double(), expected.detach().double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def report(failures, **fields):
    """Prints the failures, then the summary as the last line; returns the exit code."""
    for line in failures:
        print("FAIL " + line)
    print(json.dumps({"ok": not failures, **fields}))
    return 0 if not failures else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="directory written by `loom export`")
    parser.add_argument("--inputs", required=True, help="safetensors with x0, t, noise, tokens, mask")
    parser.add_argument("--expected", required=True, help="safetensors with loss and grad/<name>")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest relative L2 error allowed")
    args = parser.parse_args()
    failures = []

    # The export's names must be exactly the reference's parameters and buffers, by the
    # plain safetensors loader any user would call.
    stored = load_file(os.path.join(args.export, "model.safetensors"))
    with open(os.path.join(args.export, "config.json")) as f:
        wanted = {name: tuple(v.shape) for name, v in loom_ref.stage_from_config(json.load(f)).state_dict().items()}
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    wrong_shape = sorted(n for n in set(wanted) & set(stored) if tuple(stored[n].shape) != wanted[n])
    for label, names in (("missing from the export", missing), ("not in the reference", unexpected),
                         ("shape differs", wrong_shape)):
        if names:
            failures.append(f"{label}: {', '.join(names)}")
    if failures:
        return report(failures, names_match=False, tensors_in_export=len(stored))
    model, config = loom_ref.load_export(args.export)

    # The exported position table next to the one the reference computes. Reported, not
    # checked: the forward uses the loaded buffer either way.
    m = config["model"]
    computed = loom_ref.sincos_positions_2d(m["width"], m["image_size"] // m["patch"])
    pos_diff = (model.dit.pos_embed - computed).abs().max().item()

    inputs = load_file(args.inputs)
    expected = load_file(args.expected)
    losses = model(inputs["x0"].float(), inputs["t"].long(), inputs["noise"].float(), inputs["tokens"].long(),
                   inputs["mask"].bool())  # [B]
    loss = losses.mean()
    loss.backward()

    errors = {"loss": rel_err(loss.reshape(1), expected["loss"])}
    if "losses" in expected:
        errors["losses"] = rel_err(losses, expected["losses"])
    grads = {name[len("grad/"):]: g for name, g in expected.items() if name.startswith("grad/")}
    params = dict(model.named_parameters())
    if set(grads) != set(params):
        failures.append("gradients in expected != reference parameters: missing "
                        f"{sorted(set(params) - set(grads))}, unexpected {sorted(set(grads) - set(params))}")
    # A key bias adds the same q.b to every logit of a query's row, which softmax ignores:
    # its true gradient is 0 and autograd returns rounding noise (~1e-11), so its error is
    # measured against the norm of the whole gradient instead of its own.
    whole = sum(g.double().pow(2).sum().item() for g in grads.values()) ** 0.5
    for name in sorted(set(grads) & set(params)):
        p = params[name]
        if p.grad is None:
            failures.append(f"grad/{name}: the reference has no gradient")
        elif name.endswith(".k.bias"):
            errors["grad/" + name] = (p.grad.double() - grads[name].double()).norm().item() / max(whole, 1e-12)
        else:
            errors["grad/" + name] = rel_err(p.grad, grads[name])
    for name, err in errors.items():
        if not err <= args.tolerance:  # also catches NaN
            failures.append(f"{name}: relative error {err:.3e} > {args.tolerance:.0e}")

    grad_errors = {k: v for k, v in errors.items() if k.startswith("grad/")}
    worst = max(grad_errors, key=grad_errors.get) if grad_errors else ""
    return report(
        failures,
        names_match=True,
        tensors_in_export=len(stored),
        loss=loss.item(),
        loss_rel_err=errors["loss"],
        losses_rel_err=errors.get("losses"),
        grads_checked=len(grad_errors),
        max_grad_rel_err=grad_errors[worst] if worst else None,
        worst_grad=worst[len("grad/"):],
        pos_embed_max_abs_diff=pos_diff,
        step=config.get("step"),
        weights=config.get("weights"),
    )


if __name__ == "__main__":
    sys.exit(main())
