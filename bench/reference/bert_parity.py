"""Checks loom's BERT text encoder against Hugging Face's: tokenizes captions with
transformers' tokenizer for the checkpoint, compares the ids and masks with loom's, runs
transformers' BertModel on loom's ids and compares every real token's last hidden state.

    python bench/reference/bert_parity.py --model DIR --captions captions.json \\
        --loom loom.safetensors [--max-tokens 40] [--tolerance 1e-5]

captions.json: a JSON list of strings. loom.safetensors: "ids" and "mask" [N, L] int64,
"hidden" [N, L, D] float32 (loom's outputs). A token's error is ||a - b|| / ||b|| (L2 over
its D values, b = transformers'). Prints one line per disagreement (at most 20), then a
JSON object as the last line; exits 1 when an id or a hidden state disagrees.
"""
import argparse
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertModel


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--captions", required=True)
    parser.add_argument("--loom", required=True)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()

    with open(args.captions, encoding="utf-8") as f:
        captions = json.load(f)
    loom = load_file(args.loom)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    want = tokenizer(captions, padding="max_length", truncation=True, max_length=args.max_tokens,
                     return_tensors="pt")
    failures = []
    ids_equal = 0
    for i, caption in enumerate(captions):
        same = torch.equal(want["input_ids"][i], loom["ids"][i]) and \
            torch.equal(want["attention_mask"][i].long(), loom["mask"][i])
        ids_equal += int(same)
        if not same and len(failures) < 20:
            failures.append(f"caption {i} {caption!r}: transformers "
                            f"{tokenizer.convert_ids_to_tokens(want['input_ids'][i].tolist())} loom "
                            f"{tokenizer.convert_ids_to_tokens(loom['ids'][i].tolist())}")

    model = BertModel.from_pretrained(args.model, add_pooling_layer=False).eval().float()
    with torch.no_grad():
        hidden = model(input_ids=loom["ids"], attention_mask=loom["mask"]).last_hidden_state
    real = loom["mask"].bool()
    a, b = loom["hidden"].double()[real], hidden.double()[real]
    errors = (a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-12)
    worst = errors.max().item()
    if worst > args.tolerance:
        failures.append(f"hidden states: worst token error {worst:.3g} > {args.tolerance:g}")
    for line in failures:
        print(line)
    print(json.dumps({"captions": len(captions), "ids_equal": ids_equal,
                      "unknown_pieces": int((loom["ids"] == tokenizer.unk_token_id).sum()),
                      "tokens_checked": int(real.sum()), "max_token_rel_err": worst,
                      "mean_token_rel_err": errors.mean().item(), "ok": not failures}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
