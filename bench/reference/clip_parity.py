"""Checks the PyTorch reference CLIP (clip_ref.py) against loom's: loads loom's weights and
inputs, recomputes both embeddings, the contrastive loss and every parameter's gradient,
and counts the towers' forward FLOPs with torch's flop counter.

    python bench/reference/clip_parity.py --dir DIR [--tolerance 1e-5]

DIR holds config.json (ClipConfig's fields), params.safetensors (loom's parameters by
name), inputs.safetensors (images, tokens, mask, keys) and expected.safetensors
("image", "text", "loss", "grad/<name>"). Errors are ||a - b|| / ||b|| (b = loom's); for
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

from clip_ref import Clip, clip_loss
from parity_util import check_grads, rel_err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    torch.manual_seed(0)
    with open(os.path.join(args.dir, "config.json")) as f:
        config = json.load(f)
    params = load_file(os.path.join(args.dir, "params.safetensors"))
    inputs = load_file(os.path.join(args.dir, "inputs.safetensors"))
    expected = load_file(os.path.join(args.dir, "expected.safetensors"))
    model = Clip(config).double()
    names = dict(model.named_parameters())
    missing = sorted(set(names) ^ set(params))
    if missing:
        print(f"parameter names differ between loom and the reference: {missing}")
        print(json.dumps({"ok": False, "names_differ": missing}))
        return 1
    model.load_state_dict({k: v.double() for k, v in params.items()})
    images, tokens = inputs["images"].double(), inputs["tokens"]
    mask, keys = inputs["mask"].bool(), inputs["keys"]
    image, text = model.embed(images, tokens, mask)
    loss = clip_loss(image, text, keys, model.logit_scale)
    loss.backward()
    failures = []
    report = {"image_rel_err": rel_err(image, expected["image"]), "text_rel_err": rel_err(text, expected["text"]),
              "loss_rel_err": rel_err(loss.reshape(1), expected["loss"])}
    for key in ("image_rel_err", "text_rel_err", "loss_rel_err"):
        if report[key] > args.tolerance:
            failures.append(f"{key} {report[key]:.3g} > {args.tolerance}")
    report.update(check_grads(model, expected, args.tolerance, failures))
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model.image(images)
            model.text(tokens, mask)
    report["forward_flops"] = counter.get_total_flops()
    report["ok"] = not failures
    for line in failures:
        print(line)
    print(json.dumps(report))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
