//! The LQVG training workflow over epochs, as a library call: prepared splits (each image letterboxed
//! once), a seeded shuffle that a resumed run repeats exactly, validation after every epoch, and the
//! `OUT/last` / `OUT/best` checkpoints, with progress through a callback.
//!
//! `pslg train-grounding` is this function behind command-line flags.

use crate::{
    BoxMetrics, DiorRsvg, GroundingError, Letterbox, Target, TextTokenizer, TokenBatch, Trainer,
    chosen_boxes, letterbox, normalise, normalise_caption,
};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One referring expression of a [`PreparedSplit`]: its letterboxed image (by index), token ids and target
/// box in input pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedItem {
    /// Index into [`PreparedSplit::images`].
    pub image: usize,
    /// Token ids of the normalised caption.
    pub ids: Vec<u32>,
    /// Target box `[x1, y1, x2, y2]` in the letterboxed input's pixels.
    pub box_input: [f32; 4],
}

/// A training or validation split ready for the model: every distinct image letterboxed **once** and
/// shared by all its expressions (DIOR-RSVG has several per image; one 800² copy per expression would
/// take tens of GB).
#[derive(Debug, Clone, Default)]
pub struct PreparedSplit {
    size: usize,
    images: Vec<RgbImage>,
    /// How each image was letterboxed (maps its boxes into input pixels).
    letterboxes: Vec<Letterbox>,
    items: Vec<PreparedItem>,
    /// Image key → index into `images`.
    index: BTreeMap<PathBuf, usize>,
}

impl PreparedSplit {
    /// An empty split of `size`² inputs.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            ..Self::default()
        }
    }

    /// The split file `split` (one object index per line) of a DIOR-RSVG-layout dataset, tokenised with
    /// `tok` and letterboxed to `size`².
    ///
    /// # Errors
    /// The reader's errors (naming the file and line); [`GroundingError::Io`] / [`GroundingError::Image`]
    /// for an image that cannot be decoded; [`GroundingError::Dataset`] when the split selects nothing.
    pub fn from_dior(
        ds: &DiorRsvg,
        split: &Path,
        tok: &TextTokenizer,
        size: usize,
    ) -> Result<Self, GroundingError> {
        let samples = ds.split(split)?;
        if samples.is_empty() {
            return Err(GroundingError::Dataset {
                path: split.to_path_buf(),
                line: 0,
                reason: "the split selects no object: list object indices, one per line".into(),
            });
        }
        let mut out = Self::new(size);
        for s in samples {
            let ids = tok.encode(&normalise_caption(&s.text))?;
            out.push_with(&s.image, s.box_xyxy, ids, || {
                image::open(&s.image)
                    .map(|i| i.to_rgb8())
                    .map_err(|e| GroundingError::Image(format!("{}: {e}", s.image.display())))
            })?;
        }
        Ok(out)
    }

    /// Adds an expression with token ids `ids` referring to box `box_xyxy` (original image pixels) of the
    /// image known as `key`; `load` is called only the first time `key` is seen, and the image is
    /// letterboxed once.
    ///
    /// # Errors
    /// What `load` returns; [`GroundingError::Image`] for an empty image.
    pub fn push_with(
        &mut self,
        key: &Path,
        box_xyxy: [f32; 4],
        ids: Vec<u32>,
        load: impl FnOnce() -> Result<RgbImage, GroundingError>,
    ) -> Result<(), GroundingError> {
        let image = match self.index.get(key) {
            Some(&i) => i,
            None => {
                let (boxed, lb) = letterbox(&load()?, self.size)?;
                self.images.push(boxed);
                self.letterboxes.push(lb);
                self.index.insert(key.to_path_buf(), self.images.len() - 1);
                self.images.len() - 1
            }
        };
        self.items.push(PreparedItem {
            image,
            ids,
            box_input: self.letterboxes[image].apply(box_xyxy),
        });
        Ok(())
    }

    /// The input side.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The distinct letterboxed images.
    pub fn images(&self) -> &[RgbImage] {
        &self.images
    }

    /// The expressions.
    pub fn items(&self) -> &[PreparedItem] {
        &self.items
    }

    /// Number of expressions.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no expression.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The expressions `picks` as the model's normalised image batch and padded tokens.
    ///
    /// # Errors
    /// [`GroundingError::Text`] for an expression without tokens.
    pub fn batch<B: Backend>(
        &self,
        picks: &[usize],
        pad: u32,
        device: &B::Device,
    ) -> Result<(Tensor<B, 4>, TokenBatch), GroundingError> {
        let images: Vec<Tensor<B, 4>> = picks
            .iter()
            .map(|&i| normalise::<B>(&self.images[self.items[i].image], device))
            .collect();
        let ids: Vec<Vec<u32>> = picks.iter().map(|&i| self.items[i].ids.clone()).collect();
        Ok((Tensor::cat(images, 0), TokenBatch::pad(&ids, pad)?))
    }
}

/// The order in which epoch `epoch` (0-based) visits `n` training expressions: a permutation drawn from a
/// generator seeded by `seed` and the epoch alone, so a run resumed after any epoch shuffles exactly as an
/// uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mix = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(mix));
    order
}

/// Settings of [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Epochs to reach, counting those a resumed trainer already ran.
    pub epochs: usize,
    /// Expressions per step.
    pub batch_size: usize,
    /// Shuffling seed ([`epoch_order`]).
    pub seed: u64,
    /// Output folder: `last/` after every epoch, `best/` whenever validation Pr@0.5 beats every earlier
    /// epoch's, including those of the run being resumed.
    pub out: PathBuf,
}

