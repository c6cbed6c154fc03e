#!/usr/bin/env python3
"""Reference outputs of the official LQVG code (github.com/LANMNG/LQVG, commit 6e26403) on random weights,
for the Rust port's parity tests.

Usage: python3 scripts/lqvg_reference.py LQVG_CHECKOUT {tiny,full,ops} OUT_DIR

`ops` writes the operator fixtures instead: the deformable-attention core (`ms_deform_attn_core_pytorch`) on
random values, locations (some outside [0, 1]) and weights, and the official `letterbox` (cv2 INTER_AREA) of
random images covering every resize path (same size, integer shrink by 2 and 3, fractional shrink,
enlargement).

Needs torch, torchvision, transformers, einops, opencv-python-headless, scipy. The official code is imported
from LQVG_CHECKOUT unchanged; only what cannot run on a CPU without downloads is patched here, at run time:
  * the CUDA extension `MultiScaleDeformableAttention` is replaced by the official pure-PyTorch fallback
    `ms_deform_attn_core_pytorch` (same file);
  * the ResNet is built without pretrained weights (`pretrained=False`);
  * RoBERTa is built from a `RobertaConfig` (random weights, eager attention) instead of downloading
    `roberta-base`; the text is fed as token ids padded like `batch_encode_plus(padding="longest")`.
The `tiny` configuration also narrows the ResNet (torchvision's own `ResNet._make_layer` with smaller widths),
the text encoder and the transformer so the fixture is small enough to commit; `full` is the released
architecture (ResNet-50, RoBERTa-sized text encoder, d 256, 4+4 layers, 10 queries, 800x800 input).

Every parameter and buffer is perturbed (default init leaves norms, frozen BatchNorm statistics, sampling
offsets and box heads constant), so every weight matters. Writes OUT_DIR/checkpoint.pth ({"model": state
dict, "args": argparse.Namespace, "epoch": 0}, like the official training checkpoints), text_config.json,
image.png (the original image), letterboxed.png, input.npy (the normalised input), case_<i>.json (token ids,
attention mask, box in original pixels, letterbox) and case_<i>_{logits,boxes,memory,text}.npy.
"""
import argparse
import json
import os
import sys
import types

import numpy as np
import torch


def stub_modules():
    """Modules imported at module level by files of the official code that inference never uses."""
    for name in ["MultiScaleDeformableAttention", "fvcore", "fvcore.nn", "fvcore.nn.weight_init",
                 "pycocotools", "pycocotools.mask"]:
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["fvcore.nn"].weight_init = sys.modules["fvcore.nn.weight_init"]


CONFIGS = {
    "tiny": dict(hidden_dim=32, dim_feedforward=64, enc_layers=2, dec_layers=2, num_queries=3,
                 enc_n_points=2, dec_n_points=3, input_size=128, image_wh=(100, 75),
                 text=dict(vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=40, type_vocab_size=1,
                           layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2),
                 resnet=dict(stem=8, planes=[4, 8, 16, 32], blocks=[1, 2, 1, 1])),
    "full": dict(hidden_dim=256, dim_feedforward=2048, enc_layers=4, dec_layers=4, num_queries=10,
                 enc_n_points=4, dec_n_points=4, input_size=800, image_wh=(640, 480),
                 text=dict(), resnet=None),
}

# Token ids (BOS 0, EOS 2, PAD 1): one sentence alone, then a batch of two with padding.
CASES = {
    "tiny": [[[0, 17, 45, 8, 90, 33, 2]], [[0, 5, 6, 7, 2], [0, 11, 12, 13, 14, 15, 16, 2]]],
    "full": [[[0, 627, 1104, 3521, 6094, 23, 5, 2576, 314, 2]]],
}


def ops(lqvg, out):
    """Operator fixtures: deformable-attention core and letterbox."""
    sys.path.insert(0, os.path.abspath(lqvg))
    stub_modules()
    import cv2
    from models.ops.functions.ms_deform_attn_func import ms_deform_attn_core_pytorch
    from util.transforms import letterbox

    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(3)
    shapes = [(5, 7), (3, 4), (2, 2)]
    n, m, d, lq, p = 2, 2, 3, 6, 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g)
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=g) * 1.4 - 0.2
    weights = torch.softmax(torch.randn(n, lq, m, len(shapes) * p, generator=g), -1).view(n, lq, m, len(shapes), p)
    outp = ms_deform_attn_core_pytorch(value, torch.tensor(shapes), loc, weights)
    for name, t in [("value", value), ("locations", loc), ("weights", weights), ("output", outp)]:
        np.save(os.path.join(out, f"deform_{name}.npy"), t.numpy().astype(np.float32))
    cases = []
    rng = np.random.default_rng(4)
    for i, (w, h, size) in enumerate([(200, 150, 128), (256, 256, 128), (384, 120, 128), (90, 128, 128),
                                      (50, 37, 128), (130, 129, 128), (320, 320, 250)]):
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        boxed, _, ratio, dw, dh = letterbox(img, None, size)
        cv2.imwrite(os.path.join(out, f"letterbox_{i}_in.png"), img[:, :, ::-1])
        cv2.imwrite(os.path.join(out, f"letterbox_{i}_out.png"), boxed[:, :, ::-1])
        cases.append({"size": size, "ratio": ratio, "dw": dw, "dh": dh})
    with open(os.path.join(out, "letterbox.json"), "w") as f:
        json.dump({"shapes": shapes, "points": p, "cases": cases}, f, indent=1)
    print(f"ops fixtures -> {out}")


