//! The training run (official `engine.py` / `main.py`): AdamW with parameter groups, global gradient-norm
//! clipping, warm-up and step decay, frozen parts, checkpoints that resume, the official-key export.

use super::{StepStats, Target, TrainConfig, cxcywh_to_xyxy, layer_loss, match_queries};
use crate::load::KEYS;
use crate::model::{Lqvg, LqvgOutput};
use crate::text::TokenBatch;
use crate::{GroundingError, LqvgConfig};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use std::path::Path;

/// The chosen box (`xyxy` in input pixels of a square `size` input) of every image of a forward pass.
pub fn chosen_boxes<B: Backend>(out: &LqvgOutput<B>, size: usize) -> Vec<[f32; 4]> {
    let (Some(logits), Some(boxes)) = (out.logits.last(), out.boxes.last()) else {
        return Vec::new();
    };
    let [n, q, c] = logits.dims();
    let l = logits
        .clone()
        .into_data()
        .to_vec::<f32>()
        .unwrap_or_default();
    let b = boxes
        .clone()
        .into_data()
        .to_vec::<f32>()
        .unwrap_or_default();
    let s = size as f32;
    (0..n)
        .map(|i| {
            let score = |qi: usize| {
                (0..c)
                    .map(|k| l[(i * q + qi) * c + k])
                    .fold(f32::NEG_INFINITY, f32::max)
            };
            let best = (0..q).fold(
                0,
                |best, qi| if score(qi) > score(best) { qi } else { best },
            );
            let o = (i * q + best) * 4;
            let r = cxcywh_to_xyxy([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            [r[0] * s, r[1] * s, r[2] * s, r[3] * s]
        })
        .collect()
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sum += g.powf_scalar(2.0).sum().into_scalar().elem::<f64>();
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(id) {
            self.grads
                .register::<B::InnerBackend, D>(id, g * self.factor);
        }
    }
}

/// Marks the parameters training must not change: every frozen BatchNorm, the ResNet stem and stage 1
/// (unless `train_backbone_stem`), the whole backbone when its learning rate is 0, the text encoder when
/// its learning rate is 0.
pub fn freeze_for_training<B: AutodiffBackend>(mut model: Lqvg<B>, cfg: &TrainConfig) -> Lqvg<B> {
    let bb = &mut model.backbone;
    bb.bn1 = bb.bn1.clone().no_grad();
    for stage in [
        &mut bb.layer1,
        &mut bb.layer2,
        &mut bb.layer3,
        &mut bb.layer4,
    ] {
        for block in stage.iter_mut() {
            block.bn1 = block.bn1.clone().no_grad();
            block.bn2 = block.bn2.clone().no_grad();
            block.bn3 = block.bn3.clone().no_grad();
            if let Some(d) = block.downsample.as_mut() {
                d.bn = d.bn.clone().no_grad();
            }
        }
    }
    if !cfg.train_backbone_stem {
        bb.conv1 = bb.conv1.clone().no_grad();
        bb.layer1 = bb.layer1.clone().into_iter().map(Module::no_grad).collect();
    }
    if cfg.lr_backbone == 0.0 {
        model.backbone = model.backbone.no_grad();
    }
    if cfg.lr_text == 0.0 {
        model.text_encoder = model.text_encoder.no_grad();
    }
    model
}

/// A training run: the model, AdamW and the step counter.
pub struct Trainer<B: AutodiffBackend> {
    model: Lqvg<B>,
    optim: OptimizerAdaptor<AdamW, Lqvg<B>, B>,
    config: TrainConfig,
    /// Optimiser steps taken.
    pub step: usize,
    /// Epochs completed.
    pub epoch: usize,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Starts training `model` (freshly initialised or loaded from a checkpoint).
    pub fn new(model: Lqvg<B>, config: TrainConfig) -> Self {
        let optim = AdamWConfig::new()
            .with_weight_decay(config.weight_decay)
            .with_epsilon(1e-8)
            .init::<B, Lqvg<B>>();
        Self {
            model: freeze_for_training(model, &config),
            optim,
            config,
            step: 0,
            epoch: 0,
        }
    }

    /// The model being trained.
    pub fn model(&self) -> &Lqvg<B> {
        &self.model
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Learning-rate factor of the current step and epoch: linear warm-up, then `lr_gamma` per passed
    /// `lr_drop` epoch.
    pub fn lr_factor(&self) -> f64 {
        let warm = if self.config.warmup_steps > 0 && self.step < self.config.warmup_steps {
            (self.step + 1) as f64 / self.config.warmup_steps as f64
        } else {
            1.0
        };
        let drops = self
            .config
            .lr_drop
            .iter()
            .filter(|&&e| self.epoch >= e)
            .count();
        warm * self.config.lr_gamma.powi(drops as i32)
    }

    /// One optimisation step on a batch: `images (N, 3, S, S)` normalised, one sentence per image, one target
    /// per image.
    ///
    /// # Errors
    /// [`GroundingError::Text`] for mismatched batch sizes or tokens the text encoder cannot take.
    pub fn step(
        &mut self,
        images: Tensor<B, 4>,
        tokens: &TokenBatch,
        targets: &[Target],
    ) -> Result<StepStats, GroundingError> {
        if targets.len() != tokens.batch {
            return Err(GroundingError::Text(format!(
                "{} targets for {} sentences",
                targets.len(),
                tokens.batch
            )));
        }
        let out = self.model.forward(images, tokens)?;
        let cfg = &self.config;
        let classes = self.model.config().num_classes;
        let mut total: Option<Tensor<B, 1>> = None;
        let mut last = (0.0, 0.0, 0.0);
        for (logits, boxes) in out.logits.iter().zip(&out.boxes) {
            let lh = logits
                .clone()
                .into_data()
                .to_vec::<f32>()
                .unwrap_or_default();
            let bh = boxes
                .clone()
                .into_data()
                .to_vec::<f32>()
                .unwrap_or_default();
            let [_, q, _] = logits.dims();
            let matches: Vec<Vec<(usize, usize)>> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    match_queries(
                        &lh[i * q * classes..(i + 1) * q * classes],
                        &bh[i * q * 4..(i + 1) * q * 4],
                        classes,
                        t,
                        cfg.costs,
                        cfg.focal_alpha,
                        cfg.focal_gamma,
                    )
                })
                .collect();
            let l = layer_loss(logits.clone(), boxes.clone(), targets, &matches, cfg);
            let scalar = |t: &Tensor<B, 1>| -> f64 { t.clone().into_scalar().elem::<f64>() };
            last = (scalar(&l.class), scalar(&l.bbox), scalar(&l.giou));
            let w = cfg.losses;
            let layer = l.class * f64::from(w.class)
                + l.bbox * f64::from(w.bbox)
                + l.giou * f64::from(w.giou);
            total = Some(match total {
                Some(t) => t + layer,
                None => layer,
            });
        }
        let total = total.ok_or_else(|| GroundingError::Config("no decoder layer".into()))?;
        let loss: f64 = total.clone().into_scalar().elem::<f64>();
        let mut grads = total.backward();
        let mut g_text = GradientsParams::from_module(&mut grads, &self.model.text_encoder);
        let mut g_backbone = GradientsParams::from_module(&mut grads, &self.model.backbone);
        let mut g_rest = GradientsParams::from_grads(grads, &self.model);
        let mut norm = 0.0;
        for g in [&g_text, &g_backbone, &g_rest] {
            let mut v = SquaredNorm { grads: g, sum: 0.0 };
            self.model.visit(&mut v);
            norm += v.sum;
        }
        let norm = norm.sqrt();
        if cfg.clip_max_norm > 0.0 && norm > cfg.clip_max_norm {
            let factor = cfg.clip_max_norm / (norm + 1e-6);
            for g in [&mut g_text, &mut g_backbone, &mut g_rest] {
                self.model.visit(&mut Scale { grads: g, factor });
            }
        }
        let f = self.lr_factor();
        let lr = cfg.lr * f;
        let mut model = self.model.clone();
        model = self.optim.step(lr, model, g_rest);
        if cfg.lr_backbone > 0.0 {
            model = self.optim.step(cfg.lr_backbone * f, model, g_backbone);
        }
        if cfg.lr_text > 0.0 {
            model = self.optim.step(cfg.lr_text * f, model, g_text);
        }
        self.model = model;
        self.step += 1;
        Ok(StepStats {
            loss,
            class: last.0,
            bbox: last.1,
            giou: last.2,
            grad_norm: norm,
            lr,
        })
    }

    /// Writes a resumable checkpoint into `dir`: `model.mpk` and `optimizer.mpk` (Burn records, parameter
    /// ids included), `state.json` (configs, step, epoch) and `model.safetensors` with the official key names
    /// (loads with [`Lqvg::load`]).
    ///
    /// # Errors
    /// [`GroundingError::Io`] / [`GroundingError::Write`] when a file cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), GroundingError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| GroundingError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let err = |what: &str, e: String| GroundingError::Write {
            path: dir.to_path_buf(),
            reason: format!("saving {what}: {e}"),
        };
        self.model
            .clone()
            .save_file(dir.join("model"), &rec)
            .map_err(|e| err("the model", e.to_string()))?;
        Recorder::<B>::record(&rec, self.optim.to_record(), dir.join("optimizer"))
            .map_err(|e| err("the optimizer", e.to_string()))?;
        export_safetensors(&self.model.valid(), dir.join("model.safetensors"))?;
        let state = serde_json::json!({
            "step": self.step,
            "epoch": self.epoch,
            "train": self.config,
            "model": self.model.config(),
            "text_pooler": self.model.text_encoder.pooler.is_some(),
        });
        std::fs::write(dir.join("state.json"), state.to_string()).map_err(|source| {
            GroundingError::Io {
                path: dir.join("state.json"),
                source,
            }
        })
    }

    /// Resumes from a checkpoint [`Trainer::save`] wrote.
    ///
    /// # Errors
    /// [`GroundingError::Io`] / [`GroundingError::Config`] for a missing or unreadable checkpoint.
    pub fn resume(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, GroundingError> {
        let dir = dir.as_ref();
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|source| GroundingError::Io {
            path: path.clone(),
            source,
        })?;
        let bad = |e: String| GroundingError::Config(format!("{}: {e}", path.display()));
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let train: TrainConfig =
            serde_json::from_value(state["train"].clone()).map_err(|e| bad(e.to_string()))?;
        let config: LqvgConfig =
            serde_json::from_value(state["model"].clone()).map_err(|e| bad(e.to_string()))?;
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let pooler = state["text_pooler"].as_bool().unwrap_or(false);
        let model = Lqvg::<B>::new(config, pooler, device)?
            .load_file(dir.join("model"), &rec, device)
            .map_err(|e| bad(format!("model record: {e}")))?;
        let mut trainer = Self::new(model, train);
        let record = Recorder::<B>::load(&rec, dir.join("optimizer"), device)
            .map_err(|e| bad(format!("optimizer record: {e}")))?;
        trainer.optim = trainer.optim.load_record(record);
        trainer.step = state["step"].as_u64().unwrap_or(0) as usize;
        trainer.epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        Ok(trainer)
    }
}

/// Writes `model` as a safetensors state dict with the official key names (what [`Lqvg::load`] reads).
///
/// # Errors
/// [`GroundingError::Write`] when the file cannot be written.
pub fn export_safetensors<B: Backend>(
    model: &Lqvg<B>,
    path: impl AsRef<Path>,
) -> Result<(), GroundingError> {
    let path = path.as_ref();
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true);
    for (port, official) in KEYS.to_official_patterns() {
        store = store.with_key_remapping(&port, &official);
    }
    model
        .save_into(&mut store)
        .map_err(|e| GroundingError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}
