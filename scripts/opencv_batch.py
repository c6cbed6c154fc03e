#!/usr/bin/env python3
"""The OpenCV peer of `pslg batch`, as a whole process: read a box -> mask case file, decode each image once,
run cv2.grabCut (rect init, 5 iterations, one thread) on the box's context crop, write every mask as a
full-size 0/255 PNG. Same crop rule as ../shared/tools/boxmask_eval.py (box + max(16, longer side / 2)).

    python3 scripts/opencv_batch.py CASES.jsonl OUT_DIR [--iters 5]

Prints one JSON line: cases, wall seconds of the run after the imports, the grabCut-only total and median.
Used by scripts/compare_opencv.sh to time both whole processes side by side.
"""
import json
import os
import sys
import time

import cv2
import numpy as np


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    cases_path, out = sys.argv[1], sys.argv[2]
    iters = int(sys.argv[sys.argv.index("--iters") + 1]) if "--iters" in sys.argv else 5
    t0 = time.perf_counter()
    cv2.setNumThreads(1)
    root = os.path.dirname(os.path.abspath(cases_path))
    os.makedirs(out, exist_ok=True)
    cached, img, cuts, n = None, None, [], 0
    with open(cases_path) as f:
        for line in f:
            if not line.strip():
                continue
            c = json.loads(line)
            if c["image"] != cached:
                img = cv2.imread(os.path.join(root, c["image"]), cv2.IMREAD_COLOR)
                if img is None:
                    raise SystemExit(f"cannot read {c['image']}")
                cached = c["image"]
            h, w = img.shape[:2]
            x1, y1, x2, y2 = c["box"]
            mg = max(16, max(x2 - x1, y2 - y1) // 2)
            cx1, cy1, cx2, cy2 = max(0, x1 - mg), max(0, y1 - mg), min(w, x2 + mg), min(h, y2 + mg)
            crop = np.ascontiguousarray(img[cy1:cy2, cx1:cx2])
            m = np.zeros(crop.shape[:2], np.uint8)
            bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
            cv2.setRNGSeed(0)
            t = time.perf_counter()
            try:
                cv2.grabCut(crop, m, (x1 - cx1, y1 - cy1, x2 - x1, y2 - y1), bgd, fgd, iters,
                            cv2.GC_INIT_WITH_RECT)
            except cv2.error:
                m[:] = 0
            cuts.append(time.perf_counter() - t)
            full = np.zeros((h, w), np.uint8)
            full[cy1:cy2, cx1:cx2] = np.where((m == 1) | (m == 3), 255, 0)
            cv2.imwrite(os.path.join(out, c["id"] + ".png"), full)
            n += 1
    print(json.dumps({"cases": n, "wall_s": round(time.perf_counter() - t0, 3),
                      "grabcut_s": round(sum(cuts), 3),
                      "median_ms": round(1000 * float(np.median(cuts)), 2) if cuts else 0.0,
                      "iters": iters}))


if __name__ == "__main__":
    main()
