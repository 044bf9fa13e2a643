"""Checks the PyTorch reference of the vae stage against loom: loads a `loom export` of a
vae, recomputes the autoencoder loss and every parameter's gradient on the images and
posterior draws loom used, and compares them with loom's values.

    python bench/reference/vae_parity.py --export DIR --inputs inputs.safetensors \\
        --expected expected.safetensors [--tolerance 1e-5]

inputs.safetensors: x [B, C, H, W] in [-1, 1], eps [B, z, h, w]. expected.safetensors:
"loss" [1], "rec" [1], "kl" [1] and "grad/<name>" for every parameter of the
autoencoder. Errors are ||a - b|| / ||b|| (L2, b = loom's); for attention key biases,
whose gradient is 0 in exact arithmetic, ||a - b|| / ||whole gradient||. Prints one line per failure,
then a JSON object as the last line; exits 1 when a name or a tensor disagrees.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

import vae_ref


def rel_err(actual, expected):
    a, b = actual.detach().double(), expected.detach().double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    failures = []

    stored = load_file(os.path.join(args.export, "model.safetensors"))
    model, config = vae_ref.load_export(args.export)
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(stored))
    if missing:
        failures.append(f"missing from the export: {', '.join(missing)}")

    inputs, expected = load_file(args.inputs), load_file(args.expected)
    loss, parts = model.autoencoder_loss(inputs["x"].float(), inputs["eps"].float())
    loss.backward()
    errors = {"loss": rel_err(loss.reshape(1), expected["loss"]),
              "rec": rel_err(parts["rec"].reshape(1), expected["rec"]),
              "kl": rel_err(parts["kl"].reshape(1), expected["kl"])}
    grads = {n[len("grad/"):]: g for n, g in expected.items() if n.startswith("grad/")}
    params = dict(model.named_parameters())
    if set(grads) != set(params):
        failures.append(f"gradients != reference parameters: missing {sorted(set(params) - set(grads))}, "
                        f"unexpected {sorted(set(grads) - set(params))}")
    # An attention key bias adds the same q.b to every logit of a query's row, which softmax
    # ignores: its true gradient is 0 and autograd returns rounding noise, so its error is
    # measured against the norm of the whole gradient instead of its own.
    whole = sum(g.double().pow(2).sum().item() for g in grads.values()) ** 0.5
    for name in sorted(set(grads) & set(params)):
        g = params[name].grad
        if g is None:
            failures.append(f"grad/{name}: the reference has no gradient")
        elif name.endswith(".k.bias"):
            errors["grad/" + name] = (g.double() - grads[name].double()).norm().item() / max(whole, 1e-12)
        else:
            errors["grad/" + name] = rel_err(g, grads[name])
    for name, err in errors.items():
        if not err <= args.tolerance:  # also catches NaN
            failures.append(f"{name}: relative error {err:.3e} > {args.tolerance:.0e}")
    grad_errors = {k: v for k, v in errors.items() if k.startswith("grad/")}
    worst = max(grad_errors, key=grad_errors.get) if grad_errors else ""
    for line in failures:
        print("FAIL " + line)
    print(json.dumps({"ok": not failures, "names_match": not missing, "loss": loss.item(),
                      "loss_rel_err": errors["loss"], "rec_rel_err": errors["rec"], "kl_rel_err": errors["kl"],
                      "grads_checked": len(grad_errors), "max_grad_rel_err": grad_errors[worst] if worst else None,
                      "worst_grad": worst[len("grad/"):]}))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
