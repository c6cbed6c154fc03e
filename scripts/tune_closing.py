#!/usr/bin/env python3
"""Cross-validates the closing of the weight-free box path (docs/quality.md, "Closing").

Input: a `pslg batch` output directory made with `--close-radius 0` (the chosen masks, holes filled, not
closed). For each (relative radius, pixel cap) of a grid it closes every mask with a Euclidean disk of radius
min(cap, round(rel * longer box side)), clips it to the box, and scores it on the two halves of the dev set
(images sorted by name, alternately). It prints the grid's best setting on each half with its held-out
score, then the settings whose worse half is best.

    pslg batch --cases DEV/cases.jsonl --out-dir raw --close-radius 0
    python3 scripts/tune_closing.py DEV raw
"""
import json
import sys

import cv2
import numpy as np


def disk(r):
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def close(case, mask, rel, cap):
    x0, y0, x1, y1 = case["box"]
    r = int(min(cap, round(rel * max(x1 - x0, y1 - y0))))
    if r < 1:
        return mask
    # OpenCV's default border leaves the outside of the image neutral, as imageproc's distance transform does.
    closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, disk(r)) > 0
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = closed[y0:y1, x0:x1]
    return out


def main():
    dev, pred = sys.argv[1], sys.argv[2]
    cases = [json.loads(line) for line in open(f"{dev}/cases.jsonl")]
    images = sorted({c["image"] for c in cases})
    half = {im: i % 2 for i, im in enumerate(images)}
    data = [(c, cv2.imread(f"{pred}/{c['id']}.png", 0) > 0, cv2.imread(f"{dev}/{c['mask']}", 0) > 0)
            for c in cases]

    def score(rel, cap):
        per = {0: [], 1: []}
        inter = {0: 0, 1: 0}
        union = {0: 0, 1: 0}
        for c, p, g in data:
            q = close(c, p, rel, cap)
            h = half[c["image"]]
            i, u = int((q & g).sum()), int((q | g).sum())
            per[h].append(i / u)
            inter[h] += i
            union[h] += u
        out = {}
        for h in (0, 1):
            v = np.array(per[h])
            out[h] = (100 * v.mean(), 100 * inter[h] / union[h], 100 * (v >= 0.5).mean(), 100 * (v >= 0.9).mean())
        v = np.array(per[0] + per[1])
        out["all"] = (100 * v.mean(), 100 * (inter[0] + inter[1]) / (union[0] + union[1]),
                      100 * (v >= 0.5).mean(), 100 * (v >= 0.9).mean())
        return out

    grid = [(rel, cap) for rel in (0.0, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2) for cap in (6, 8, 10, 12, 15, 20, 1000)]
    results = [((rel, cap), score(rel, cap)) for rel, cap in grid]
    fmt = "mIoU {:.2f} oIoU {:.2f} Pr@0.5 {:.2f} Pr@0.9 {:.2f}".format
    for h in (0, 1):
        (rel, cap), s = max(results, key=lambda r: r[1][h][0])
        print(f"tuned on h{h}: rel {rel} cap {cap}: tuned half {fmt(*s[h])}; held-out h{1 - h} {fmt(*s[1 - h])}")
    print("by the worse half's mIoU:")
    results.sort(key=lambda r: -min(r[1][0][0], r[1][1][0]))
    for (rel, cap), s in results[:10]:
        print(f"rel {rel:<6} cap {cap:<5} all {fmt(*s['all'])} | h0 {fmt(*s[0])} | h1 {fmt(*s[1])}")


if __name__ == "__main__":
    main()