/// What one epoch of [`fit`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epochs completed (1-based).
    pub epoch: usize,
    /// Optimiser steps taken in all.
    pub step: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Validation metrics after the epoch.
    pub val: BoxMetrics,
    /// Whether `out/best` was written.
    pub best: bool,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

/// Progress of [`fit`].
#[derive(Debug)]
pub enum FitEvent<'a> {
    /// A training step of epoch `epoch` (1-based) finished: `done` of `steps`, on these expressions.
    Step {
        /// The epoch being trained.
        epoch: usize,
        /// Steps done in this epoch.
        done: usize,
        /// Steps in this epoch.
        steps: usize,
        /// The expressions of the step (indices into the training split).
        picks: &'a [usize],
    },
    /// An epoch ended, validated and saved.
    Epoch(&'a EpochReport),
}

/// The validation Pr@0.5 of the checkpoint in `dir`, from the `metrics.json` that [`fit`] writes beside it.
pub fn saved_pr_at_05(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("metrics.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["val"]["Pr@0.5"].as_f64()
}

/// Trains until `config.epochs`, validating on `val` after every epoch and saving `out/last` (every
/// epoch) and `out/best` (when validation Pr@0.5 is higher than every earlier epoch's: a resumed run reads
/// the best so far from `out/best/metrics.json`). Each saved folder gets a `metrics.json` with its epoch's
/// report. Returns the reports of the epochs run here.
///
/// # Errors
/// [`GroundingError::Config`] for a zero batch size or an empty training split; the model's, the batch's and
/// the checkpoint writer's errors.
pub fn fit<B: AutodiffBackend>(
    trainer: &mut Trainer<B>,
    train: &PreparedSplit,
    val: &PreparedSplit,
    config: &FitConfig,
    device: &B::Device,
    mut progress: impl FnMut(FitEvent<'_>),
) -> Result<Vec<EpochReport>, GroundingError> {
    if config.batch_size == 0 {
        return Err(GroundingError::Config(
            "the batch size must be positive".into(),
        ));
    }
    if train.is_empty() {
        return Err(GroundingError::Config("the training split is empty".into()));
    }
    let size = train.size();
    let pad = trainer.model().config().text.pad_token_id as u32;
    let best_dir = config.out.join("best");
    let mut best = saved_pr_at_05(&best_dir).unwrap_or(f64::NEG_INFINITY);
    let mut reports = Vec::new();
    while trainer.epoch < config.epochs {
        let t0 = Instant::now();
        let epoch = trainer.epoch + 1;
        let order = epoch_order(train.len(), config.seed, trainer.epoch);
        let steps = order.len().div_ceil(config.batch_size);
        let mut loss_sum = 0.0;
        for (done, picks) in order.chunks(config.batch_size).enumerate() {
            let (x, tokens) = train.batch::<B>(picks, pad, device)?;
            let targets: Vec<Target> = picks
                .iter()
                .map(|&i| Target::from_xyxy(train.items()[i].box_input, size))
                .collect();
            loss_sum += trainer.step(x, &tokens, &targets)?.loss;
            progress(FitEvent::Step {
                epoch,
                done: done + 1,
                steps,
                picks,
            });
        }
        trainer.epoch += 1;
        let val_metrics = validate(trainer, val, pad, config.batch_size, device)?;
        let mut report = EpochReport {
            epoch: trainer.epoch,
            step: trainer.step,
            train_loss: loss_sum / steps.max(1) as f64,
            val: val_metrics,
            best: val_metrics.pr_at_05 > best,
            seconds: 0.0,
        };
        let last = config.out.join("last");
        trainer.save(&last)?;
        write_metrics(&last, &report)?;
        if report.best {
            best = val_metrics.pr_at_05;
            trainer.save(&best_dir)?;
            write_metrics(&best_dir, &report)?;
        }
        report.seconds = t0.elapsed().as_secs_f64();
        progress(FitEvent::Epoch(&report));
        reports.push(report);
    }
    Ok(reports)
}

/// Validation metrics of the trainer's model on `val` (inference backend, batches of `batch`).
fn validate<B: AutodiffBackend>(
    trainer: &Trainer<B>,
    val: &PreparedSplit,
    pad: u32,
    batch: usize,
    device: &B::Device,
) -> Result<BoxMetrics, GroundingError> {
    let model = trainer.model().valid();
    let mut pairs = Vec::with_capacity(val.len());
    let all: Vec<usize> = (0..val.len()).collect();
    for picks in all.chunks(batch.max(1)) {
        let (x, tokens) = val.batch::<B::InnerBackend>(picks, pad, device)?;
        let out = model.forward(x, &tokens)?;
        for (p, &i) in chosen_boxes(&out, val.size()).into_iter().zip(picks) {
            pairs.push((p, val.items()[i].box_input));
        }
    }
    Ok(BoxMetrics::compute(&pairs))
}

/// `dir/metrics.json`: the epoch's report, read back by [`saved_pr_at_05`].
fn write_metrics(dir: &Path, r: &EpochReport) -> Result<(), GroundingError> {
    let path = dir.join("metrics.json");
    let json = serde_json::json!({
        "epoch": r.epoch,
        "step": r.step,
        "train_loss": r.train_loss,
        "val": {"n": r.val.n, "Pr@0.5": r.val.pr_at_05, "meanIoU": r.val.mean_iou, "cumIoU": r.val.cum_iou},
    });
    std::fs::write(&path, json.to_string()).map_err(|source| GroundingError::Io { path, source })
}
