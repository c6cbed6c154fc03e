//! Checkpoint loading: the official `.pth`, a safetensors export of the same state dict, and typed errors
//! for truncated, missing, unexpected and mis-shaped tensors.

#[path = "../../../tests/common/state_dict.rs"]
mod state_dict;

use burn_ndarray::NdArray;
use burn_store::{ModuleStore, PytorchStore};
use pslg_checkpoint::CheckpointError as C;
use pslg_sam::{Prompt, Sam, SamConfig, SamError, SamPredictor};
use state_dict::write_safetensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-sam-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The tiny state dict as key → (shape, values).
fn state_dict() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    state_dict_of(&tiny().join("sam.pth"), |_| true)
}

/// The tensors of a `.pth` whose keys `keep` accepts, as key → (shape, values).
fn state_dict_of(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    store
        .get_all_snapshots()
        .unwrap()
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, s)| {
            let v = s
                .to_data()
                .unwrap()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap();
            (k.clone(), (s.shape.to_vec(), v))
        })
        .collect()
}

fn predict(sam: Sam<B>) -> Vec<f32> {
    let image = image::open(tiny().join("image.png")).unwrap().to_rgb8();
    let mut p = SamPredictor::new(sam, Default::default());
    p.set_image(&image).unwrap();
    p.predict(&Prompt::default().with_box([30.0, 10.0, 80.0, 50.0]), false)
        .unwrap()
        .masks
}

