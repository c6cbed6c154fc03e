#!/usr/bin/env python3
"""Writes crates/checkpoint/tests/data/views.pth: a small training-style checkpoint ({"model": state_dict,
"epoch": 3}) whose tensors exercise pslg-checkpoint's PyTorch reader: a Linear weight stored as a transposed
view (non-contiguous strides), a bias that is a slice of a larger storage (storage offset), two tensors
sharing one storage, a LayerNorm (weight/bias named gamma/beta in Burn) and an int64 buffer. Every value is
`arange`-based, so the test states what it expects without reading PyTorch.
Usage: python3 scripts/checkpoint_fixture.py [OUT]
"""
import sys

import torch

out = sys.argv[1] if len(sys.argv) > 1 else "crates/checkpoint/tests/data/views.pth"
base = torch.arange(12, dtype=torch.float32).reshape(4, 3)  # storage 0..11
shared = torch.arange(100, 110, dtype=torch.float32)  # storage 100..109
sd = {
    # Linear(in 4, out 3): PyTorch weight [out, in] = base.t(), a non-contiguous view of base's storage.
    "lin.weight": base.t(),
    # bias = shared[2:5] (storage offset 2), and norm.bias = shared[5:7] of the same storage.
    "lin.bias": shared[2:5],
    "norm.weight": torch.tensor([0.5, 1.5], dtype=torch.float32),
    "norm.bias": shared[5:7],
    "counter": torch.tensor([7, -8, 9], dtype=torch.int64),
}
assert not sd["lin.weight"].is_contiguous()
torch.save({"model": sd, "epoch": 3}, out)
print("wrote", out)
