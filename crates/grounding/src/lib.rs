//! Visual grounding for PSLG-SAM: LQVG (language queries for visual grounding) in
//! [Burn](https://burn.dev) — an image and a referring sentence in, a bounding box out.
//!
//! * [`Lqvg`]: ResNet backbone with frozen BatchNorm, BERT-family text encoder, multi-scale
//!   vision–language fusion, deformable-DETR encoder and decoder with language queries, class and box heads.
//!   [`Lqvg::load`] reads the official checkpoint unmodified (one key table, typed errors naming any
//!   missing, unexpected or mis-shaped tensor).
//! * [`Grounder`]: the official test preprocessing (letterbox with OpenCV's `INTER_AREA` reproduced, pad
//!   colour, ImageNet normalisation) and the letterbox undone on the chosen query's box.
//! * [`TextEncoder`] + [`TextTokenizer`]: BERT-family text encoders (RoBERTa as in the official code,
//!   BERT/MiniLM as the paper names) from HuggingFace weights and `tokenizer.json`, sizes and epsilons read
//!   from the model's `config.json` ([`TextConfig`]).
//! * [`DiorRsvg`], [`read_rsvg_hr`]: the grounding datasets, typed errors naming file and line.
//! * Feature `train`: `Trainer` (one optimiser step: matching, losses, AdamW) and `fit` (the epochs: a shuffle that a
//!   resumed run repeats, validation, `last` / `best` checkpoints, progress callbacks) over a
//!   `PreparedSplit` that letterboxes each image once; `Lqvg::init_detr` and the toy grounding set.
//! * [`ms_deform_attn_core`]: multi-scale deformable attention with the semantics of the official PyTorch
//!   fallback, differentiable in all its inputs; on the CPU backends a fused sampling loop, and a fused
//!   [`feed_forward`] ([`HostKernels`]).
//!
//! The port follows the official LQVG code (LANMNG/LQVG), which builds on Deformable DETR and ReferFormer,
//! module by module; see `NOTICES.md` and `docs/grounding.md`.

mod attention;
mod backbone;
mod config;
pub mod cv_resize;
mod deform;
mod deform_host;
mod error;
mod ffn_host;
#[cfg(feature = "train")]
mod fit;
mod grounder;
mod load;
mod model;
pub mod position;
mod text;
#[cfg(feature = "train")]
mod toy;
#[cfg(feature = "train")]
mod train;
mod transformer;

/// Helpers of the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// The largest absolute difference between two equally long slices (0 for empty ones).
    pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "slices of different lengths");
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    }
}

pub use attention::{TorchMultiheadAttention, VisionLanguageFusion};
pub use backbone::{Bottleneck, Downsample, FrozenBatchNorm2d, ResNet};
pub use config::{LqvgConfig, ResNetConfig, TextConfig, TextFamily};
pub use deform::{
    HostKernels, MsDeformAttn, ReferencePoints, ms_deform_attn_core, ms_deform_attn_core_tensor_ops,
};
pub use error::GroundingError;
pub use ffn_host::feed_forward;
#[cfg(feature = "train")]
pub use fit::{
    EpochReport, FitConfig, FitEvent, PreparedItem, PreparedSplit, epoch_order, fit, saved_pr_at_05,
};
pub use grounder::{
    Grounder, Grounding, INPUT_SIZE, Letterbox, MEAN, PAD_COLOUR, QueryBox, STD, letterbox,
    normalise, normalise_caption,
};
pub use model::{FeatureResizer, InputProj, Lqvg, LqvgOutput, Poolout, query_scores};
pub use pslg_datasets::grounding::{DiorRsvg, GroundingSample, XmlOrder, read_rsvg_hr};
pub use pslg_metrics::{BoxMetrics, iou_giou};
pub use text::{
    DenseNorm, Intermediate, Pooler, TextAttention, TextEmbeddings, TextEncoder, TextLayer,
    TextSelfAttention, TextStack, TextTokenizer, TokenBatch,
};
#[cfg(feature = "train")]
pub use toy::{
    TOY_COLOURS, TOY_SHAPES, ToyRun, ToySample, toy_config, toy_samples, toy_tokenizer, train_toy,
};
#[cfg(feature = "train")]
pub use train::{
    LayerLoss, StepStats, Target, TermWeights, TrainConfig, Trainer, chosen_boxes, cxcywh_to_xyxy,
    export_safetensors, freeze_for_training, layer_loss, match_queries,
};
pub use transformer::{
    Decoder, DecoderLayer, DeformableTransformer, Encoder, EncoderLayer, Levels, Mlp,
    inverse_sigmoid, refine,
};
