//! Training LQVG as the official code does: queries matched to targets (Hungarian, focal class cost 2, L1 5,
//! GIoU 2), sigmoid focal loss ×2 + L1 ×5 + GIoU ×2 at every decoder layer, AdamW with parameter groups
//! (1e-4; backbone 5e-5; text encoder 1e-5; weight decay 5e-4), global gradient-norm clipping 0.1, warm-up
//! and step decay, checkpoints that resume.

use crate::load::KEYS;
use crate::model::{Lqvg, LqvgOutput};
use crate::text::TokenBatch;
use crate::{GroundingError, LqvgConfig};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use pathfinding::prelude::{Matrix, kuhn_munkres_min};
use pslg_metrics::iou_giou;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Weights of the three terms (used both as matching costs and as loss weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TermWeights {
    /// Focal classification term (2).
    pub class: f32,
    /// L1 on (cx, cy, w, h) (5).
    pub bbox: f32,
    /// 1 − GIoU (2).
    pub giou: f32,
}

impl Default for TermWeights {
    fn default() -> Self {
        Self {
            class: 2.0,
            bbox: 5.0,
            giou: 2.0,
        }
    }
}

/// Training hyper-parameters; the defaults are the official ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Learning rate of everything but the backbone and the text encoder (1e-4).
    pub lr: f64,
    /// Backbone learning rate (5e-5); 0 freezes the whole backbone.
    pub lr_backbone: f64,
    /// Text-encoder learning rate (1e-5); 0 freezes it (the released model was trained so).
    pub lr_text: f64,
    /// AdamW decoupled weight decay (5e-4).
    pub weight_decay: f32,
    /// Maximum global L2 norm of all gradients (0.1); 0 disables clipping.
    pub clip_max_norm: f64,
    /// Linear warm-up over this many steps (0: none).
    pub warmup_steps: usize,
    /// Epochs after which the learning rates are multiplied by `lr_gamma` (official: 40 of 70).
    pub lr_drop: Vec<usize>,
    /// Step-decay factor (0.1).
    pub lr_gamma: f64,
    /// Train the ResNet stem and stage 1 too (the official code freezes them; a model trained from scratch
    /// needs them).
    pub train_backbone_stem: bool,
    /// Matching costs.
    pub costs: TermWeights,
    /// Loss weights (every decoder layer alike).
    pub losses: TermWeights,
    /// Focal loss α (0.25).
    pub focal_alpha: f32,
    /// Focal loss γ (2).
    pub focal_gamma: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            lr_backbone: 5e-5,
            lr_text: 1e-5,
            weight_decay: 5e-4,
            clip_max_norm: 0.1,
            warmup_steps: 0,
            lr_drop: vec![40],
            lr_gamma: 0.1,
            train_backbone_stem: false,
            costs: TermWeights::default(),
            losses: TermWeights::default(),
            focal_alpha: 0.25,
            focal_gamma: 2.0,
        }
    }
}

/// The target of one image: boxes `(cx, cy, w, h)` normalised to the input, with class labels (0 for the
/// binary referring task).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Normalised `(cx, cy, w, h)` boxes.
    pub boxes: Vec<[f32; 4]>,
    /// Class of each box.
    pub labels: Vec<usize>,
}

impl Target {
    /// One box `[x1, y1, x2, y2]` in input pixels of a square `size` input, class 0.
    pub fn from_xyxy(b: [f32; 4], size: usize) -> Self {
        let s = size as f32;
        Self {
            boxes: vec![[
                (b[0] + b[2]) / 2.0 / s,
                (b[1] + b[3]) / 2.0 / s,
                (b[2] - b[0]) / s,
                (b[3] - b[1]) / s,
            ]],
            labels: vec![0],
        }
    }
}

/// `(cx, cy, w, h)` → `(x1, y1, x2, y2)`.
pub fn cxcywh_to_xyxy(b: [f32; 4]) -> [f32; 4] {
    [
        b[0] - 0.5 * b[2],
        b[1] - 0.5 * b[3],
        b[0] + 0.5 * b[2],
        b[1] + 0.5 * b[3],
    ]
}

/// Matches each target of one image to a distinct query minimising
/// `costs.class · focal_cost + costs.bbox · L1 + costs.giou · (−GIoU)` (the official matcher's cost; with one
/// target this is its minimum-cost query). `logits` `(Q, C)` and `boxes` `(Q, 4)` are row-major host values.
/// Returns `(query, target)` pairs.
pub fn match_queries(
    logits: &[f32],
    boxes: &[f32],
    classes: usize,
    target: &Target,
    costs: TermWeights,
    alpha: f32,
    gamma: f32,
) -> Vec<(usize, usize)> {
    let q = boxes.len() / 4;
    let t = target.boxes.len();
    if t == 0 || q == 0 {
        return Vec::new();
    }
    let mut cost = vec![vec![0f64; q]; t];
    for (ti, (tb, &label)) in target.boxes.iter().zip(&target.labels).enumerate() {
        for qi in 0..q {
            let p = 1.0 / (1.0 + (-logits[qi * classes + label.min(classes - 1)]).exp());
            let neg = (1.0 - alpha) * p.powf(gamma) * -((1.0 - p + 1e-8).ln());
            let pos = alpha * (1.0 - p).powf(gamma) * -((p + 1e-8).ln());
            let b = &boxes[qi * 4..qi * 4 + 4];
            let l1: f32 = (0..4).map(|k| (b[k] - tb[k]).abs()).sum();
            let (_, giou) = iou_giou(
                cxcywh_to_xyxy([b[0], b[1], b[2], b[3]]),
                cxcywh_to_xyxy(*tb),
            );
            cost[ti][qi] =
                f64::from(costs.class * (pos - neg) + costs.bbox * l1 - costs.giou * giou);
        }
    }
    if t > q {
        // More targets than queries: match the first `q` targets.
        cost.truncate(q);
    }
    // Kuhn–Munkres on integer costs (micro-units), rows = targets ≤ columns = queries.
    let rows = cost.len();
    let mut m = Matrix::new(rows, q, 0i64);
    for (r, row) in cost.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            m[(r, c)] = if v.is_finite() {
                (v * 1e6).round() as i64
            } else {
                i64::MAX / 4
            };
        }
    }
    let (_, assignment) = kuhn_munkres_min(&m);
    assignment
        .into_iter()
        .enumerate()
        .map(|(ti, qi)| (qi, ti))
        .collect()
}

