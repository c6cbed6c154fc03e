//! **pslg** — PSLG-SAM referring remote-sensing segmentation in Rust: an aerial image and a box (or, with the
//! grounding stage, a sentence) → a pixel mask of the object.
//!
//! This facade re-exports the stage crates and composes them:
//!
//! * [`cfpg`] — clustering-based foreground point generator (§3.2);
//! * [`mbo`] — mask boundary optimisation, GrabCut-style with Boykov–Kolmogorov max-flow (§3.3);
//! * [`metrics`] — mIoU, oIoU, Pr@X, box IoU/GIoU as in the RRSIS evaluation code;
//! * [`BoxSegmenter`] — the weight-free box → mask path (CFPG → MBO);
//! * [`io`], [`cases`], [`overlay`] — files, case lists and pictures.
//!
//! # Examples
//! ```
//! use image::{Rgb, RgbImage};
//! use pslg::{BoxSegmenter, BoxSegmenterParams, cfpg::PixelBox};
//! let img = RgbImage::from_fn(64, 64, |x, y| {
//!     let d = (x as f64 - 32.0).powi(2) + (y as f64 - 32.0).powi(2);
//!     if d < 150.0 { Rgb([230, 230, 230]) } else { Rgb([40, 70, 40]) }
//! });
//! let seg = BoxSegmenter::new(BoxSegmenterParams::default()).unwrap();
//! let out = seg.segment(&img, PixelBox::new(19, 19, 45, 45)).unwrap();
//! assert_eq!(out.mask.get_pixel(32, 32)[0], 255); // centre of the disc
//! assert_eq!(out.mask.get_pixel(20, 20)[0], 0); // box corner, off the disc
//! ```
#![warn(missing_docs)]

pub mod cases;
pub mod evaluate;
pub mod finetune;
pub mod io;
pub mod overlay;
mod pipeline;
pub mod rrsis;
mod sam_segment;
mod segment;
pub mod tile;

pub use pipeline::{Pipeline, PipelineBuilder, PipelineOutput, pixel_box};
pub use pslg_cfpg as cfpg;
pub use pslg_geo as geo;
pub use pslg_grounding as grounding;
pub use pslg_mbo as mbo;
pub use pslg_metrics as metrics;
pub use pslg_sam as sam;
pub use sam_segment::{SamSegmenter, SamSegmenterParams};
pub use segment::{BoxMask, BoxSegmenter, BoxSegmenterParams, StageTimings};

use std::path::PathBuf;

/// Errors of the facade: file problems, bad prompts, and the stage crates' errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PslgError {
    /// An image could not be opened or decoded.
    #[error(
        "cannot read image {path}: {source} (PNG, JPEG and TIFF with 8/16-bit, 1–4 channels are supported)"
    )]
    ReadImage {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// An image has no pixels.
    #[error("image {path} has no pixels")]
    EmptyImage {
        /// The file.
        path: PathBuf,
    },
    /// An image could not be written.
    #[error("cannot write {path}: {source}")]
    WriteImage {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A case file could not be read.
    #[error("cannot read case file {path}: {source}")]
    ReadCases {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a case file is malformed.
    #[error(
        "{path}, line {line}: {reason} (expected {{\"id\", \"image\", \"box\": [x1, y1, x2, y2], \"mask\"?, \"category\"?}})"
    )]
    BadCase {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A box given on the command line is malformed.
    #[error("box {text:?} is not x1,y1,x2,y2 with integer pixel coordinates")]
    BadBox {
        /// The text given.
        text: String,
    },
    /// A prediction mask does not have its ground truth's size.
    #[error("{path}: mask is {got:?} but the ground truth is {expected:?} (width, height)")]
    MaskSize {
        /// The prediction file.
        path: PathBuf,
        /// Its size.
        got: (u32, u32),
        /// The ground truth's size.
        expected: (u32, u32),
    },
    /// A dataset record is malformed.
    #[error("{path} ({record}): {reason}")]
    Dataset {
        /// The file.
        path: PathBuf,
        /// The record (reference, annotation, line).
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// A sentence was given to a pipeline built without a grounding model.
    #[error(
        "the pipeline has no grounding model: build it with PipelineBuilder::grounding, or give a box"
    )]
    NoGrounding,
    /// An evaluation results file cannot be read, written or resumed.
    #[error("results file {path}: {reason}")]
    Results {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A facade parameter is out of range.
    #[error("parameter `{name}` = {value} is out of range")]
    InvalidParam {
        /// Field name.
        name: &'static str,
        /// Value given.
        value: String,
    },
    /// CFPG error (bad box, bad parameters).
    #[error(transparent)]
    Cfpg(#[from] pslg_cfpg::CfpgError),
    /// MBO error.
    #[error(transparent)]
    Mbo(#[from] pslg_mbo::MboError),
    /// Metrics error.
    #[error(transparent)]
    Metrics(#[from] pslg_metrics::MetricsError),
    /// A band selection or stretch cannot be applied to an image.
    #[error("{path}: {reason}")]
    Bands {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Geospatial I/O error (GeoTIFF tags, polygons).
    #[error(transparent)]
    Geo(#[from] pslg_geo::GeoError),
    /// SAM error (checkpoint, prompt, image).
    #[error(transparent)]
    Sam(#[from] pslg_sam::SamError),
    /// Grounding error (checkpoint, tokenizer, sentence, dataset).
    #[error(transparent)]
    Grounding(#[from] pslg_grounding::GroundingError),
}

impl From<pslg_core::BoxError> for PslgError {
    /// A box that gives no region of interest, reported as CFPG reports it ([`PslgError::Cfpg`]).
    fn from(e: pslg_core::BoxError) -> Self {
        Self::Cfpg(e.into())
    }
}
