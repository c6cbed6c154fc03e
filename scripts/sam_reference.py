#!/usr/bin/env python3
"""Parity fixtures for `pslg-sam` from the official Segment Anything code.

Builds the official model (`pip install torch torchvision segment-anything==1.0`) with random weights — the
tensors that default init leaves constant (absolute position embedding, relative-position tables, norms) are
perturbed so that every weight influences the outputs — and saves, in OUT_DIR:

  sam.pth                      the state dict, exactly as `torch.save(model.state_dict())` writes it
  config.json                  the architecture (for the Rust test) and the prompt cases
  image.png                    the input image (uint8 RGB)
  resized.npy                  ResizeLongestSide.apply_image output (uint8, H'xW'x3): PIL bilinear
  input.npy                    the normalised, padded encoder input (1,3,S,S) float32
  image_embedding.npy          (1,C,h,w)
  <case>_sparse.npy / _dense.npy     prompt encoder outputs
  <case>_low_res.npy / _iou.npy      mask decoder outputs (after multimask selection)
  <case>_masks.npy             full-size mask logits (postprocess_masks), (1,M,H,W)

Usage: sam_reference.py {tiny,small,vit_b,mobile_tiny,vit_t} OUT_DIR
  tiny         64-px input, patch 8, embed 32, depth 2, 2 heads, window 4, global block 1, prompt dim 32 (< 1 MB)
  small        _build_sam(64, 2, 2, (1,)): 1024-px input, window 14, the official prompt encoder and decoder
  vit_b        the official ViT-B architecture (sam_model_registry["vit_b"]) with random weights
  mobile_tiny  MobileSAM's TinyViT (official `mobile_sam`, `pip install mobilesam-mirror timm`) at 64 px:
               stages 8/16/24 wide, the second attention stage's 4x4 grid one exact window, the first padded;
               prompt dim 32 (< 1 MB). The official TinyViT fixes a 256-wide neck and a 64x64 embedding
               (`x.view(B, 64, 64, C)`); only these two constants are generalised here, in `TinyViTAnySize`.
  vit_t        MobileSAM as released (mobile_sam.sam_model_registry["vit_t"]) with random weights

For the MobileSAM configurations every tensor that default init leaves constant (BatchNorm weights, biases
and running statistics, LayerNorms, linear biases, attention biases) is perturbed, so each path matters.
"""

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)


