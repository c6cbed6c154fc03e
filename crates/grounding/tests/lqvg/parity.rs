//! Parity with the official LQVG code on random weights (`scripts/lqvg_reference.py`): the committed tiny
//! fixture always runs; the full-size one (ResNet-50, RoBERTa-sized text encoder, 800×800) runs with
//! `--ignored` after `python3 scripts/lqvg_reference.py LQVG_CHECKOUT full target/lqvg-fixtures/full`.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use burn_ndarray::NdArray;
use pslg_grounding::{Grounder, Lqvg, ResNetConfig, TextConfig, TokenBatch, letterbox, normalise};
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lqvg-tiny")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("json")
}

fn ids_of(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect()
        })
        .collect()
}

fn check(name: &str, got: Vec<f32>, dir: &Path, file: &str, tol: f32) -> f32 {
    let (_, want) = common::read_npy(&dir.join(file));
    let err = common::rel_err(&got, &want);
    eprintln!("{name}: worst relative error {err:.2e}");
    assert!(err < tol, "{name}: relative error {err} ≥ {tol}");
    err
}

fn run_parity(dir: &Path) {
    let device = Default::default();
    let text = TextConfig::from_hf_json(dir.join("text_config.json")).expect("text config");
    let model = Lqvg::<B>::load(dir.join("checkpoint.pth"), text, None, &device).expect("load");
    let cfg = model.config().clone();
    eprintln!("inferred: {cfg:?}");

    // Preprocessing: the official letterbox (cv2 INTER_AREA) and normalisation.
    let image = image::open(dir.join("image.png")).expect("image").to_rgb8();
    let want_boxed = image::open(dir.join("letterboxed.png"))
        .expect("png")
        .to_rgb8();
    let case0 = json(&dir.join("case_0.json"));
    let size = case0["input_size"].as_u64().expect("size") as usize;
    let (boxed, lb) = letterbox(&image, size).expect("letterbox");
    assert_eq!(boxed.dimensions(), want_boxed.dimensions());
    let differ = boxed
        .as_raw()
        .iter()
        .zip(want_boxed.as_raw())
        .filter(|(a, b)| a != b)
        .count();
    eprintln!(
        "letterbox: {differ} of {} bytes differ from cv2",
        boxed.as_raw().len()
    );
    assert_eq!(differ, 0, "letterbox differs from the official cv2 output");
    assert!((lb.ratio - case0["ratio"].as_f64().expect("ratio")).abs() < 1e-12);
    assert!((lb.dw - case0["dw"].as_f64().expect("dw")).abs() < 1e-12);
    assert!((lb.dh - case0["dh"].as_f64().expect("dh")).abs() < 1e-12);
    let input = normalise::<B>(&boxed, &device);
    check(
        "normalised input",
        input.clone().into_data().to_vec().expect("f32"),
        dir,
        "input.npy",
        1e-6,
    );

    let mut case = 0;
    while dir.join(format!("case_{case}.json")).is_file() {
        let c = json(&dir.join(format!("case_{case}.json")));
        let ids = ids_of(&c["ids"]);
        let tokens = TokenBatch::pad(&ids, cfg.text.pad_token_id as u32).expect("pad");
        assert_eq!(
            tokens.ids,
            ids_of(&c["input_ids"]).concat(),
            "padding differs from the official batch"
        );
        let n = ids.len();
        let (shape, data) = common::read_npy(&dir.join("input.npy"));
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(data, [shape[0], shape[1], shape[2], shape[3]]),
            &device,
        )
        .repeat_dim(0, n);
        let out = model.forward(x, &tokens).expect("forward");
        let logits: Vec<f32> = Tensor::stack::<4>(out.logits.clone(), 0)
            .into_data()
            .to_vec()
            .expect("f32");
        let boxes: Vec<f32> = Tensor::stack::<4>(out.boxes.clone(), 0)
            .into_data()
            .to_vec()
            .expect("f32");
        check(
            &format!("case {case} logits (every decoder layer)"),
            logits,
            dir,
            &format!("case_{case}_logits.npy"),
            1e-4,
        );
        check(
            &format!("case {case} boxes (every decoder layer)"),
            boxes,
            dir,
            &format!("case_{case}_boxes.npy"),
            1e-4,
        );
        case += 1;
    }
    assert!(case > 0, "no case in {}", dir.display());

    // The whole predictor: image + ids → box in original pixels, as inference_rsvg.py.
    let ids = ids_of(&case0["ids"]).remove(0);
    let grounder = Grounder::new(model, None, device).with_input_size(size);
    let g = grounder.predict_ids(&image, &ids).expect("predict");
    assert_eq!(g.query as u64, case0["query"].as_u64().expect("query"));
    let want: Vec<f32> = case0["box_xyxy"]
        .as_array()
        .expect("box")
        .iter()
        .map(|v| v.as_f64().expect("f") as f32)
        .collect();
    let err = common::rel_err(&g.box_xyxy, &want);
    eprintln!(
        "box {:?} vs official {want:?}: relative error {err:.2e}",
        g.box_xyxy
    );
    assert!(err < 1e-4);
    assert!((g.score - case0["score"].as_f64().expect("score") as f32).abs() < 1e-4);
}

#[test]
fn tiny_matches_official_lqvg() {
    let dir = tiny_dir();
    run_parity(&dir);
    let text = TextConfig::from_hf_json(dir.join("text_config.json")).expect("text config");
    let model =
        Lqvg::<B>::load(dir.join("checkpoint.pth"), text, None, &Default::default()).expect("load");
    let cfg = model.config();
    assert_eq!(
        cfg.backbone,
        ResNetConfig {
            stem: 8,
            planes: [4, 8, 16, 32],
            blocks: [1, 2, 1, 1],
            expansion: 4
        }
    );
    assert_eq!(
        (
            cfg.hidden_dim,
            cfg.enc_layers,
            cfg.dec_layers,
            cfg.num_queries
        ),
        (32, 2, 2, 3)
    );
    assert_eq!(
        (cfg.enc_points, cfg.dec_points, cfg.num_feature_levels),
        (2, 3, 4)
    );
    assert_eq!(cfg.text.layer_norm_eps, 1e-5);
}

#[test]
#[ignore = "needs target/lqvg-fixtures/full from scripts/lqvg_reference.py (about 600 MB)"]
fn full_size_matches_official_lqvg() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lqvg-fixtures/full");
    assert!(
        dir.join("checkpoint.pth").is_file(),
        "run: python3 scripts/lqvg_reference.py LQVG_CHECKOUT full target/lqvg-fixtures/full"
    );
    run_parity(&dir);
}
