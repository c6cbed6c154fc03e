//! Fine-tuning SAM's mask decoder on a referring segmentation dataset (Table 4 of the paper): the image
//! encoder and the prompt encoder stay frozen; prompts are those of inference (the box + the CFPG point);
//! the loss is binary cross-entropy; the optimiser AdamW.
//!
//! Image embeddings are computed once and cached on disk ([`EmbeddingCache`]), so an epoch costs only the
//! decoder's forward and backward passes. The loss is taken on the decoder's low-resolution logits
//! (`4h × 4w`, 256 × 256 for the official models) against the ground-truth mask brought into that frame
//! exactly as SAM brings images into its input (longest side resized to the input, bottom/right zero
//! padding), then averaged over each logit's cell ([`low_res_target`]): a soft target in [0, 1].
//! Validation scores the decoder as inference does (full-size mask, inside the box).

use crate::rrsis::RefSample;
use crate::segment::paste_in_box;
use crate::{BoxSegmenter, PslgError};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use image::GrayImage;
use pslg_cfpg::{ForegroundPoint, Roi, clamp_box};
use pslg_metrics::{Accumulator, MaskStats, Summary, mask_stats_by};
use pslg_sam::{ImageEmbedding, MaskDecoder, Prompt, Sam, SamPredictor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The SAM prompt of a box (pixels, `x2`/`y2` exclusive, clamped) and an optional CFPG point: the official
/// predictor takes the box's corner pixels; a fallback point (the box centre) is not given.
pub(crate) fn sam_prompt(roi: Roi, point: Option<&ForegroundPoint>) -> Prompt {
    let (x1, y1) = (roi.x as f32, roi.y as f32);
    let (x2, y2) = ((roi.x + roi.width) as f32, (roi.y + roi.height) as f32);
    let prompt = Prompt::default().with_box([x1, y1, x2 - 1.0, y2 - 1.0]);
    match point.filter(|p| !p.is_fallback()) {
        Some(p) => prompt.with_point([p.x as f32, p.y as f32], 1),
        None => prompt,
    }
}

/// Hyper-parameters of a decoder fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Fraction of the training samples used (a seeded subset; 0 trains nothing: the frozen decoder).
    pub fraction: f64,
    /// Epochs.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Samples per optimiser step (their mean loss).
    pub batch_size: usize,
    /// Seed of the subset and of the epoch orders.
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            fraction: 1.0,
            epochs: 20,
            lr: 1e-4,
            weight_decay: 1e-2,
            batch_size: 4,
            seed: 0,
        }
    }
}

impl FinetuneConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`PslgError::InvalidParam`] naming the bad one.
    pub fn validate(&self) -> Result<(), PslgError> {
        let bad = |name: &'static str, value: String| Err(PslgError::InvalidParam { name, value });
        if !(0.0..=1.0).contains(&self.fraction) {
            return bad("fraction", self.fraction.to_string());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay.to_string());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into());
        }
        Ok(())
    }

    /// The seeded training subset: `round(fraction · n)` sample indices (at least one when `fraction > 0`),
    /// in dataset order.
    pub fn subset(&self, n: usize) -> Vec<usize> {
        let k = if self.fraction <= 0.0 || n == 0 {
            0
        } else {
            ((self.fraction * n as f64).round() as usize).clamp(1, n)
        };
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(self.seed));
        let mut chosen = idx[..k].to_vec();
        chosen.sort_unstable();
        chosen
    }
}

/// One training or validation example: a sample, its cached image embedding and its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderExample {
    /// The dataset sample (its mask is read on demand).
    pub sample: RefSample,
    /// The cached embedding file.
    pub embedding: PathBuf,
    /// The box prompt, clamped to the image.
    pub roi: Roi,
    /// The SAM prompt (box, and the CFPG point when CFPG found one).
    pub prompt: Prompt,
}

/// Image embeddings on disk, one `.npy` (+ `.json` sizes) per image, named after the image file and a hash
/// of its path: computed once, reused by every epoch and every later run on the same model.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

impl EmbeddingCache {
    /// A cache in `dir` (created when needed). Use one folder per SAM checkpoint.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache file of `image`.
    pub fn path_for(&self, image: &Path) -> PathBuf {
        // FNV-1a over the path: stable across runs and Rust versions (unlike std's hasher).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in image.to_string_lossy().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let stem: String = image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        self.dir.join(format!("{stem}-{h:016x}.npy"))
    }

