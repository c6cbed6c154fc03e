//! Fine-tuning SAM's mask decoder on a referring segmentation dataset (Table 4 of the paper), behind the
//! `train` feature: the image encoder and the prompt encoder stay frozen; prompts are those of inference (the
//! box + the CFPG point); the loss is binary cross-entropy; the optimiser AdamW.
//!
//! Image embeddings are computed once and cached on disk ([`EmbeddingCache`]), so an epoch costs only the
//! decoder's forward and backward passes. The loss is taken on the decoder's low-resolution logits
//! (`4h × 4w`, 256 × 256 for the official models) against the ground-truth mask brought into that frame
//! exactly as SAM brings images into its input (longest side resized to the input, bottom/right zero
//! padding), then averaged over each logit's cell ([`low_res_target`]): a soft target in [0, 1].
//! Validation scores the decoder as inference does (full-size mask, inside the box).
//!
//! | item | what |
//! |---|---|
//! | [`FinetuneConfig`] | hyper-parameters, the seeded training subset |
//! | [`EmbeddingCache`], [`DecoderExample`] | embeddings on disk, examples with their prompts |
//! | [`low_res_target`], [`bce_with_logits`] | the target and the loss |
//! | [`DecoderTrainer`] | one epoch, validation, save / resume (`decoder.safetensors`, optimiser, state) |
//! | [`finetune`], [`FinetuneEvent`] | the whole run: epoch 0 (frozen), epochs, `OUT/last`, `OUT/best` |

mod cache;
mod loss;
mod run;
mod trainer;

pub use cache::{DecoderExample, EmbeddingCache};
pub use loss::{bce_with_logits, low_res_target};
pub use run::{FinetuneEvent, finetune};
pub use trainer::{DecoderTrainer, EpochReport};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Errors of decoder fine-tuning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FinetuneError {
    /// A hyper-parameter is out of range.
    #[error("fine-tuning parameter `{name}` = {value} is out of range")]
    InvalidParam {
        /// Which one.
        name: &'static str,
        /// Value given.
        value: String,
    },
    /// A file of the run (cache, checkpoint, state) cannot be read or written.
    #[error("{path}: {reason}")]
    Files {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A run folder was started with other hyper-parameters than the ones given to resume it.
    #[error(
        "{dir} was started with other settings ({stored}); use the same settings to resume, or another output folder"
    )]
    OtherSettings {
        /// The `last/` folder.
        dir: PathBuf,
        /// Its stored configuration.
        stored: String,
    },
    /// A box prompt gives no region in its image.
    #[error(transparent)]
    Box(#[from] pslg_core::BoxError),
    /// A sample cannot be read, or its mask does not fit its image.
    #[error(transparent)]
    Dataset(#[from] pslg_datasets::DatasetError),
    /// An image cannot be read.
    #[error(transparent)]
    Raster(#[from] pslg_geo::raster::RasterError),
    /// SAM failed (checkpoint, embedding file, prompt).
    #[error(transparent)]
    Sam(#[from] crate::SamError),
    /// A validation mask cannot be scored.
    #[error(transparent)]
    Metrics(#[from] pslg_metrics::MetricsError),
    /// The point prompt function failed on a sample (e.g. CFPG).
    #[error("point prompt: {0}")]
    Point(Box<dyn std::error::Error + Send + Sync>),
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
    /// [`FinetuneError::InvalidParam`] naming the bad one.
    pub fn validate(&self) -> Result<(), FinetuneError> {
        let bad =
            |name: &'static str, value: String| Err(FinetuneError::InvalidParam { name, value });
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