#[test]
fn safetensors_export_loads_to_the_same_model() {
    let device = Default::default();
    let path = tmp("tiny.safetensors");
    write_safetensors(&path, &state_dict());
    let a = Sam::<B>::load(tiny().join("sam.pth"), Some(2), &device).unwrap();
    let b = Sam::<B>::load(&path, Some(2), &device).unwrap();
    assert_eq!(a.config(), b.config());
    assert_eq!(predict(a), predict(b));
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_named() {
    let device = Default::default();
    let sd = state_dict();

    let mut missing = sd.clone();
    missing.remove("mask_decoder.iou_token.weight");
    let p = tmp("missing.safetensors");
    write_safetensors(&p, &missing);
    match Sam::<B>::load(&p, Some(2), &device) {
        Err(SamError::Checkpoint(C::MissingTensor { key, expected, .. })) => {
            assert_eq!(key, "mask_decoder.iou_token.weight");
            assert_eq!(expected, vec![1, 32]);
        }
        other => panic!("{other:?}"),
    }

    let mut extra = sd.clone();
    extra.insert(
        "image_encoder.extra.weight".into(),
        (vec![2], vec![0.0, 1.0]),
    );
    let p = tmp("extra.safetensors");
    write_safetensors(&p, &extra);
    match Sam::<B>::load(&p, Some(2), &device) {
        Err(SamError::Checkpoint(C::UnexpectedTensor { key, shape, .. })) => {
            assert_eq!(key, "image_encoder.extra.weight");
            assert_eq!(shape, vec![2]);
        }
        other => panic!("{other:?}"),
    }

    let mut bad = sd.clone();
    bad.insert(
        "mask_decoder.transformer.layers.1.norm2.bias".into(),
        (vec![31], vec![0.0; 31]),
    );
    let p = tmp("bad.safetensors");
    write_safetensors(&p, &bad);
    let err = Sam::<B>::load(&p, Some(2), &device).unwrap_err();
    match &err {
        SamError::Checkpoint(C::ShapeMismatch {
            key,
            found,
            expected,
            ..
        }) => {
            assert_eq!(key, "mask_decoder.transformer.layers.1.norm2.bias");
            assert_eq!((found.clone(), expected.clone()), (vec![31], vec![32]));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("[31]") && err.to_string().contains("[32]"));

    // A checkpoint of another architecture than the one asked for.
    let err = Sam::<B>::load_with_config(tiny().join("sam.pth"), SamConfig::vit_b(), &device)
        .unwrap_err();
    assert!(
        matches!(err, SamError::Checkpoint(C::ShapeMismatch { .. })),
        "{err:?}"
    );
}

#[test]
fn unreadable_checkpoints_are_typed_errors() {
    let device = Default::default();
    let bytes = std::fs::read(tiny().join("sam.pth")).unwrap();
    for (name, content) in [
        ("truncated.pth", bytes[..bytes.len() / 3].to_vec()),
        ("empty.pth", Vec::new()),
        ("junk.pth", b"not a checkpoint at all".to_vec()),
        ("junk.safetensors", b"\x08\0\0\0\0\0\0\0{broken}".to_vec()),
    ] {
        let p = tmp(name);
        std::fs::write(&p, content).unwrap();
        match Sam::<B>::load(&p, None, &device) {
            Err(SamError::Checkpoint(C::Read { reason, .. })) => assert!(!reason.is_empty()),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        Sam::<B>::load(tmp("absent.pth"), None, &device),
        Err(SamError::Checkpoint(C::Read { .. }))
    ));
}

#[test]
fn bad_prompts_and_images_are_typed_errors() {
    let device = Default::default();
    let sam = Sam::<B>::load(tiny().join("sam.pth"), Some(2), &device).unwrap();
    let mut p = SamPredictor::new(sam, device);
    assert!(matches!(
        p.predict(&Prompt::default().with_box([1.0, 1.0, 5.0, 5.0]), false),
        Err(SamError::NoImage)
    ));
    assert!(matches!(
        p.set_image(&image::RgbImage::new(0, 0)),
        Err(SamError::Image(_))
    ));
    p.set_image(&image::RgbImage::new(20, 10)).unwrap();
    for prompt in [
        Prompt::default(),
        Prompt::default().with_point([f32::NAN, 1.0], 1),
        Prompt::default().with_point([1.0, 1.0], 2),
        Prompt::default().with_box([0.0, 0.0, f32::INFINITY, 3.0]),
        Prompt::default().with_mask_input(vec![0.0; 10], 2, 5),
    ] {
        assert!(
            matches!(p.predict(&prompt, false), Err(SamError::Prompt(_))),
            "{prompt:?}"
        );
    }
    // Saved embeddings round-trip and serve the same prediction.
    let e = p.embedding().unwrap();
    let path = tmp("emb.npy");
    e.save(&path).unwrap();
    let back = pslg_sam::ImageEmbedding::load(&path).unwrap();
    assert_eq!(back, e);
    let prompt = Prompt::default().with_point([5.0, 5.0], 1);
    let before = p.predict(&prompt, true).unwrap();
    p.set_embedding(&back).unwrap();
    assert_eq!(p.predict(&prompt, true).unwrap(), before);
}

#[test]
fn decoder_alone_saves_and_loads_with_official_names() {
    let device = Default::default();
    let path = tmp("decoder.safetensors");
    let sam = Sam::<B>::load(tiny().join("sam.pth"), Some(2), &device).unwrap();
    sam.save_decoder(&path).unwrap();
    // The file holds exactly the official mask_decoder.* keys and shapes.
    let sd = state_dict();
    let mut store = burn_store::SafetensorsStore::from_file(&path);
    let saved: BTreeMap<String, Vec<usize>> = store
        .get_all_snapshots()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s.shape.to_vec()))
        .collect();
    let want: BTreeMap<String, Vec<usize>> = sd
        .iter()
        .filter(|(k, _)| k.starts_with("mask_decoder."))
        .map(|(k, (s, _))| (k.clone(), s.clone()))
        .collect();
    assert_eq!(saved, want);
    assert!(saved.contains_key("mask_decoder.output_upscaling.0.weight"));
    // The original encoders with a placeholder decoder, then the saved decoder (or a full checkpoint's)
    // loaded into it: the original predictions.
    let expected = predict(sam);
    let mut placeholder = Sam::<B>::load(tiny().join("sam.pth"), Some(2), &device).unwrap();
    placeholder.mask_decoder = Sam::<B>::new(placeholder.config().clone(), &device)
        .unwrap()
        .mask_decoder;
    assert_ne!(predict(placeholder.clone()), expected);
    assert_eq!(predict(placeholder.load_decoder(&path).unwrap()), expected);
    let again = Sam::<B>::load(tiny().join("sam.pth"), Some(2), &device)
        .unwrap()
        .load_decoder(tiny().join("sam.pth"))
        .unwrap();
    assert_eq!(predict(again), expected);
    // A decoder of another architecture is refused, naming the tensor.
    let mut other = sam_config_tiny();
    other.decoder_mlp_dim = 48;
    let err = Sam::<B>::new(other, &device)
        .unwrap()
        .load_decoder(&path)
        .unwrap_err();
    assert!(
        matches!(&err, SamError::Checkpoint(C::ShapeMismatch { key, .. }) if key.contains("mlp")),
        "{err}"
    );
}

