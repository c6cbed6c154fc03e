//! SAM decoder fine-tuning: it learns (a tiny random-weight SAM on generated shapes: the fine-tuned
//! decoder's validation IoU beats the frozen one's), saves, resumes, and its decoder loads with `--decoder`.

use crate::common;

use burn::backend::Autodiff;
use burn_ndarray::NdArray;
use pslg::sam::Sam;
use pslg::{BoxSegmenter, BoxSegmenterParams};
use pslg_datasets::rrsis::read_refcoco;
use pslg_sam::finetune::{
    DecoderTrainer, EmbeddingCache, FinetuneConfig, bce_with_logits, low_res_target,
};
use std::path::{Path, PathBuf};
use std::process::Command;

type B = Autodiff<NdArray<f32>>;

fn tiny_sam() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("crates/sam/tests/fixtures/tiny/sam.pth")
}

#[test]
fn bce_and_low_res_target_follow_their_definitions() {
    use burn::tensor::Tensor;
    let device = Default::default();
    let x = Tensor::<NdArray<f32>, 1>::from_floats([2.0, -1.0, 0.0, 30.0], &device);
    let t = Tensor::<NdArray<f32>, 1>::from_floats([1.0, 0.0, 0.5, 0.0], &device);
    let got: f32 = bce_with_logits(x, t).into_scalar();
    // −[t·ln σ(x) + (1 − t)·ln(1 − σ(x))] with ln σ(x) = −ln(1 + e^{−x}), ln(1 − σ(x)) = −x − ln(1 + e^{−x}).
    let want = [(2.0, 1.0), (-1.0, 0.0), (0.0, 0.5), (30.0, 0.0)]
        .iter()
        .map(|&(v, t): &(f64, f64)| {
            let log_sig = -(-v).exp().ln_1p();
            -(t * log_sig + (1.0 - t) * (log_sig - v))
        })
        .sum::<f64>()
        / 4.0;
    assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");

    // A 100 × 50 mask whose left half is foreground, into a 64-input / 32-logit frame: resized to 64 × 32,
    // padded below; the cells of the left half of the top half are 1, the padding 0.
    let m = image::GrayImage::from_fn(100, 50, |x, _| image::Luma([if x < 50 { 255 } else { 0 }]));
    let t = low_res_target(&m, 64, 32).unwrap();
    assert_eq!(t.len(), 32 * 32);
    assert!((t[5 * 32 + 3] - 1.0).abs() < 1e-6);
    assert!(t[5 * 32 + 28].abs() < 1e-6);
    assert!(t[25 * 32 + 3].abs() < 1e-6, "padding");
    assert!(low_res_target(&m, 64, 30).is_err());
}

