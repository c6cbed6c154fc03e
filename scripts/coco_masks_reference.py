#!/usr/bin/env python3
"""pycocotools reference for pslg's COCO mask decoding: random polygons (several per object, some outside
the image) and their masks as pycocotools decodes them (`frPyObjects` + `merge` + `decode`), plus the
compressed RLE strings of those masks. Writes tests/fixtures/coco_masks.json.

Usage: python3 scripts/coco_masks_reference.py [OUT]   (pip install pycocotools numpy)
"""
import json
import sys

import numpy as np
import pycocotools.mask as mask_util


def main(out):
    rng = np.random.default_rng(5)
    cases = []
    for i in range(12):
        h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(3, 8))
            cx, cy = rng.uniform(-3, w + 3), rng.uniform(-3, h + 3)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            r = rng.uniform(1, max(h, w) / 2, k)
            xy = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1).round(2).ravel().tolist()
            polys.append(xy)
        rles = mask_util.frPyObjects(polys, h, w)
        rle = mask_util.merge(rles)
        m = mask_util.decode(rle)
        cases.append({
            "height": h, "width": w, "polygons": polys,
            "mask_rows": ["".join("1" if v else "0" for v in row) for row in m],
            "rle_string": rle["counts"].decode("ascii"),
        })
    with open(out, "w") as f:
        json.dump({"cases": cases}, f)
    print(f"{len(cases)} cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/coco_masks.json")
