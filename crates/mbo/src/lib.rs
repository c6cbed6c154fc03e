//! Mask boundary optimisation (MBO), §3.3 of PSLG-SAM: a GrabCut-style refinement of a mask (SAM's, or a box).
//!
//! | step | paper | code |
//! |---|---|---|
//! | erode the initial mask; trimap | — | [`Trimap::from_mask`], [`Trimap::from_rect`], [`Trimap::set_foreground_disk`] |
//! | foreground / background GMMs, K = 5, full covariance | Eqs. (10)–(11) | [`Gmm::fit`] |
//! | data term −ln P_F / −ln P_B | Eq. (12) | [`Gmm::neg_log_likelihood`] |
//! | contrast-sensitive 8-neighbour smoothness, β, γ = 50 | Eq. (13) | [`contrast_beta`], [`MaskRefiner::refine`] |
//! | minimum cut | Eq. (14) | [`MaxFlowGraph::max_flow_ibfs`] (incremental BFS; Boykov–Kolmogorov in [`MaxFlowGraph::max_flow`]) |
//! | EM update of the mixtures, iterate to convergence | — | [`Gmm::em_step`], [`MaskRefiner::refine`] |
//!
//! # Examples
//! ```
//! use image::{Rgb, RgbImage};
//! use pslg_core::Roi;
//! use pslg_mbo::{MboParams, Trimap};
//! // A red square on green, boxed loosely.
//! let img = RgbImage::from_fn(32, 32, |x, y| {
//!     if (10..22).contains(&x) && (8..20).contains(&y) { Rgb([220, 30, 30]) } else { Rgb([30, 160, 40]) }
//! });
//! let trimap = Trimap::from_rect(32, 32, Roi { x: 6, y: 4, width: 20, height: 20 });
//! let out = MboParams::default().build().unwrap().refine(&img, &trimap).unwrap();
//! assert_eq!(out.mask.get_pixel(15, 12)[0], 255);
//! assert_eq!(out.mask.get_pixel(7, 5)[0], 0);
//! ```
#![warn(missing_docs)]

mod gmm;
mod maxflow;
mod refine;
mod trimap;

pub use gmm::{COVARIANCE_REGULARIZATION, ColourPlanes, Component, Gmm};
pub use maxflow::{Capacity, MaxFlowGraph, Segment};
pub use refine::{MaskRefiner, MboParams, Refinement, Skipped, contrast_beta};
pub use trimap::{Trimap, TrimapLabel};

/// Errors of the boundary optimisation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MboError {
    /// Image and trimap differ in size.
    #[error(
        "image is {image:?} but the trimap/mask is {trimap:?} (width, height): give a mask of the image's size"
    )]
    SizeMismatch {
        /// Image (width, height).
        image: (u32, u32),
        /// Trimap (width, height).
        trimap: (u32, u32),
    },
    /// A parameter is out of its valid range.
    #[error("parameter `{name}` = {value} is invalid: valid values are {valid}")]
    InvalidParam {
        /// Field name.
        name: &'static str,
        /// Value given.
        value: String,
        /// Valid range.
        valid: &'static str,
    },
}