#[test]
fn the_fine_tuned_decoder_beats_the_frozen_one() {
    let d = common::tmp("ft-learn");
    common::write_dataset(&d, 30, 100, 75, 7);
    let train = read_refcoco(&d, "refs(unc).p", "train").unwrap();
    let val = read_refcoco(&d, "refs(unc).p", "val").unwrap();
    let device = Default::default();
    let sam = Sam::<B>::load(tiny_sam(), Some(2), &device).unwrap();
    let config = FinetuneConfig {
        epochs: 15,
        lr: 1e-3,
        batch_size: 2,
        ..FinetuneConfig::default()
    };
    let mut t = DecoderTrainer::new(sam, config, device).unwrap();
    let stages = BoxSegmenter::new(BoxSegmenterParams::default()).unwrap();
    let cache = EmbeddingCache::new(d.join("cache"));
    let inner = t.model();
    let train_ex = cache
        .prepare(
            &inner,
            &device,
            &train,
            |im: &image::RgbImage, b| stages.sam_point(im, b),
            || {},
        )
        .unwrap();
    let val_ex = cache
        .prepare(
            &inner,
            &device,
            &val,
            |im: &image::RgbImage, b| stages.sam_point(im, b),
            || {},
        )
        .unwrap();
    assert_eq!((train_ex.len(), val_ex.len()), (train.len(), val.len()));
    // One embedding per image (of the train and val splits), whatever the number of sentences.
    let files = std::fs::read_dir(d.join("cache"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "npy")
        })
        .count();
    let mut images: Vec<_> = train.iter().chain(&val).map(|s| s.image.clone()).collect();
    images.sort();
    images.dedup();
    assert_eq!(files, images.len());
    assert!(
        train.len() + val.len() > images.len(),
        "some images have several sentences"
    );
    let frozen = t.validate(&val_ex, || {}).unwrap();
    let mut losses = Vec::new();
    for _ in 0..15 {
        losses.push(t.train_epoch(&train_ex, || {}).unwrap());
    }
    let tuned = t.validate(&val_ex, || {}).unwrap();
    eprintln!(
        "frozen val mIoU {:.3}, fine-tuned {:.3}; losses {losses:?}",
        frozen.miou, tuned.miou
    );
    assert!(losses.last() < losses.first(), "{losses:?}");
    assert!(
        tuned.miou > frozen.miou + 0.1,
        "fine-tuned {} vs frozen {}",
        tuned.miou,
        frozen.miou
    );

    // Save → resume gives the same model; the decoder file loads into a fresh SAM with the same output.
    t.save(&d.join("ckpt")).unwrap();
    let sam = Sam::<B>::load(tiny_sam(), Some(2), &device).unwrap();
    let r = DecoderTrainer::resume(sam, &d.join("ckpt"), device).unwrap();
    assert_eq!((r.epoch, r.step), (t.epoch, t.step));
    let again = r.validate(&val_ex, || {}).unwrap();
    assert!((again.miou - tuned.miou).abs() < 1e-6);
    let plain = Sam::<NdArray<f32>>::load(tiny_sam(), Some(2), &device)
        .unwrap()
        .load_decoder(d.join("ckpt/decoder.safetensors"))
        .unwrap();
    let iou_token = |sam: &Sam<NdArray<f32>>| -> Vec<f32> {
        let w = sam.mask_decoder.iou_token.weight.val();
        w.into_data().to_vec().unwrap()
    };
    assert_eq!(iou_token(&plain), iou_token(&t.model()));
    // A decoder of another architecture is refused, naming the tensor.
    let other = Sam::<NdArray<f32>>::load(tiny_sam(), Some(2), &device).unwrap();
    let err = other
        .load_decoder(d.join("cache/nothing.safetensors"))
        .unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn finetune_decoder_cli_trains_resumes_and_eval_rrsis_loads_it() {
    let d = common::tmp("ft-cli");
    common::write_dataset(&d, 15, 96, 72, 11);
    let out = d.join("ft");
    let run = |epochs: &str| {
        Command::new(env!("CARGO_BIN_EXE_pslg"))
            .args(["finetune-decoder", "--root"])
            .arg(&d)
            .args([
                "--fraction",
                "0.5",
                "--epochs",
                epochs,
                "--lr",
                "1e-3",
                "--sam",
            ])
            .arg(tiny_sam())
            .args(["--sam-decoder-heads", "2", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run("1");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "epoch 0 (frozen) and epoch 1");
    assert_eq!(lines[0]["epoch"], 0);
    assert!(lines[1]["val_mIoU"].is_number() && lines[1]["train_loss"].as_f64() > Some(0.0));
    let o = run("2");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming"));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["epoch"], 2);
    assert!(out.join("best/decoder.safetensors").is_file());
    // Other settings on the same folder are refused.
    let o = Command::new(env!("CARGO_BIN_EXE_pslg"))
        .args(["finetune-decoder", "--root"])
        .arg(&d)
        .args(["--fraction", "0.2", "--sam"])
        .arg(tiny_sam())
        .args(["--sam-decoder-heads", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());

    let eval = |decoder: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pslg"));
        c.args([
            "eval-rrsis",
            "--gt-box",
            "--no-mbo",
            "--split",
            "val",
            "--root",
        ])
        .arg(&d)
        .arg("--sam")
        .arg(tiny_sam())
        .args(["--sam-decoder-heads", "2"]);
        if let Some(p) = decoder {
            c.arg("--decoder").arg(p);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let frozen = eval(None);
    // The last epoch's decoder (best/ may be the frozen one after so few steps).
    let tuned = eval(Some(&out.join("last/decoder.safetensors")));
    assert_eq!(frozen["n"], tuned["n"]);
    assert_ne!(frozen["mIoU"], tuned["mIoU"], "the decoder was not applied");
}
