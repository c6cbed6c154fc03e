#!/usr/bin/env python3
"""Times the official SAM (segment-anything 1.0, PyTorch CPU) like `cargo run --release -p pslg-sam --example
sam_speed`: image encoder on a 640x480 image (set_image), then prompt encoder + mask decoder + postprocess
(predict with a box and a point). Prints one JSON line. Usage: sam_speed_torch.py [vit_b|vit_l|vit_h|vit_t] [ROUNDS]
vit_t is MobileSAM (the official `mobile_sam` package, PyPI `mobilesam-mirror`).
"""
import json
import sys
import time

import numpy as np
import torch
variant = sys.argv[1] if len(sys.argv) > 1 else "vit_b"
if variant == "vit_t":
    import warnings
    warnings.filterwarnings("ignore")
    from mobile_sam import SamPredictor, sam_model_registry
else:
    from segment_anything import SamPredictor, sam_model_registry

rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
torch.set_grad_enabled(False)
model = sam_model_registry[variant]().eval()
yy, xx = np.mgrid[0:480, 0:640]
image = np.stack([xx % 251, yy % 241, (xx + yy) % 239], -1).astype(np.uint8)
p = SamPredictor(model)
enc = []
for _ in range(rounds):
    t = time.perf_counter()
    p.set_image(image)
    enc.append(time.perf_counter() - t)
dec = []
box = np.array([100, 80, 400, 300], dtype=np.float32)
pt = np.array([[250, 190]], dtype=np.float32)
for _ in range(rounds * 10):
    t = time.perf_counter()
    p.predict(pt, np.array([1]), box, multimask_output=False)
    dec.append(time.perf_counter() - t)
enc.sort()
dec.sort()
print(json.dumps(dict(model=variant, threads=torch.get_num_threads(), encoder_best_s=round(enc[0], 3),
                      encoder_median_s=round(enc[len(enc) // 2], 3), predict_best_ms=round(dec[0] * 1e3, 2),
                      predict_median_ms=round(dec[len(dec) // 2] * 1e3, 2))))
