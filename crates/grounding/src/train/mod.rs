//! Training LQVG as the official code does: queries matched to targets (Hungarian, focal class cost 2, L1 5,
//! GIoU 2), sigmoid focal loss ×2 + L1 ×5 + GIoU ×2 at every decoder layer, AdamW with parameter groups
//! (1e-4; backbone 5e-5; text encoder 1e-5; weight decay 5e-4), global gradient-norm clipping 0.1, warm-up
//! and step decay, checkpoints that resume.

//!
//! | module | official code | what |
//! |---|---|---|
//! | `matcher.rs` | `models/matcher.py` | Hungarian matching of queries to targets ([`match_queries`]) |
//! | `criterion.rs` | `models/lqvg.py` `SetCriterion` | focal + L1 + GIoU per decoder layer ([`layer_loss`]) |
//! | `trainer.rs` | `engine.py`, `main.py` | AdamW groups, clipping, schedule, checkpoints ([`Trainer`]) |

mod criterion;
mod matcher;
mod trainer;

pub use criterion::{LayerLoss, layer_loss};
pub use matcher::{cxcywh_to_xyxy, match_queries};
pub use trainer::{Trainer, chosen_boxes, export_safetensors, freeze_for_training};

use serde::{Deserialize, Serialize};

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