    /// Builds the examples of `samples`: encodes every image not yet cached with `sam` (each once), runs
    /// CFPG on each sample's ground-truth box when `stages` has it. `progress` is called after each sample.
    ///
    /// # Errors
    /// [`PslgError::ReadImage`] / [`PslgError::Dataset`] for unreadable data or a mask of another size than
    /// its image, [`PslgError::Sam`] when the cache cannot be written; a sample with an empty mask has no box
    /// and is an error too ([`PslgError::Dataset`]).
    pub fn prepare<B: Backend>(
        &self,
        sam: &Sam<B>,
        device: &B::Device,
        samples: &[RefSample],
        stages: &BoxSegmenter,
        mut progress: impl FnMut(),
    ) -> Result<Vec<DecoderExample>, PslgError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| PslgError::Results {
            path: self.dir.clone(),
            reason: format!("cannot create the embedding cache: {e}"),
        })?;
        let mut predictor = SamPredictor::new(sam.clone(), device.clone());
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by(|&a, &b| samples[a].image.cmp(&samples[b].image));
        let mut out: Vec<Option<DecoderExample>> = vec![None; samples.len()];
        let mut current: Option<(PathBuf, image::RgbImage)> = None;
        for i in order {
            let s = &samples[i];
            let file = self.path_for(&s.image);
            let need_image = current.as_ref().is_none_or(|(p, _)| p != &s.image);
            if need_image {
                let image = crate::io::load_rgb(&s.image)?;
                if !file.is_file() {
                    predictor.set_image(&image)?;
                    predictor.embedding()?.save(&file)?;
                }
                current = Some((s.image.clone(), image));
            }
            let Some((_, image)) = current.as_ref() else {
                continue;
            };
            let gt = s.mask()?;
            let dataset_err = |reason: String| PslgError::Dataset {
                path: s.image.clone(),
                record: s.id.clone(),
                reason,
            };
            if gt.dimensions() != image.dimensions() {
                return Err(dataset_err(format!(
                    "the mask is {:?} but the image is {:?} (width, height)",
                    gt.dimensions(),
                    image.dimensions()
                )));
            }
            let bbox = crate::evaluate::mask_box(&gt).ok_or_else(|| {
                dataset_err("the ground-truth mask is empty: no box to prompt".into())
            })?;
            let roi = clamp_box(bbox, image.width(), image.height())?;
            let point = stages
                .cfpg
                .as_ref()
                .map(|g| g.generate(image, bbox))
                .transpose()?;
            out[i] = Some(DecoderExample {
                sample: s.clone(),
                embedding: file,
                roi,
                prompt: sam_prompt(roi, point.as_ref()),
            });
            progress();
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// The ground-truth mask in the decoder's low-resolution frame: resized (bilinear) as SAM resizes the image
/// (longest side = `image_size`), zero-padded to `image_size²`, averaged over `low × low` cells. Values in
/// [0, 1], row-major `low × low`.
///
/// # Errors
/// [`PslgError::InvalidParam`] when `image_size` is not a multiple of `low`.
pub fn low_res_target(mask: &GrayImage, image_size: u32, low: u32) -> Result<Vec<f32>, PslgError> {
    if low == 0 || !image_size.is_multiple_of(low) {
        return Err(PslgError::InvalidParam {
            name: "low-resolution side",
            value: format!("{low} (input {image_size})"),
        });
    }
    let (nh, nw) = pslg_sam::resize::preprocess_shape(mask.height(), mask.width(), image_size);
    let resized = image::imageops::resize(mask, nw, nh, image::imageops::FilterType::Triangle);
    let r = image_size / low;
    let mut out = vec![0f32; (low * low) as usize];
    for (x, y, v) in resized.enumerate_pixels() {
        out[((y / r) * low + x / r) as usize] += f32::from(v[0]) / 255.0;
    }
    let cell = (r * r) as f32;
    out.iter_mut().for_each(|v| *v /= cell);
    Ok(out)
}

/// Mean binary cross-entropy of `logits` against soft `targets` (numerically stable form
/// `max(x, 0) − x·t + log(1 + e^{−|x|})`).
pub fn bce_with_logits<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    targets: Tensor<B, D>,
) -> Tensor<B, 1> {
    let x = logits;
    let loss = x.clone().clamp_min(0.0) - x.clone() * targets + x.abs().neg().exp().log1p();
    loss.mean()
}

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch number (1-based; 0 is the frozen decoder before any training).
    pub epoch: usize,
    /// Mean training loss of the epoch (0 for epoch 0).
    pub train_loss: f64,
    /// Validation mIoU in [0, 1].
    pub val_miou: f64,
    /// Validation oIoU in [0, 1].
    pub val_oiou: f64,
    /// Seconds the epoch took (training and validation).
    pub seconds: f64,
}

