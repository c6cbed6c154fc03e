#!/usr/bin/env python3
"""Official LQVG forward time on this CPU (the peer of `cargo run --release -p pslg-grounding --example
lqvg_speed`): the released architecture (ResNet-50, RoBERTa-base-sized text encoder, d 256, 4+4 layers,
10 queries) with random weights, one 800x800 image and a 10-token sentence, 2 threads.

Usage: python3 scripts/lqvg_speed_torch.py LQVG_CHECKOUT [REPS]
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lqvg_reference import build  # noqa: E402


def main():
    lqvg = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(2)
    model, args, text_config, cfg = build(lqvg, "full")
    from util.misc import NestedTensor

    ids = torch.tensor([[0, 627, 1104, 3521, 6094, 23, 5, 2576, 314, 2]])
    mask = torch.ones_like(ids)

    def forward_text(captions, device):
        hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return NestedTensor(model.resizer(hidden), mask.ne(1).bool())

    model.forward_text = forward_text
    x = torch.randn(1, 1, 3, 800, 800)
    target = [{"size": torch.tensor([800, 800])}]
    with torch.no_grad():
        model(x, ["unused"], target)  # warm-up
        for _ in range(reps):
            t = time.perf_counter()
            model(x, ["unused"], target)
            print(f"pytorch lqvg forward 800x800: {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
