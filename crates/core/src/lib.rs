//! Shared core types of **pslg**, free of Burn: the one pixel box type and its explicit conversions, the
//! region of interest a box covers in an image (PSLG-SAM Eq. 4), and the k-means++ clustering (Eq. 5) that
//! both CFPG (§3.2) and MBO's mixture initialisation (§3.3) use.
//!
//! | item | what | paper |
//! |---|---|---|
//! | [`PixelBox`] | box in whole pixels, `x2`/`y2` exclusive; [`PixelBox::covering`], [`PixelBox::from_cxcywh_normalised`] | — |
//! | [`Roi`], [`clamp_box`], [`crop_roi`] | the box clamped to the image, never empty | Eq. (4) |
//! | [`kmeans_pp`], [`nearest`] | k-means with k-means++ seeding on colour vectors | Eq. (5) |
//! | [`mask_box`], [`paste_in_box`] | a mask's tight box; a crop's mask pasted back inside the box | — |
//! | [`atomic`] | crash-safe output files (temporary name, then rename) | — |
#![warn(missing_docs)]

pub mod atomic;
mod boxes;
mod kmeans;
mod mask;

pub use boxes::{ParseBoxError, PixelBox, Roi, clamp_box, crop_roi};
pub use kmeans::{KMeans, kmeans_pp, nearest};
pub use mask::{mask_box, paste_in_box};

/// Why a box prompt does not give a region of interest in an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoxError {
    /// The image has no pixels.
    #[error("the image is {width}×{height}: it has no pixels; check that it decoded correctly")]
    EmptyImage {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// The box has zero or negative width or height.
    #[error(
        "box {bbox:?} is empty or inverted: give x1 < x2 and y1 < y2 (pixels, x2/y2 exclusive)"
    )]
    DegenerateBox {
        /// The box as given.
        bbox: PixelBox,
    },
    /// No part of the box lies inside the image.
    #[error(
        "box {bbox:?} lies outside the {width}×{height} image: give coordinates in this image's pixels"
    )]
    BoxOutsideImage {
        /// The box as given.
        bbox: PixelBox,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
}