/// The three loss terms of one decoder layer, each divided by the number of target boxes.
pub struct LayerLoss<B: Backend> {
    /// Sigmoid focal loss over every query and class.
    pub class: Tensor<B, 1>,
    /// L1 of the matched boxes.
    pub bbox: Tensor<B, 1>,
    /// 1 − GIoU of the matched boxes.
    pub giou: Tensor<B, 1>,
}

/// Loss of one decoder layer given the matches of every image.
pub fn layer_loss<B: Backend>(
    logits: Tensor<B, 3>,
    boxes: Tensor<B, 3>,
    targets: &[Target],
    matches: &[Vec<(usize, usize)>],
    cfg: &TrainConfig,
) -> LayerLoss<B> {
    let device = logits.device();
    let [n, q, c] = logits.dims();
    let num_boxes = (targets.iter().map(|t| t.boxes.len()).sum::<usize>()).max(1) as f64;
    let mut onehot = vec![0f32; n * q * c];
    let mut idx = Vec::new();
    let mut tgt = Vec::new();
    for (i, (m, t)) in matches.iter().zip(targets).enumerate() {
        for &(qi, ti) in m {
            let label = t.labels[ti].min(c - 1);
            onehot[(i * q + qi) * c + label] = 1.0;
            idx.push((i * q + qi) as i64);
            tgt.extend_from_slice(&t.boxes[ti]);
        }
    }
    let t = Tensor::<B, 3>::from_data(TensorData::new(onehot, [n, q, c]), &device);
    let (alpha, gamma) = (f64::from(cfg.focal_alpha), f64::from(cfg.focal_gamma));
    let p = sigmoid(logits.clone());
    // Binary cross-entropy with logits: max(x, 0) − x·t + log(1 + e^{−|x|}).
    let ce =
        relu(logits.clone()) - logits.clone() * t.clone() + (logits.abs().neg().exp() + 1.0).log();
    let p_t = p.clone() * t.clone() + (p.neg() + 1.0) * (t.clone().neg() + 1.0);
    let alpha_t = t.clone() * alpha + (t.neg() + 1.0) * (1.0 - alpha);
    let focal = ce * (p_t.neg() + 1.0).powf_scalar(gamma) * alpha_t;
    let class = focal.sum() / num_boxes;
    if idx.is_empty() {
        let zero = Tensor::<B, 1>::zeros([1], &device);
        return LayerLoss {
            class,
            bbox: zero.clone(),
            giou: zero,
        };
    }
    let m = idx.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [m]), &device);
    let src = boxes.reshape([n * q, 4]).select(0, idx);
    let tgt = Tensor::<B, 2>::from_data(TensorData::new(tgt, [m, 4]), &device);
    let bbox = (src.clone() - tgt.clone()).abs().sum() / num_boxes;
    let xyxy = |b: Tensor<B, 2>| {
        let cx = b.clone().narrow(1, 0, 1);
        let cy = b.clone().narrow(1, 1, 1);
        let w = b.clone().narrow(1, 2, 1);
        let h = b.narrow(1, 3, 1);
        (
            cx.clone() - w.clone() * 0.5,
            cy.clone() - h.clone() * 0.5,
            cx + w * 0.5,
            cy + h * 0.5,
        )
    };
    let (ax1, ay1, ax2, ay2) = xyxy(src);
    let (bx1, by1, bx2, by2) = xyxy(tgt);
    let area_a = (ax2.clone() - ax1.clone()) * (ay2.clone() - ay1.clone());
    let area_b = (bx2.clone() - bx1.clone()) * (by2.clone() - by1.clone());
    let iw = (ax2.clone().min_pair(bx2.clone()) - ax1.clone().max_pair(bx1.clone())).clamp_min(0.0);
    let ih = (ay2.clone().min_pair(by2.clone()) - ay1.clone().max_pair(by1.clone())).clamp_min(0.0);
    let inter = iw * ih;
    let union = area_a + area_b - inter.clone();
    let iou = inter / union.clone();
    let cw = ax2.max_pair(bx2) - ax1.min_pair(bx1);
    let ch = ay2.max_pair(by2) - ay1.min_pair(by1);
    let enclose = cw * ch;
    let giou = iou - (enclose.clone() - union) / enclose;
    let giou = (giou.neg() + 1.0).sum() / num_boxes;
    LayerLoss { class, bbox, giou }
}

/// Per-step statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Weighted total over all decoder layers.
    pub loss: f64,
    /// Focal term of the last layer.
    pub class: f64,
    /// L1 term of the last layer.
    pub bbox: f64,
    /// GIoU term of the last layer.
    pub giou: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Main learning rate used.
    pub lr: f64,
}

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
