//! Operators against the official code's own functions (`scripts/lqvg_reference.py … ops`): the
//! deformable-attention core against `ms_deform_attn_core_pytorch`, the letterbox against the official
//! `letterbox` (cv2 `INTER_AREA`) on every resize path.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use burn_ndarray::NdArray;
use pslg_grounding::{letterbox, ms_deform_attn_core, ms_deform_attn_core_tensor_ops};
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops")
}

fn tensor<const D: usize>(name: &str) -> Tensor<B, D> {
    let (shape, data) = common::read_npy(&dir().join(name));
    Tensor::from_data(TensorData::new(data, shape), &Default::default())
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("letterbox.json")).expect("json"))
        .expect("json")
}

type Core = fn(Tensor<B, 4>, &[(usize, usize)], Tensor<B, 6>, Tensor<B, 5>) -> Tensor<B, 3>;

#[test]
fn deformable_attention_core_matches_pytorch_fallback() {
    let shapes: Vec<(usize, usize)> = meta()["shapes"]
        .as_array()
        .expect("shapes")
        .iter()
        .map(|s| {
            (
                s[0].as_u64().expect("h") as usize,
                s[1].as_u64().expect("w") as usize,
            )
        })
        .collect();
    let (shape, want) = common::read_npy(&dir().join("deform_output.npy"));
    // The fused host loop (what `ms_deform_attn_core` runs on ndarray) and the tensor ops (autodiff, GPU).
    for (name, core) in [
        ("fused host loop", ms_deform_attn_core::<B> as Core),
        ("tensor ops", ms_deform_attn_core_tensor_ops::<B> as Core),
    ] {
        let out = core(
            tensor::<4>("deform_value.npy"),
            &shapes,
            tensor::<6>("deform_locations.npy"),
            tensor::<5>("deform_weights.npy"),
        );
        assert_eq!(out.dims().to_vec(), shape);
        let err = common::rel_err(&out.into_data().to_vec::<f32>().expect("f32"), &want);
        eprintln!("deformable attention core ({name}): worst relative error {err:.2e}");
        assert!(err < 1e-5, "{name}: relative error {err}");
    }
}

#[test]
fn letterbox_matches_official_cv2_on_every_resize_path() {
    for (i, case) in meta()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .enumerate()
    {
        let input = image::open(dir().join(format!("letterbox_{i}_in.png")))
            .expect("png")
            .to_rgb8();
        let want = image::open(dir().join(format!("letterbox_{i}_out.png")))
            .expect("png")
            .to_rgb8();
        let size = case["size"].as_u64().expect("size") as usize;
        let (got, lb) = letterbox(&input, size).expect("letterbox");
        assert_eq!(got.dimensions(), want.dimensions());
        let differ = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "letterbox {}x{} -> {size}: {differ} bytes differ",
            input.width(),
            input.height()
        );
        assert_eq!(differ, 0, "case {i}");
        // (serde_json's default float parsing may be one ulp off the value Python wrote.)
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(close(lb.ratio, case["ratio"].as_f64().expect("ratio")));
        assert!(close(lb.dw, case["dw"].as_f64().expect("dw")));
        assert!(close(lb.dh, case["dh"].as_f64().expect("dh")));
        // The box mapping round-trips.
        let b = [3.5, 7.25, 60.0, 33.0];
        let back = lb.undo(lb.apply(b));
        assert!(b.iter().zip(back).all(|(x, y)| (x - y).abs() < 1e-3));
    }
    assert!(letterbox(&image::RgbImage::new(0, 5), 128).is_err());
}
