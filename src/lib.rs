//! **pslg** — PSLG-SAM referring remote-sensing segmentation in Rust: an aerial image and a box (or, with the
//! grounding stage, a sentence) → a pixel mask of the object.
//!
//! This facade re-exports the stage crates and composes them:
//!
//! * [`cfpg`] — clustering-based foreground point generator (§3.2);
//! * [`mbo`] — mask boundary optimisation, GrabCut-style with Boykov–Kolmogorov max-flow (§3.3);
//! * [`metrics`] — mIoU, oIoU, Pr@X, box IoU/GIoU as in the RRSIS evaluation code;
//! * [`sam`], [`grounding`] — the SAM and LQVG networks (Burn);
//! * [`BoxSegmenter`] — the weight-free box → mask path (CFPG → MBO), [`SamSegmenter`] the same with SAM;
//! * [`Pipeline`] — sentence → box → point → SAM → MBO;
//! * [`tile`] — scenes larger than memory, segmented window by window;
//! * [`io`] (re-exported from [`geo`]), [`overlay`] — image files and pictures.
//!
//! Dataset readers are in `pslg-datasets`, the evaluation in `pslg-eval`, decoder fine-tuning in `pslg-sam`
//! (feature `train`) and LQVG training in `pslg-grounding`; the `pslg` binary is the `pslg-cli` crate.
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

pub mod choice;
pub mod cleanup;
pub mod overlay;
mod pipeline;
mod sam_segment;
mod segment;
pub mod tile;

pub use choice::{Candidate, Choice, Tightness};
pub use cleanup::{close_in_box, fill_holes};
pub use pipeline::{Pipeline, PipelineBuilder, PipelineOutput, pixel_box};
pub use pslg_cfpg as cfpg;
pub use pslg_geo as geo;
pub use pslg_geo::raster as io;
pub use pslg_grounding as grounding;
pub use pslg_mbo as mbo;
pub use pslg_metrics as metrics;
pub use pslg_sam as sam;
pub use sam_segment::{SamSegmenter, SamSegmenterParams};
pub use segment::{BoxMask, BoxSegmenter, BoxSegmenterParams, StageTimings};

/// Errors of the facade: file problems, bad prompts, and the stage crates' errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PslgError {
    /// A sentence was given to a pipeline built without a grounding model.
    #[error(
        "the pipeline has no grounding model: build it with PipelineBuilder::grounding, or give a box"
    )]
    NoGrounding,
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
    /// An image could not be read or written, or a band selection does not fit it.
    #[error(transparent)]
    Raster(#[from] pslg_geo::raster::RasterError),
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
