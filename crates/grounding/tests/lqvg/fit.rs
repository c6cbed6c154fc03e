//! The training workflow ([`pslg_grounding::fit`]): prepared splits share images, a resumed run shuffles as
//! an uninterrupted one, and `best` survives a resume.

use burn::backend::Autodiff;
use burn_ndarray::NdArray;
use pslg_grounding::{
    FitConfig, FitEvent, Lqvg, PreparedSplit, TrainConfig, Trainer, epoch_order, fit,
    saved_pr_at_05, toy_config, toy_samples, toy_tokenizer,
};
use std::path::{Path, PathBuf};

type A = Autodiff<NdArray<f32>>;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pslg-fit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` toy images of 64², each referred to by `per_image` expressions (the same sentence).
fn split(n: usize, per_image: usize, seed: u64) -> PreparedSplit {
    let tok = toy_tokenizer().unwrap();
    let mut s = PreparedSplit::new(64);
    for (i, sample) in toy_samples(n, 64, seed).into_iter().enumerate() {
        for _ in 0..per_image {
            let ids = tok.encode(&sample.text).unwrap();
            let img = sample.image.clone();
            s.push_with(Path::new(&format!("img{i}")), sample.box_xyxy, ids, || {
                Ok(img)
            })
            .unwrap();
        }
    }
    s
}

/// A trainer whose learning rates are 0: the weights never change, so every epoch validates alike.
fn frozen_trainer() -> Trainer<A> {
    let device = Default::default();
    let model = Lqvg::<A>::new(toy_config(), false, &device)
        .unwrap()
        .init_detr();
    Trainer::new(
        model,
        TrainConfig {
            lr: 0.0,
            lr_backbone: 0.0,
            lr_text: 0.0,
            train_backbone_stem: true,
            ..TrainConfig::default()
        },
    )
}

/// Runs `fit` to `epochs` and returns the expressions of every step, in order, with the epochs' `best`.
fn run(trainer: &mut Trainer<A>, out: &Path, epochs: usize) -> (Vec<Vec<usize>>, Vec<bool>) {
    let (train, val) = (split(6, 2, 3), split(2, 1, 4));
    let config = FitConfig {
        epochs,
        batch_size: 4,
        seed: 11,
        out: out.to_path_buf(),
    };
    let mut picks = Vec::new();
    let reports = fit(trainer, &train, &val, &config, &Default::default(), |e| {
        if let FitEvent::Step { picks: p, .. } = e {
            picks.push(p.to_vec());
        }
    })
    .unwrap();
    (picks, reports.iter().map(|r| r.best).collect())
}

#[test]
fn prepared_split_letterboxes_each_image_once() {
    let s = split(3, 4, 1);
    assert_eq!((s.len(), s.images().len()), (12, 3));
    assert!(s.items().iter().all(|it| it.image < 3));
    assert_eq!(s.items()[0].box_input, s.items()[3].box_input);
}

#[test]
fn epoch_order_is_a_permutation_fixed_by_seed_and_epoch() {
    let o = epoch_order(10, 7, 2);
    let mut sorted = o.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(o, epoch_order(10, 7, 2));
    assert_ne!(epoch_order(10, 7, 1), epoch_order(10, 7, 2));
}

#[test]
fn a_resumed_fit_shuffles_and_keeps_best_as_an_uninterrupted_one() {
    // Uninterrupted: two epochs.
    let whole = tmp("whole");
    let (picks_whole, best_whole) = run(&mut frozen_trainer(), &whole, 2);
    assert_eq!(
        picks_whole.len(),
        6,
        "12 expressions in steps of 4, two epochs"
    );
    assert_eq!(
        best_whole,
        vec![true, false],
        "frozen weights: epoch 2 is no better"
    );

    // One epoch, then a resume from `last` for the second.
    let split_run = tmp("split");
    let (mut picks, best_first) = run(&mut frozen_trainer(), &split_run, 1);
    assert_eq!(best_first, vec![true]);
    let pr = saved_pr_at_05(&split_run.join("best")).expect("best/metrics.json");
    let mut resumed = Trainer::<A>::resume(split_run.join("last"), &Default::default()).unwrap();
    assert_eq!(resumed.epoch, 1);
    let (picks_rest, best_rest) = run(&mut resumed, &split_run, 2);
    picks.extend(picks_rest);
    assert_eq!(
        picks, picks_whole,
        "the resumed run visits the expressions in the same order"
    );
    assert_eq!(
        best_rest,
        vec![false],
        "the resumed epoch does not beat epoch 1's Pr@0.5 {pr}"
    );
    let best: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(split_run.join("best/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(best["epoch"], 1, "best/ still holds epoch 1");
}

#[test]
fn an_export_that_cannot_be_written_is_a_write_error() {
    use burn::module::AutodiffModule;
    let file = tmp("write").join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = pslg_grounding::export_safetensors(
        &frozen_trainer().model().valid(),
        file.join("model.safetensors"),
    )
    .unwrap_err();
    assert!(
        matches!(err, pslg_grounding::GroundingError::Write { .. }),
        "{err}"
    );
}