def build(cfg):
    s = cfg["image_size"] // cfg["patch_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg["depth"],
            embed_dim=cfg["embed_dim"],
            img_size=cfg["image_size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg["num_heads"],
            patch_size=cfg["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=cfg["global_attn_indexes"],
            window_size=cfg["window_size"],
            out_chans=cfg["prompt_dim"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg["prompt_dim"],
            image_embedding_size=(s, s),
            input_image_size=(cfg["image_size"], cfg["image_size"]),
            mask_in_chans=cfg["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=cfg["prompt_dim"],
                mlp_dim=cfg["decoder_mlp_dim"],
                num_heads=cfg["decoder_heads"],
            ),
            transformer_dim=cfg["prompt_dim"],
            iou_head_depth=3,
            iou_head_hidden_dim=cfg["iou_head_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


CONFIGS = {
    "tiny": dict(image_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, window_size=4,
                 global_attn_indexes=[1], prompt_dim=32, mask_in_chans=16, decoder_heads=2,
                 decoder_mlp_dim=64, iou_head_hidden_dim=32, image_hw=[75, 100]),
    "small": dict(image_size=1024, patch_size=16, embed_dim=64, depth=2, num_heads=2, window_size=14,
                  global_attn_indexes=[1], prompt_dim=256, mask_in_chans=16, decoder_heads=8,
                  decoder_mlp_dim=2048, iou_head_hidden_dim=256, image_hw=[300, 400]),
    "vit_b": dict(image_size=1024, patch_size=16, embed_dim=768, depth=12, num_heads=12, window_size=14,
                  global_attn_indexes=[2, 5, 8, 11], prompt_dim=256, mask_in_chans=16, decoder_heads=8,
                  decoder_mlp_dim=2048, iou_head_hidden_dim=256, image_hw=[480, 640]),
}


MOBILE_CONFIGS = {
    "mobile_tiny": dict(family="tiny_vit", image_size=64, embed_dims=[8, 16, 24], depths=[1, 1, 2],
                        num_heads=[1, 2, 3], window_sizes=[3, 3, 4], prompt_dim=32, mask_in_chans=16,
                        decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32, image_hw=[75, 100]),
    "vit_t": dict(family="tiny_vit", image_size=1024, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2],
                  num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], prompt_dim=256, mask_in_chans=16,
                  decoder_heads=8, decoder_mlp_dim=2048, iou_head_hidden_dim=256, image_hw=[480, 640]),
}


def build_mobile(which, cfg):
    """MobileSAM from the official `mobile_sam` package: as released for vit_t, else TinyViT with its two
    hard-coded constants (neck width 256, embedding 64x64) taken from the configuration."""
    import mobile_sam
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer
    from mobile_sam.modeling.tiny_vit_sam import LayerNorm2d

    if which == "vit_t":
        return mobile_sam.sam_model_registry["vit_t"]()

    class TinyViTAnySize(TinyViT):
        def __init__(self, out_chans, **kw):
            super().__init__(**kw)
            self.neck = torch.nn.Sequential(
                torch.nn.Conv2d(kw["embed_dims"][-1], out_chans, kernel_size=1, bias=False),
                LayerNorm2d(out_chans),
                torch.nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
                LayerNorm2d(out_chans),
            )

        def forward_features(self, x):  # the official code with the grid side computed, not 64
            x = self.patch_embed(x)
            x = self.layers[0](x)
            for i in range(1, len(self.layers)):
                x = self.layers[i](x)
            b, n, c = x.size()
            side = int(round(n ** 0.5))
            x = x.view(b, side, side, c).permute(0, 3, 1, 2)
            return self.neck(x)

    s = cfg["image_size"] // 16
    return Sam(
        image_encoder=TinyViTAnySize(
            out_chans=cfg["prompt_dim"], img_size=cfg["image_size"], in_chans=3, num_classes=1000,
            embed_dims=cfg["embed_dims"], depths=cfg["depths"], num_heads=cfg["num_heads"],
            window_sizes=cfg["window_sizes"], mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0,
            use_checkpoint=False, mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg["prompt_dim"], image_embedding_size=(s, s),
            input_image_size=(cfg["image_size"], cfg["image_size"]), mask_in_chans=cfg["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=cfg["prompt_dim"],
                                          mlp_dim=cfg["decoder_mlp_dim"], num_heads=cfg["decoder_heads"]),
            transformer_dim=cfg["prompt_dim"], iou_head_depth=3, iou_head_hidden_dim=cfg["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def perturb_constants(model, gen):
    """Every parameter or buffer whose values are all equal (BatchNorm and LayerNorm weights, biases and
    running statistics, linear biases, attention biases) gets random values; variances stay positive."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or t.numel() < 2 or not bool((t == t.flatten()[0]).all()):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif bool((t == 1).all()):
                t.copy_(1.0 + torch.randn(t.shape, generator=gen) * 0.1)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)


def perturb(model, gen):
    """Default init leaves these constant; randomise them so a wrong port of them shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pos_embed") or ".rel_pos_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif "norm" in name or "neck.1" in name or "neck.3" in name \
                    or "mask_downscaling.1" in name or "mask_downscaling.4" in name \
                    or "output_upscaling.1" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.1)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def save(out, name, t):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
    np.save(out / f"{name}.npy", np.ascontiguousarray(a))


def main():
    which, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if which in MOBILE_CONFIGS:
        from mobile_sam import SamPredictor as Predictor
        cfg = MOBILE_CONFIGS[which]
        model = build_mobile(which, cfg)
        perturb_constants(model, gen)
        # eval() after the perturbation: TinyViT's attention caches its bias table (`ab`) when switched to
        # eval mode.
        model.eval()
    else:
        Predictor = SamPredictor
        cfg = CONFIGS[which]
        model = build(cfg).eval()
        perturb(model, gen)
    torch.save(model.state_dict(), out / "sam.pth")

    h, w = cfg["image_hw"]
    rng = np.random.default_rng(2)
    # A smooth picture with an object and some noise, so resampling matters.
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([
        128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.0),
        ((xx - w * 0.6) ** 2 + (yy - h * 0.4) ** 2 < (min(h, w) * 0.2) ** 2) * 180 + 40,
        (xx * 255.0 / w),
    ], axis=-1) + rng.normal(0, 12, (h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    Image.fromarray(img).save(out / "image.png")

    predictor = Predictor(model)
    resized = predictor.transform.apply_image(img)
    save(out, "resized", resized)
    with torch.no_grad():
        predictor.set_image(img)
        t = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
        save(out, "input", model.preprocess(t))
        save(out, "image_embedding", predictor.features)

        box = np.array([w * 0.35, h * 0.15, w * 0.85, h * 0.65], dtype=np.float32)
        fg = np.array([[w * 0.6, h * 0.4]], dtype=np.float32)
        cases = {
            "point_box": dict(points=fg.tolist(), labels=[1], box=box.tolist(), multimask=False),
            "fg_bg_points": dict(points=[[w * 0.6, h * 0.4], [w * 0.1, h * 0.9]], labels=[1, 0],
                                 box=None, multimask=True),
            "box_only": dict(points=None, labels=None, box=box.tolist(), multimask=False),
            "point_mask": dict(points=fg.tolist(), labels=[1], box=None, multimask=False,
                               mask_input="point_box_low_res"),
        }
        low_res_by_case = {}
        for name, c in cases.items():
            pts = np.array(c["points"], dtype=np.float32) if c["points"] is not None else None
            lbl = np.array(c["labels"]) if c["labels"] is not None else None
            bx = np.array(c["box"], dtype=np.float32) if c["box"] is not None else None
            mask_in = None
            if c.get("mask_input"):
                mask_in = low_res_by_case["point_box"]  # (1, 4h, 4w), as the official predictor takes it
                np.save(out / "point_mask_mask_input.npy", np.ascontiguousarray(mask_in))
            masks, iou, low = predictor.predict(pts, lbl, bx, mask_in, c["multimask"], return_logits=True)
            low_res_by_case[name] = low
            save(out, f"{name}_masks", masks[None])
            save(out, f"{name}_iou", iou[None])
            save(out, f"{name}_low_res", low[None])
            # The prompt encoder's outputs on the same transformed prompts.
            coords = labels = boxes = mask_t = None
            if pts is not None:
                coords = torch.as_tensor(predictor.transform.apply_coords(pts, (h, w)))[None]
                labels = torch.as_tensor(lbl)[None]
            if bx is not None:
                boxes = torch.as_tensor(predictor.transform.apply_boxes(bx, (h, w)))
            if mask_in is not None:
                mask_t = torch.as_tensor(mask_in)[None]
            sparse, dense = model.prompt_encoder(
                points=(coords, labels) if coords is not None else None, boxes=boxes, masks=mask_t)
            save(out, f"{name}_sparse", sparse)
            save(out, f"{name}_dense", dense)
    json.dump(dict(config=cfg, variant=which, cases=cases), open(out / "config.json", "w"), indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
