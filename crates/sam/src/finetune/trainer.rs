//! The trainable decoder over the frozen rest of SAM: epochs, validation, resumable checkpoints.

use super::{DecoderExample, FinetuneConfig, FinetuneError, bce_with_logits, low_res_target};
use crate::{ImageEmbedding, MaskDecoder, Sam, SamPredictor};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use pslg_core::paste_in_box;
use pslg_metrics::{Accumulator, MaskStats, Summary, mask_stats_by};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

impl EpochReport {
    /// The report as one JSON line of a run's log: `{"epoch", "train_loss", "val_mIoU", "val_oIoU",
    /// "seconds"}`, IoUs in percent, IoUs and seconds rounded to 2 decimals.
    pub fn to_json(&self) -> serde_json::Value {
        let round2 = |x: f64| (x * 100.0).round() / 100.0;
        serde_json::json!({
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_mIoU": round2(100.0 * self.val_miou),
            "val_oIoU": round2(100.0 * self.val_oiou),
            "seconds": round2(self.seconds),
        })
    }
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
    /// [`FinetuneError::InvalidParam`] for invalid hyper-parameters.
    pub fn new(
        sam: Sam<B>,
        config: FinetuneConfig,
        device: B::Device,
    ) -> Result<Self, FinetuneError> {
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

    /// The epoch of the best validation mIoU so far (the first of equals; 0 before any report).
    pub fn best_epoch(&self) -> usize {
        let mut best: Option<&EpochReport> = None;
        for r in &self.history {
            if best.is_none_or(|b| r.val_miou > b.val_miou) {
                best = Some(r);
            }
        }
        best.map_or(0, |r| r.epoch)
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
    ) -> Result<Tensor<B, 4>, FinetuneError> {
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
    /// [`FinetuneError`] for unreadable cache files or masks.
    pub fn train_epoch(
        &mut self,
        train: &[DecoderExample],
        mut progress: impl FnMut(),
    ) -> Result<f64, FinetuneError> {
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
    /// [`FinetuneError`] for unreadable cache files or masks.
    pub fn validate(
        &self,
        val: &[DecoderExample],
        mut progress: impl FnMut(),
    ) -> Result<Summary, FinetuneError> {
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
    /// [`FinetuneError::Files`] when a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), FinetuneError> {
        let err = |reason: String| FinetuneError::Files {
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
    /// [`FinetuneError::Files`] for missing or unreadable files; [`FinetuneError::Sam`] when the decoder does not
    /// fit `sam`.
    pub fn resume(sam: Sam<B>, dir: &Path, device: B::Device) -> Result<Self, FinetuneError> {
        let err = |reason: String| FinetuneError::Files {
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
