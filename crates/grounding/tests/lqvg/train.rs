//! Training pieces: matching, losses, clipping-free steps, save/resume, export, and learning on the toy set.

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use burn_ndarray::NdArray;
use pslg_grounding::{
    Lqvg, Target, TermWeights, TokenBatch, TrainConfig, Trainer, cxcywh_to_xyxy, iou_giou,
    layer_loss, match_queries, normalise, toy_config, toy_samples, toy_tokenizer,
};

type A = Autodiff<NdArray<f32>>;
type B = NdArray<f32>;

#[test]
fn matching_is_the_minimum_cost_assignment() {
    // 5 queries, 2 targets: brute force over all ordered pairs of distinct queries.
    let logits = [0.3f32, -1.0, 2.0, -0.5, 0.1];
    let boxes = [
        0.5, 0.5, 0.2, 0.2, 0.3, 0.3, 0.1, 0.1, 0.52, 0.48, 0.22, 0.18, 0.8, 0.8, 0.1, 0.2, 0.31,
        0.29, 0.12, 0.1,
    ];
    let target = Target {
        boxes: vec![[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]],
        labels: vec![0, 0],
    };
    let w = TermWeights::default();
    let m = match_queries(&logits, &boxes, 1, &target, w, 0.25, 2.0);
    let cost = |q: usize, t: usize| {
        let p = 1.0 / (1.0 + (-logits[q]).exp());
        let neg = 0.75 * p * p * -((1.0 - p + 1e-8f32).ln());
        let pos = 0.25 * (1.0 - p) * (1.0 - p) * -((p + 1e-8f32).ln());
        let b = &boxes[q * 4..q * 4 + 4];
        let tb = target.boxes[t];
        let l1: f32 = (0..4).map(|k| (b[k] - tb[k]).abs()).sum();
        let (_, giou) = iou_giou(cxcywh_to_xyxy([b[0], b[1], b[2], b[3]]), cxcywh_to_xyxy(tb));
        2.0 * (pos - neg) + 5.0 * l1 - 2.0 * giou
    };
    let mut best = (f32::INFINITY, 0, 0);
    for a in 0..5 {
        for b in 0..5 {
            if a != b && cost(a, 0) + cost(b, 1) < best.0 {
                best = (cost(a, 0) + cost(b, 1), a, b);
            }
        }
    }
    let mut m = m;
    m.sort_by_key(|&(_, t)| t);
    assert_eq!(m, vec![(best.1, 0), (best.2, 1)]);
    // One target: the single cheapest query (the official matcher's rule).
    let one = Target {
        boxes: vec![[0.8, 0.8, 0.1, 0.2]],
        labels: vec![0],
    };
    let m = match_queries(&logits, &boxes, 1, &one, w, 0.25, 2.0);
    let argmin = (0..5)
        .map(|q| {
            let p = 1.0 / (1.0 + (-logits[q]).exp());
            let neg = 0.75 * p * p * -((1.0 - p + 1e-8f32).ln());
            let pos = 0.25 * (1.0 - p) * (1.0 - p) * -((p + 1e-8f32).ln());
            let b = &boxes[q * 4..q * 4 + 4];
            let l1: f32 = (0..4).map(|k| (b[k] - one.boxes[0][k]).abs()).sum();
            let (_, g) = iou_giou(
                cxcywh_to_xyxy([b[0], b[1], b[2], b[3]]),
                cxcywh_to_xyxy(one.boxes[0]),
            );
            (2.0 * (pos - neg) + 5.0 * l1 - 2.0 * g, q)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|x| x.1)
        .unwrap();
    assert_eq!(m, vec![(argmin, 0)]);
}

#[test]
fn losses_match_their_definitions() {
    let device = Default::default();
    let logits = [1.5f32, -2.0, 0.25];
    let boxes = [
        0.5f32, 0.5, 0.4, 0.2, 0.2, 0.7, 0.1, 0.1, 0.6, 0.4, 0.3, 0.5,
    ];
    let target = Target {
        boxes: vec![[0.55, 0.45, 0.3, 0.3]],
        labels: vec![0],
    };
    let l = layer_loss(
        Tensor::<B, 3>::from_data(TensorData::new(logits.to_vec(), [1, 3, 1]), &device),
        Tensor::<B, 3>::from_data(TensorData::new(boxes.to_vec(), [1, 3, 4]), &device),
        std::slice::from_ref(&target),
        &[vec![(2, 0)]],
        &TrainConfig::default(),
    );
    // Focal loss by hand: query 2 is positive, 0 and 1 negative.
    let focal = |x: f32, t: f32| {
        let p = 1.0 / (1.0 + (-x).exp());
        let ce = -(t * p.ln() + (1.0 - t) * (1.0 - p).ln());
        let pt = p * t + (1.0 - p) * (1.0 - t);
        let at = 0.25 * t + 0.75 * (1.0 - t);
        at * ce * (1.0 - pt).powi(2)
    };
    let want_class = focal(1.5, 0.0) + focal(-2.0, 0.0) + focal(0.25, 1.0);
    let want_l1: f32 = (0..4)
        .map(|k| (boxes[8 + k] - target.boxes[0][k]).abs())
        .sum();
    let (_, g) = iou_giou(
        cxcywh_to_xyxy([boxes[8], boxes[9], boxes[10], boxes[11]]),
        cxcywh_to_xyxy(target.boxes[0]),
    );
    let v = |t: Tensor<B, 1>| t.into_scalar();
    assert!((v(l.class) - want_class).abs() < 1e-5);
    assert!((v(l.bbox) - want_l1).abs() < 1e-5);
    assert!((v(l.giou) - (1.0 - g)).abs() < 1e-5);
}

fn toy_batch(n: usize, seed: u64) -> (Tensor<A, 4>, TokenBatch, Vec<Target>) {
    let device = Default::default();
    let tok = toy_tokenizer().unwrap();
    let s = toy_samples(n, 64, seed);
    let x = Tensor::cat(
        s.iter()
            .map(|s| normalise::<A>(&s.image, &device))
            .collect(),
        0,
    );
    let ids: Vec<Vec<u32>> = s.iter().map(|s| tok.encode(&s.text).unwrap()).collect();
    let t = s
        .iter()
        .map(|s| Target::from_xyxy(s.box_xyxy, 64))
        .collect();
    (x, TokenBatch::pad(&ids, 0).unwrap(), t)
}

fn logits_of(model: &Lqvg<B>) -> Vec<f32> {
    let (x, tokens, _) = toy_batch(2, 99);
    let x = x.inner();
    let out = model.forward(x, &tokens).unwrap();
    out.logits
        .last()
        .unwrap()
        .clone()
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn save_resume_and_export_round_trip() {
    let device = Default::default();
    let config = TrainConfig {
        lr: 1e-3,
        lr_backbone: 1e-3,
        lr_text: 1e-3,
        train_backbone_stem: true,
        warmup_steps: 4,
        ..TrainConfig::default()
    };
    let model = Lqvg::<A>::new(toy_config(), false, &device)
        .unwrap()
        .init_detr();
    let before = logits_of(&model.valid());
    let mut trainer = Trainer::new(model, config.clone());
    let (x, tokens, targets) = toy_batch(4, 1);
    let s1 = trainer.step(x.clone(), &tokens, &targets).unwrap();
    assert!(s1.loss.is_finite() && s1.grad_norm > 0.0);
    assert!((s1.lr - 1e-3 / 4.0).abs() < 1e-12, "warm-up: {}", s1.lr);
    let after = logits_of(&trainer.model().valid());
    assert_ne!(before, after, "a step must change the model");
    trainer.epoch = 3;
    let dir = std::env::temp_dir().join(format!("pslg-train-{}", std::process::id()));
    trainer.save(&dir).unwrap();
    let resumed = Trainer::<A>::resume(&dir, &device).unwrap();
    assert_eq!((resumed.step, resumed.epoch), (1, 3));
    assert_eq!(resumed.config(), &config);
    let r = logits_of(&resumed.model().valid());
    assert!(
        after
            .iter()
            .zip(&r)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(1.0))
    );
    // The exported state dict uses the official names and loads like an official checkpoint.
    let exported = Lqvg::<B>::load(
        dir.join("model.safetensors"),
        toy_config().text,
        Some(4),
        &device,
    )
    .unwrap();
    assert_eq!(exported.config(), &toy_config());
    let e = logits_of(&exported);
    assert!(
        after
            .iter()
            .zip(&e)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(1.0))
    );
    // Resuming continues the optimiser: the next step works and counts on.
    let mut resumed = resumed;
    let s2 = resumed.step(x, &tokens, &targets).unwrap();
    assert!(s2.loss.is_finite());
    assert_eq!(resumed.step, 2);
    assert!(Trainer::<A>::resume(dir.join("nowhere"), &device).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
