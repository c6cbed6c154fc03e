//! Referring-segmentation evaluation of **pslg** over a dataset (`pslg eval-rrsis`): every sample of a split
//! through the [`pslg::Pipeline`], scored as the RRSIS tables are (Pr@0.5–0.9, oIoU, mIoU, per-category
//! mIoU), optionally for the whole CFPG × MBO ablation grid in one pass, streamed to a resumable JSON-lines
//! results file.
//!
//! Each image is loaded and encoded by SAM once for all its expressions (samples are visited grouped by
//! image); the grounding box of a sentence is computed once and shared by every cell of the grid; memory holds
//! one image, its masks and the running totals, whatever the dataset's size.
//!
//! | module | what |
//! |---|---|
//! | [`Protocol`], [`score`] | intersection / union at the image's size, or in RMSIN's 480² frame |
//! | [`Variant`], [`evaluate`], [`EvalSpeed`] | the ablation cells and the evaluation loop |
//! | [`EvalSettings`], [`SampleRecord`], [`Tally`], [`ResultsFile`] | records, totals, the resumable file |
//! | [`summary_json`], [`format_table`] | metrics keyed and printed as in the RRSIS tables |
//! | [`result_lines`], [`result_table`], [`merge_results`] | what a run prints; the merge of a sharded run's files into the same |
#![warn(missing_docs)]

mod merge;
mod protocol;
mod results;
mod run;

pub use merge::{
    ResultsContents, merge_results, read_results, result_lines, result_table, shard_path,
    shard_settings,
};
pub use protocol::{Protocol, UnknownProtocol, score};
pub use results::{EvalSettings, ResultsFile, SampleRecord, Tally, format_table, summary_json};
pub use run::{EvalSpeed, Variant, evaluate};

use std::path::PathBuf;

/// Errors of an evaluation run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An evaluation results file cannot be read, written or resumed.
    #[error("results file {path}: {reason}")]
    Results {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("parameter `{name}` = {value} is out of range")]
    InvalidParam {
        /// What it is.
        name: &'static str,
        /// Value given.
        value: String,
    },
    /// The pipeline failed (SAM, grounding, a stage's parameters).
    #[error(transparent)]
    Pslg(#[from] pslg::PslgError),
    /// A sample cannot be read (its record, its mask).
    #[error(transparent)]
    Dataset(#[from] pslg_datasets::DatasetError),
    /// An image cannot be read.
    #[error(transparent)]
    Raster(#[from] pslg_geo::raster::RasterError),
    /// A mask pair cannot be scored.
    #[error(transparent)]
    Metrics(#[from] pslg_metrics::MetricsError),
}
