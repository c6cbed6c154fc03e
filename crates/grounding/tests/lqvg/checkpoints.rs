//! Checkpoint errors: every way a user's file can be wrong gives a typed error naming what is wrong.
//! The variants are derived from the committed tiny official checkpoint (re-written as safetensors).

use crate::common;
use crate::state_dict::write_safetensors;

use burn::tensor::{Tensor, TensorData};
use burn_ndarray::NdArray;
use burn_store::{ModuleStore, PytorchStore};
use pslg_checkpoint::CheckpointError as C;
use pslg_grounding::{GroundingError, Lqvg, TextConfig, TokenBatch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lqvg-tiny")
}

fn text() -> TextConfig {
    TextConfig::from_hf_json(tiny().join("text_config.json")).expect("text config")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pslg-lqvg-ckpt-{}-{name}", std::process::id()))
}

/// The official state dict: key → (shape, f32 values).
fn state_dict() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut store = PytorchStore::from_file(tiny().join("checkpoint.pth"))
        .with_top_level_key("model")
        .map_indices_contiguous(false);
    store
        .get_all_snapshots()
        .expect("snapshots")
        .iter()
        .map(|(k, s)| {
            let data = s.to_data().expect("data").convert::<f32>();
            (
                k.clone(),
                (s.shape.to_vec(), data.to_vec::<f32>().expect("f32")),
            )
        })
        .collect()
}

fn logits(model: &Lqvg<B>) -> Vec<f32> {
    let (shape, data) = common::read_npy(&tiny().join("input.npy"));
    let x = Tensor::<B, 4>::from_data(TensorData::new(data, shape), &Default::default());
    let tokens = TokenBatch::pad(&[vec![0, 17, 45, 8, 90, 33, 2]], 1).expect("pad");
    let out = model.forward(x, &tokens).expect("forward");
    out.logits
        .last()
        .expect("layer")
        .clone()
        .into_data()
        .to_vec()
        .expect("f32")
}

#[test]
fn safetensors_export_without_aliases_loads_and_matches() {
    let device = Default::default();
    let reference =
        Lqvg::<B>::load(tiny().join("checkpoint.pth"), text(), None, &device).expect("pth");
    let mut sd = state_dict();
    sd.retain(|k, _| !k.starts_with("transformer.decoder.bbox_embed."));
    let path = tmp("ok.safetensors");
    write_safetensors(&path, &sd);
    let model = Lqvg::<B>::load(&path, text(), None, &device).expect("safetensors");
    // Same weights; burn-ndarray's kernels may sum in a different order when buffers are aligned
    // differently, so equal up to float rounding.
    let err = common::rel_err(&logits(&model), &logits(&reference));
    assert!(err < 1e-5, "safetensors and pth differ by {err}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn missing_unexpected_and_misshapen_tensors_name_the_key() {
    let device = Default::default();
    let base = {
        let mut sd = state_dict();
        sd.retain(|k, _| !k.starts_with("transformer.decoder.bbox_embed."));
        sd
    };
    let mut sd = base.clone();
    sd.remove("transformer.encoder.layers.1.norm2.weight");
    let path = tmp("missing.safetensors");
    write_safetensors(&path, &sd);
    match Lqvg::<B>::load(&path, text(), None, &device) {
        Err(GroundingError::Checkpoint(C::MissingTensor { key, expected, .. })) => {
            assert_eq!(key, "transformer.encoder.layers.1.norm2.weight");
            assert_eq!(expected, vec![32]);
        }
        other => panic!("{other:?}"),
    }

    let mut sd = base.clone();
    sd.insert("class_embed.1.bias".into(), (vec![2], vec![0.0, 1.0]));
    let path = tmp("shape.safetensors");
    write_safetensors(&path, &sd);
    match Lqvg::<B>::load(&path, text(), None, &device) {
        Err(GroundingError::Checkpoint(C::ShapeMismatch {
            key,
            found,
            expected,
            ..
        })) => {
            assert_eq!(key, "class_embed.1.bias");
            assert_eq!((found, expected), (vec![2], vec![1]));
        }
        other => panic!("{other:?}"),
    }

    let mut sd = base.clone();
    sd.insert("mask_head.weight".into(), (vec![3], vec![0.0; 3]));
    let path = tmp("extra.safetensors");
    write_safetensors(&path, &sd);
    match Lqvg::<B>::load(&path, text(), None, &device) {
        Err(GroundingError::Checkpoint(C::UnexpectedTensor { key, shape, .. })) => {
            assert_eq!((key.as_str(), shape), ("mask_head.weight", vec![3]));
        }
        other => panic!("{other:?}"),
    }

    // A text config that does not belong to the weights.
    let mut wrong = text();
    wrong.num_layers = 3;
    assert!(matches!(
        Lqvg::<B>::load(tiny().join("checkpoint.pth"), wrong, None, &device),
        Err(GroundingError::Config(_))
    ));
    // A head count the shapes cannot hold (8 heads × 4 levels × 3 points = 96 rows; 5 heads do not divide).
    assert!(matches!(
        Lqvg::<B>::load(tiny().join("checkpoint.pth"), text(), Some(5), &device),
        Err(GroundingError::Config(_))
    ));
    for name in [
        "missing.safetensors",
        "shape.safetensors",
        "extra.safetensors",
    ] {
        let _ = std::fs::remove_file(tmp(name));
    }
}

#[test]
fn unreadable_files_are_read_errors_and_bad_inputs_text_errors() {
    let device = Default::default();
    let bytes = std::fs::read(tiny().join("checkpoint.pth")).expect("read");
    let truncated = tmp("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let junk = tmp("junk.pth");
    std::fs::write(&junk, b"not a checkpoint at all").expect("write");
    let empty = tmp("empty.safetensors");
    std::fs::write(&empty, b"").expect("write");
    for path in [&truncated, &junk, &empty, &tmp("absent.pth")] {
        match Lqvg::<B>::load(path, text(), None, &device) {
            Err(GroundingError::Checkpoint(C::Read { path: p, .. })) => assert_eq!(&p, path),
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    // A SAM checkpoint (or any other state dict) is not LQVG.
    let mut other = BTreeMap::new();
    other.insert(
        "image_encoder.pos_embed".to_string(),
        (vec![1, 2], vec![0.0, 0.0]),
    );
    let sam = tmp("other.safetensors");
    write_safetensors(&sam, &other);
    let err = Lqvg::<B>::load(&sam, text(), None, &device).unwrap_err();
    assert!(matches!(err, GroundingError::Config(_)), "{err}");

    let model =
        Lqvg::<B>::load(tiny().join("checkpoint.pth"), text(), None, &device).expect("load");
    let (shape, data) = common::read_npy(&tiny().join("input.npy"));
    let x = Tensor::<B, 4>::from_data(TensorData::new(data, shape), &device);
    let out_of_vocab = TokenBatch::pad(&[vec![0, 500, 2]], 1).expect("pad");
    assert!(matches!(
        model.forward(x.clone(), &out_of_vocab),
        Err(GroundingError::Text(_))
    ));
    let too_long = TokenBatch::pad(&[vec![5; 60]], 1).expect("pad");
    assert!(matches!(
        model.forward(x.clone(), &too_long),
        Err(GroundingError::Text(_))
    ));
    let two = TokenBatch::pad(&[vec![0, 5, 2], vec![0, 6, 2]], 1).expect("pad");
    assert!(matches!(
        model.forward(x, &two),
        Err(GroundingError::Text(_))
    ));
    for p in [truncated, junk, empty, sam] {
        let _ = std::fs::remove_file(p);
    }
}
