#!/usr/bin/env python3
"""The PyTorch peer of `examples/load_speed.rs`: `torch.load` of a checkpoint onto the CPU (the whole file into
tensors, as the official SAM and LQVG code load theirs), ROUNDS times; one JSON line with the best and median.
Usage: load_speed_torch.py CHECKPOINT [ROUNDS]
"""
import json
import os
import sys
import time

import torch

path = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
times = []
for _ in range(max(rounds, 1)):
    t = time.perf_counter()
    sd = torch.load(path, map_location="cpu", weights_only=False)
    times.append(time.perf_counter() - t)
    del sd
times.sort()
print(json.dumps(dict(side="torch.load", file_mb=round(os.path.getsize(path) / 1e6, 1),
                      threads=torch.get_num_threads(), load_best_s=round(times[0], 3),
                      load_median_s=round(times[len(times) // 2], 3))))