/// A decoder fine-tuning run: the trainable decoder, the frozen rest of SAM, AdamW.
pub struct DecoderTrainer<B: AutodiffBackend> {
    frozen: Sam<B::InnerBackend>,
    decoder: MaskDecoder<B>,
    optim: OptimizerAdaptor<AdamW, MaskDecoder<B>, B>,
    config: FinetuneConfig,
    device: B::Device,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Reports of the epochs so far (epoch 0 = the frozen decoder, when validated).
    pub history: Vec<EpochReport>,
}

impl<B: AutodiffBackend> DecoderTrainer<B> {
    /// Starts from `sam` (e.g. an official checkpoint): only its mask decoder will change.
    ///
    /// # Errors
    /// [`PslgError::InvalidParam`] for invalid hyper-parameters.
    pub fn new(sam: Sam<B>, config: FinetuneConfig, device: B::Device) -> Result<Self, PslgError> {
        config.validate()?;
        let frozen = sam.valid();
        let decoder = sam.mask_decoder;
        let optim = AdamWConfig::new()
            .with_weight_decay(config.weight_decay as f32)
            .init::<B, MaskDecoder<B>>();
        Ok(Self {
            frozen,
            decoder,
            optim,
            config,
            device,
            epoch: 0,
            step: 0,
            history: Vec::new(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &FinetuneConfig {
        &self.config
    }

    /// SAM with the current decoder (for inference, saving, validation).
    pub fn model(&self) -> Sam<B::InnerBackend> {
        let mut sam = self.frozen.clone();
        sam.mask_decoder = self.decoder.valid();
        sam
    }

    /// Low-resolution single-mask logits `(1, 1, 4h, 4w)` of an example, on the autodiff backend (the
    /// frozen prompt encoder runs in `predictor`, outside the graph).
    fn forward(
        &self,
        predictor: &mut SamPredictor<B::InnerBackend>,
        pe: &Tensor<B::InnerBackend, 4>,
        ex: &DecoderExample,
    ) -> Result<Tensor<B, 4>, PslgError> {
        let emb = ImageEmbedding::load(&ex.embedding)?;
        predictor.set_embedding(&emb)?;
        let (sparse, dense) = predictor.prompt_embeddings(&ex.prompt)?;
        let image = Tensor::<B, 4>::from_data(TensorData::new(emb.values, emb.shape), &self.device);
        let (low, _) = self.decoder.forward(
            image,
            Tensor::from_inner(pe.clone()),
            Tensor::from_inner(sparse),
            Tensor::from_inner(dense),
            false,
        );
        Ok(low)
    }

    /// One epoch over `train` (shuffled with the run's seed and the epoch number), a step per
    /// `batch_size` examples. Returns the mean loss.
    ///
    /// # Errors
    /// [`PslgError`] for unreadable cache files or masks.
    pub fn train_epoch(
        &mut self,
        train: &[DecoderExample],
        mut progress: impl FnMut(),
    ) -> Result<f64, PslgError> {
        let cfg = self.frozen.config().clone();
        let low = 4 * cfg.grid();
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            self.config.seed.wrapping_add(1 + self.epoch as u64),
        ));
        let mut predictor = SamPredictor::new(self.frozen.clone(), self.device.clone());
        let pe = self.frozen.prompt_encoder.dense_pe(&self.device);
        let mut total = 0.0;
        for chunk in order.chunks(self.config.batch_size) {
            let mut loss: Option<Tensor<B, 1>> = None;
            for &i in chunk {
                let ex = &train[i];
                let target = low_res_target(&ex.sample.mask()?, cfg.image_size as u32, low as u32)?;
                let target = Tensor::<B, 4>::from_data(
                    TensorData::new(target, [1, 1, low, low]),
                    &self.device,
                );
                let l = bce_with_logits(self.forward(&mut predictor, &pe, ex)?, target);
                loss = Some(match loss {
                    Some(acc) => acc + l,
                    None => l,
                });
                progress();
            }
            let Some(loss) = loss else { continue };
            let loss = loss / chunk.len() as f64;
            total += f64::from(loss.clone().into_scalar().elem::<f32>()) * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &self.decoder);
            self.decoder = self.optim.step(self.config.lr, self.decoder.clone(), grads);
            self.step += 1;
        }
        self.epoch += 1;
        Ok(if train.is_empty() {
            0.0
        } else {
            total / train.len() as f64
        })
    }

    /// Scores the current decoder on `val` as inference uses it: single-mask output at the image's size,
    /// kept inside the box.
    ///
    /// # Errors
    /// [`PslgError`] for unreadable cache files or masks.
    pub fn validate(
        &self,
        val: &[DecoderExample],
        mut progress: impl FnMut(),
    ) -> Result<Summary, PslgError> {
        let mut predictor = SamPredictor::new(self.model(), self.device.clone());
        let mut acc = Accumulator::new();
        for ex in val {
            predictor.set_embedding(&ImageEmbedding::load(&ex.embedding)?)?;
            let p = predictor.predict(&ex.prompt, false)?;
            let gt = ex.sample.mask()?;
            let (mask, _) = paste_in_box(&p.best_mask(), (0, 0), ex.roi, gt.dimensions());
            let stats: MaskStats =
                mask_stats_by(mask.as_raw(), gt.as_raw(), |v| *v != 0, |v| *v != 0)?;
            acc.add(stats, ex.sample.category.as_deref());
            progress();
        }
        Ok(acc.summary())
    }

    /// Writes a resumable checkpoint into `dir`: `decoder.safetensors` (official key names; loads with
    /// [`Sam::load_decoder`] / `--decoder`), `optimizer.mpk` and `state.json` (config, epoch, step, history).
    ///
    /// # Errors
    /// [`PslgError::Results`] when a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), PslgError> {
        let err = |reason: String| PslgError::Results {
            path: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        self.model().save_decoder(dir.join("decoder.safetensors"))?;
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        Recorder::<B>::record(&rec, self.optim.to_record(), dir.join("optimizer"))
            .map_err(|e| err(format!("saving the optimizer: {e}")))?;
        let state = serde_json::json!({
            "epoch": self.epoch,
            "step": self.step,
            "config": self.config,
            "history": self.history,
        });
        std::fs::write(dir.join("state.json"), state.to_string()).map_err(|e| err(e.to_string()))
    }

    /// Resumes from a checkpoint [`DecoderTrainer::save`] wrote, over `sam` (the same SAM checkpoint the
    /// run started from).
    ///
    /// # Errors
    /// [`PslgError::Results`] for missing or unreadable files; [`PslgError::Sam`] when the decoder does not
    /// fit `sam`.
    pub fn resume(sam: Sam<B>, dir: &Path, device: B::Device) -> Result<Self, PslgError> {
        let err = |reason: String| PslgError::Results {
            path: dir.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(dir.join("state.json"))
            .map_err(|e| err(format!("state.json: {e}")))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("state.json: {e}")))?;
        let config: FinetuneConfig = serde_json::from_value(state["config"].clone())
            .map_err(|e| err(format!("state.json config: {e}")))?;
        let history: Vec<EpochReport> = serde_json::from_value(state["history"].clone())
            .map_err(|e| err(format!("state.json history: {e}")))?;
        let sam = sam.load_decoder(dir.join("decoder.safetensors"))?;
        let mut t = Self::new(sam, config, device.clone())?;
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let record = Recorder::<B>::load(&rec, dir.join("optimizer"), &device)
            .map_err(|e| err(format!("optimizer record: {e}")))?;
        t.optim = t.optim.load_record(record);
        t.epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        t.step = state["step"].as_u64().unwrap_or(0) as usize;
        t.history = history;
        Ok(t)
    }
}