fn sam_config_tiny() -> SamConfig {
    Sam::<B>::load(tiny().join("sam.pth"), Some(2), &Default::default())
        .unwrap()
        .config()
        .clone()
}

#[test]
fn a_decoder_that_cannot_be_written_is_a_write_error() {
    let sam = Sam::<B>::load(tiny().join("sam.pth"), Some(2), &Default::default()).unwrap();
    // A path below a file cannot be created.
    let err = sam
        .save_decoder(tiny().join("sam.pth").join("decoder.safetensors"))
        .unwrap_err();
    assert!(matches!(err, SamError::WriteCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("cannot write"), "{err}");
}

fn mobile_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mobile_tiny/sam.pth")
}

/// MobileSAM's tiny fixture at its 64-px input (TinyViT's input size is not in the weights).
fn load_mobile(path: &Path) -> Result<Sam<B>, SamError> {
    let mut config = SamConfig::from_checkpoint(path, Some(2))?;
    config.image_size = 64;
    Sam::<B>::load_with_config(path, config, &Default::default())
}

#[test]
fn mobile_sam_checkpoints_are_detected_checked_and_named() {
    // The family comes from the keys; the official file (with BatchNorm counters and TinyViT's unused
    // classifier head) loads.
    let config = SamConfig::from_checkpoint(mobile_tiny(), Some(2)).unwrap();
    let tiny = config.encoder.tiny_vit().expect("a TinyViT");
    assert_eq!(tiny.embed_dims, [8, 16, 24]);
    assert_eq!(
        config.image_size, 1024,
        "the official input size unless told"
    );
    let reference = predict_mobile(load_mobile(&mobile_tiny()).unwrap());

    // The same weights as safetensors without the tensors forward never reads: the same predictions.
    let sd = state_dict_of(&mobile_tiny(), |k| {
        !k.ends_with("num_batches_tracked") && !k.contains(".head.")
    });
    let p = tmp("mobile.safetensors");
    write_safetensors(&p, &sd);
    let got = predict_mobile(load_mobile(&p).unwrap());
    let d = got
        .iter()
        .zip(&reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert_eq!(got.len(), reference.len());
    // The same weights; parallel reductions may round differently run to run.
    assert!(d < 1e-6, "max difference {d}");

    // A missing BatchNorm statistic is named.
    let key = "image_encoder.layers.1.blocks.0.local_conv.bn.running_var";
    let mut missing = sd.clone();
    missing.remove(key);
    let p = tmp("mobile-missing.safetensors");
    write_safetensors(&p, &missing);
    match load_mobile(&p) {
        Err(SamError::Checkpoint(C::MissingTensor {
            key: k, expected, ..
        })) => {
            assert_eq!(k, key);
            assert_eq!(expected, vec![16]);
        }
        other => panic!("{other:?}"),
    }

    // A stray tensor outside the unused ones is refused, naming it.
    let mut extra = sd.clone();
    extra.insert("image_encoder.layers.9.x".into(), (vec![2], vec![0.0, 1.0]));
    let p = tmp("mobile-extra.safetensors");
    write_safetensors(&p, &extra);
    match load_mobile(&p) {
        Err(SamError::Checkpoint(C::UnexpectedTensor { key, .. })) => {
            assert_eq!(key, "image_encoder.layers.9.x")
        }
        other => panic!("{other:?}"),
    }

    // A truncated file is a read error naming the file.
    let bytes = std::fs::read(mobile_tiny()).unwrap();
    let p = tmp("mobile-truncated.pth");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_mobile(&p).unwrap_err();
    assert!(
        matches!(&err, SamError::Checkpoint(C::Read { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("mobile-truncated.pth"), "{err}");
}

fn predict_mobile(sam: Sam<B>) -> Vec<f32> {
    let image = image::open(mobile_tiny().with_file_name("image.png"))
        .unwrap()
        .to_rgb8();
    let mut p = SamPredictor::new(sam, Default::default());
    p.set_image(&image).unwrap();
    p.predict(&Prompt::default().with_box([30.0, 10.0, 80.0, 50.0]), false)
        .unwrap()
        .masks
}