def build(lqvg, config):
    """The official LQVG model of `config` ("tiny" or "full") with perturbed random weights, in eval mode.
    Returns (model, args, text_config, cfg)."""
    cfg = CONFIGS[config]
    sys.path.insert(0, os.path.abspath(lqvg))
    stub_modules()
    torch.manual_seed(0)
    np.random.seed(0)
    import torchvision
    from transformers import RobertaConfig, RobertaModel

    import models.ops.modules.ms_deform_attn as msda
    from models.ops.functions.ms_deform_attn_func import ms_deform_attn_core_pytorch

    class CpuMSDeformAttnFunction:
        @staticmethod
        def apply(value, shapes, level_start_index, locations, weights, im2col_step):
            return ms_deform_attn_core_pytorch(value, shapes, locations, weights)

    msda.MSDeformAttnFunction = CpuMSDeformAttnFunction

    import models.backbone as backbone_mod
    from models import LQVG as lqvg_mod
    from models.deformable_transformer import build_deforamble_transformer
    from opts import get_args_parser
    from util.transforms import letterbox

    backbone_mod.is_main_process = lambda: False  # pretrained=False
    real_resnet50 = torchvision.models.resnet50

    def resnet(**kw):
        kw.pop("pretrained", None)
        kw["weights"] = None
        m = real_resnet50(**kw)
        r = cfg["resnet"]
        if r is not None:
            from torchvision.models.resnet import Bottleneck
            norm = kw["norm_layer"]
            m.inplanes = r["stem"]
            m.conv1 = torch.nn.Conv2d(3, r["stem"], kernel_size=7, stride=2, padding=3, bias=False)
            m.bn1 = norm(r["stem"])
            m.layer1 = m._make_layer(Bottleneck, r["planes"][0], r["blocks"][0])
            m.layer2 = m._make_layer(Bottleneck, r["planes"][1], r["blocks"][1], stride=2)
            m.layer3 = m._make_layer(Bottleneck, r["planes"][2], r["blocks"][2], stride=2)
            m.layer4 = m._make_layer(Bottleneck, r["planes"][3], r["blocks"][3], stride=2)
        return m

    torchvision.models.resnet50 = resnet
    text_config = RobertaConfig(**cfg["text"])
    text_config._attn_implementation = "eager"
    lqvg_mod.RobertaTokenizerFast = types.SimpleNamespace(from_pretrained=lambda *x, **k: None)
    lqvg_mod.RobertaModel = types.SimpleNamespace(
        from_pretrained=lambda *x, **k: RobertaModel(text_config))

    args = get_args_parser().parse_args([
        "--dataset_file", "rsvg", "--binary", "--with_box_refine", "--freeze_text_encoder",
        "--backbone", "resnet50", "--device", "cpu",
        "--num_queries", str(cfg["num_queries"]), "--hidden_dim", str(cfg["hidden_dim"]),
        "--dim_feedforward", str(cfg["dim_feedforward"]), "--enc_layers", str(cfg["enc_layers"]),
        "--dec_layers", str(cfg["dec_layers"]), "--enc_n_points", str(cfg["enc_n_points"]),
        "--dec_n_points", str(cfg["dec_n_points"])])
    backbone = backbone_mod.build_backbone(args)
    if cfg["resnet"] is not None:
        backbone.num_channels = [p * 4 for p in cfg["resnet"]["planes"]]
        backbone.strides = [4, 8, 16, 32]
    transformer = build_deforamble_transformer(args)
    model = lqvg_mod.LQVG(backbone, transformer, num_classes=1, num_queries=args.num_queries,
                          num_feature_levels=args.num_feature_levels, num_frames=1, aux_loss=True,
                          with_box_refine=True, two_stage=False, freeze_text_encoder=True)
    if text_config.hidden_size != 768:
        model.resizer = lqvg_mod.FeatureResizer(text_config.hidden_size, args.hidden_dim, dropout=0.1)
    model.eval()

    # Perturb everything: constant-initialised tensors would hide mistakes.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:
                t.add_(0.1 * torch.randn(t.shape, generator=g))
            else:
                t.add_(0.02 * torch.randn(t.shape, generator=g))

    return model, args, text_config, cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lqvg")
    ap.add_argument("config", choices=sorted(CONFIGS) + ["ops"])
    ap.add_argument("out")
    a = ap.parse_args()
    if a.config == "ops":
        return ops(a.lqvg, a.out)
    os.makedirs(a.out, exist_ok=True)
    model, args, text_config, cfg = build(a.lqvg, a.config)
    import cv2
    import torchvision
    from util.transforms import letterbox

    sd = model.state_dict()
    torch.save({"model": sd, "args": args, "epoch": 0}, os.path.join(a.out, "checkpoint.pth"))
    text_config.to_json_file(os.path.join(a.out, "text_config.json"))

    # A random image, letterboxed by the official code (cv2 INTER_AREA), normalised as datasets/rsvg.py.
    w, h = cfg["image_wh"]
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, size=(h // 5 + 1, w // 5 + 1, 3), dtype=np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    img = np.clip(img.astype(np.int16) + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(os.path.join(a.out, "image.png"), img[:, :, ::-1])
    boxed, _, ratio, dw, dh = letterbox(img, None, cfg["input_size"])
    cv2.imwrite(os.path.join(a.out, "letterboxed.png"), boxed[:, :, ::-1])
    x = torch.from_numpy(boxed).permute(2, 0, 1).float() / 255.0
    x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    np.save(os.path.join(a.out, "input.npy"), x[None].numpy().astype(np.float32))

    captured = {}
    model.transformer.encoder.register_forward_hook(lambda m, i, o: captured.__setitem__("memory", o))
    model.resizer.register_forward_hook(lambda m, i, o: captured.__setitem__("text", o))

    from util.misc import NestedTensor

    for ci, ids in enumerate(CASES[a.config]):
        n = len(ids)
        longest = max(len(s) for s in ids)
        input_ids = torch.tensor([s + [1] * (longest - len(s)) for s in ids])
        attention = (input_ids != 1).long()

        def forward_text(captions, device, input_ids=input_ids, attention=attention):
            encoded = model.text_encoder(input_ids=input_ids, attention_mask=attention)
            feats = model.resizer(encoded.last_hidden_state)
            return NestedTensor(feats, attention.ne(1).bool())

        model.forward_text = forward_text
        images = x[None, None].repeat(n, 1, 1, 1, 1)  # [batch, frames, 3, H, W]
        with torch.no_grad():
            out = model(images, ["unused"] * n, [{"size": torch.tensor([cfg["input_size"]] * 2)}] * n)
        layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
        logits = torch.stack([l["pred_logits"][:, 0] for l in layers]).numpy()  # [L, N, Q, 1]
        boxes = torch.stack([l["pred_boxes"][:, 0] for l in layers]).numpy()  # [L, N, Q, 4]
        np.save(os.path.join(a.out, f"case_{ci}_logits.npy"), logits.astype(np.float32))
        np.save(os.path.join(a.out, f"case_{ci}_boxes.npy"), boxes.astype(np.float32))
        np.save(os.path.join(a.out, f"case_{ci}_memory.npy"), captured["memory"].numpy().astype(np.float32))
        np.save(os.path.join(a.out, f"case_{ci}_text.npy"), captured["text"].numpy().astype(np.float32))
        # The box of the first sentence as inference_rsvg.py computes it (original-image pixels).
        score = out["pred_logits"][0].sigmoid().squeeze(0)
        q = int(score.max(-1)[0].max(-1)[1])
        cx, cy, bw, bh = out["pred_boxes"][0, 0, q].tolist()
        s = cfg["input_size"]
        xyxy = [(cx - bw / 2) * s, (cy - bh / 2) * s, (cx + bw / 2) * s, (cy + bh / 2) * s]
        xyxy = [(xyxy[0] - dw) / ratio, (xyxy[1] - dh) / ratio, (xyxy[2] - dw) / ratio, (xyxy[3] - dh) / ratio]
        with open(os.path.join(a.out, f"case_{ci}.json"), "w") as f:
            json.dump({"ids": ids, "input_ids": input_ids.tolist(), "attention_mask": attention.tolist(),
                       "query": q, "score": float(score.max(-1)[0][q]), "box_xyxy": xyxy,
                       "ratio": ratio, "dw": dw, "dh": dh, "input_size": s}, f, indent=1)
    print(f"{a.config}: {len(sd)} state-dict keys, {sum(t.numel() for t in sd.values())} values -> {a.out}")


if __name__ == "__main__":
    main()
